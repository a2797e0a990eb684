"""`parse.json` / `parse.schema` / `parse.fields`: turn an answer's text into checked JSON."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from batchrun.errors import InvalidAnswer

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n(.*?)```", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Structured:
    """The parsed answer as JSON text, and the values of the fields to spread into columns."""

    parsed: str
    fields: dict[str, Any]


class AnswerChecker:
    """Parses answers as JSON and checks them against the job's schema."""

    def __init__(self, schema: Mapping[str, Any] | None, fields: tuple[str, ...]) -> None:
        self._validator = None
        if schema is not None:
            # Imported here: jsonschema is slow to import and most jobs have no schema.
            from jsonschema import Draft202012Validator

            self._validator = Draft202012Validator(schema)
        self._fields = fields

    def check(self, content: str | None) -> Structured:
        """The structured answer, or InvalidAnswer (a failed attempt, retried)."""
        value = parse_json_text(content)
        if self._validator is not None:
            error = next(iter(self._validator.iter_errors(value)), None)
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "the answer"
                raise InvalidAnswer(
                    f"answer does not match the schema at {where}: {error.message}",
                    kind="schema_mismatch",
                    content=content,
                )
        fields = {}
        for name in self._fields:
            raw = value.get(name) if isinstance(value, dict) else None
            # Nested values become JSON text so that a column keeps one type.
            fields[name] = orjson.dumps(raw).decode() if isinstance(raw, (dict, list)) else raw
        return Structured(parsed=orjson.dumps(value).decode(), fields=fields)


def parse_json_text(content: str | None) -> Any:
    """JSON from an answer: the whole text, else the first ```json fenced block."""
    if content is None or not content.strip():
        raise InvalidAnswer("the answer is empty, expected JSON", content=content)
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError as error:
        fenced = _FENCE.search(content)
        if fenced is not None:
            try:
                return orjson.loads(fenced.group(1))
            except orjson.JSONDecodeError:
                pass
        raise InvalidAnswer(f"the answer is not valid JSON: {error}", content=content) from None
