"""One input record -> an InputRow, by a plan decided once per input from [input] and the files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchrun.errors import InputError, JobError
from batchrun.job.sections import template_fields
from batchrun.sources.image_parts import add_to_user_message, column_parts
from batchrun.sources.records import is_openai_batch, missing_column, show_path

if TYPE_CHECKING:
    from batchrun.job import InputSpec

_BATCH_FIELDS = ("custom_id", "method", "url")


@dataclass(frozen=True, slots=True)
class InputRow:
    """One input row, ready to become requests."""

    id: str
    messages: list[dict[str, Any]] | None  # OpenAI-style; None when `body` is given
    body: dict[str, Any] | None  # openai-batch input: the request body as-is
    keep: dict[str, Any]  # keep_columns values
    where: str  # "data/x.jsonl:17" or "data/x.parquet row 17", for messages
    # The input file's folder, which image paths are relative to; None for OpenAI batch input,
    # whose bodies are sent as they are.
    folder: Path | None = None


@dataclass(frozen=True, slots=True)
class RowPlan:
    """How to turn one record into an InputRow, decided once per input."""

    batch: bool
    id_col: str | None
    prompt: str | None
    messages: str | None
    images: str | None
    template: str | None
    fields: tuple[str, ...]  # root names of the template's fields
    system: str | None
    keep: tuple[str, ...]
    owners: dict[str, str]  # column -> the job setting that names it, for error messages

    def row(self, rec: dict[str, Any], where: str, seq: int, folder: Path) -> InputRow:
        """The InputRow of record `rec`, found at `where` in a file in `folder`.

        `seq` is its id without [input] id.
        """
        if self.batch:
            cid, body = rec.get("custom_id"), rec.get("body")
            if cid is None or type(body) is not dict:
                raise InputError(
                    f'{where}: an OpenAI batch line needs "custom_id" and a "body" object; '
                    "fix the line"
                )
            rid = _row_id(cid, where, "custom_id")
            return InputRow(rid, None, body, {c: rec.get(c) for c in self.keep}, where)
        try:
            rid = str(seq) if self.id_col is None else _row_id(rec[self.id_col], where, self.id_col)
            if self.messages is not None:
                messages = _check_messages(rec[self.messages], where, self.messages)
            else:
                if self.template is not None:
                    for name in self.fields:
                        if rec[name] is None:
                            raise InputError(f"{where}: template field {{{name}}} is null; fill it")
                    text = self.template.format_map(rec)
                else:
                    text = rec[self.prompt]  # type: ignore[index]
                    if text is None:
                        raise InputError(f"{where}: prompt {self.prompt!r} is null; fill it")
                    if type(text) is not str:
                        raise _not_text(text, where, self.prompt)  # type: ignore[arg-type]
                messages = [{"role": "user", "content": text}]
            if self.images is not None and (parts := column_parts(
                rec[self.images], where, self.images
            )):
                messages = add_to_user_message(messages, parts, where)
            if self.system is not None:
                messages.insert(0, {"role": "system", "content": self.system})
            keep = {c: rec[c] for c in self.keep}
        except KeyError as e:
            col = e.args[0]
            raise missing_column(where, col, self.owners.get(col, f"column {col!r}"), rec) from None
        except (ValueError, IndexError, AttributeError, TypeError) as e:
            raise InputError(f"{where}: [input] template does not apply ({e}); fix it") from None
        return InputRow(rid, messages, None, keep, where, folder)


def plan_rows(
    spec: InputSpec, files: tuple[Path, ...], base_dir: Path, keep: tuple[str, ...]
) -> RowPlan:
    """The plan for this input: OpenAI batch or rows, and which column feeds what."""
    batch = is_openai_batch(spec, files, base_dir)
    if batch:
        if spec.images is not None:
            raise InputError(
                f"[input] images does not apply to OpenAI batch input "
                f"({show_path(files[0], base_dir)}): each line's body is sent as it is; put "
                'image_url parts in the bodies, or set [input] format = "rows"'
            )
        if bad := [c for c in keep if c not in _BATCH_FIELDS]:
            raise InputError(
                f"keep_columns {bad[0]!r} is not a field of OpenAI batch input "
                f"({show_path(files[0], base_dir)}); only custom_id, method and url can be kept"
            )
        return RowPlan(True, None, None, None, None, None, (), None, keep, {})
    if spec.messages is None and spec.prompt is None and spec.template is None:
        raise InputError(
            f"{show_path(files[0], base_dir)} is not OpenAI batch input (custom_id + body); "
            "set [input] prompt, messages or template"
        )
    template = spec.template if spec.messages is None else None
    try:
        fields = template_fields(template) if template is not None else ()
    except ValueError as err:
        raise JobError(f"[input] template {err}") from None
    owners = {c: f"keep_columns entry {c!r}" for c in keep}
    owners.update({f: f"template field {{{f}}}" for f in fields})
    if spec.messages is not None:
        owners[spec.messages] = f"[input] messages {spec.messages!r}"
    elif template is None and spec.prompt is not None:
        owners[spec.prompt] = f"[input] prompt {spec.prompt!r}"
    if spec.images is not None:
        owners[spec.images] = f"[input] images {spec.images!r}"
    if spec.id is not None:
        owners[spec.id] = f"[input] id {spec.id!r}"
    return RowPlan(
        False, spec.id, spec.prompt, spec.messages, spec.images, template, fields, spec.system,
        keep, owners,
    )


def _row_id(value: Any, where: str, column: str) -> str:
    """A row's id as text: a string, or an integer written in decimal."""
    if type(value) is str:
        return value
    if type(value) is int:  # not bool: `true` must not become the id "True"
        return str(value)
    if value is None:
        raise InputError(
            f"{where}: id {column!r} is null; give every row an id "
            "or drop [input] id to use row numbers"
        )
    raise InputError(
        f"{where}: id {column!r} is {_kind(value)} ({_shown(value)}), not a string or an "
        "integer; give every row a text or whole-number id"
    )


def _not_text(value: Any, where: str, column: str) -> InputError:
    # Sending str(value) would put a Python repr ("['x', 'y']") in front of the model.
    hint = "make it a string in the data"
    if type(value) is list:
        hint += (f' (or, for a list of {{"role", "content"}} messages, use [input] messages = '
                 f'"{column}")')
    return InputError(
        f"{where}: prompt column {column!r} is {_kind(value)} ({_shown(value)}), not text; {hint}"
    )


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", list: "a list",
             dict: "an object"}
    return names.get(type(value), f"a {type(value).__name__}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_messages(value: Any, where: str, column: str) -> list[dict[str, Any]]:
    if type(value) is list and value:
        for m in value:
            if (
                type(m) is not dict
                or type(m.get("role")) is not str
                or ("content" not in m and "tool_calls" not in m)
            ):
                break
        else:
            return value
    raise InputError(
        f'{where}: column {column!r} must be a non-empty list of {{"role", "content"}} objects; '
        "fix the row"
    )
