"""The job file's JSON Schema, built from the section dataclasses so the two never disagree.

`batchrun schema` prints it; a job file whose first line is `#:schema ./job.schema.json` gets
completion and checks in taplo-based editors (Even Better TOML). The loader stays the judge: it
also checks what a schema cannot say (a variant's provider exists, a template's fields), and its
messages name the file and the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from batchrun.job.specs import (
    BatchSpec,
    BudgetSpec,
    InputSpec,
    OutputSpec,
    ParseSpec,
    Price,
    ProviderSpec,
    RetrySpec,
    VariantSpec,
)
from batchrun.providers import format_names
from batchrun.providers.presets import PRESETS

# Keys whose values are one of a few words; `api` is whatever wire formats are registered.
_CHOICES: dict[tuple[type, str], tuple[str, ...]] = {
    (InputSpec, "format"): ("auto", "rows", "openai-batch"),
    (ProviderSpec, "limits"): ("fixed", "auto"),
    (ParseSpec, "reasoning"): ("auto", "none"),
    (VariantSpec, "mode"): ("online", "batch"),
    (BatchSpec, "unfinished"): ("resubmit", "online", "error"),
}
# Keys that must be set, though their dataclass field has a default (or the loader fills it).
_REQUIRED: dict[type, tuple[str, ...]] = {
    InputSpec: ("path",),
    OutputSpec: ("path",),
    ProviderSpec: ("name",),
    VariantSpec: ("name", "provider", "model"),
    Price: ("input", "output"),
}
_DOCS: dict[tuple[type, str], str] = {
    (InputSpec, "path"): ".jsonl or .parquet file, a folder or a glob of them",
    (InputSpec, "id"): "column of unique row ids; absent: the row number",
    (InputSpec, "prompt"): "column with the user's text",
    (InputSpec, "messages"): "column of OpenAI-style message lists",
    (InputSpec, "images"): "column of image paths, http(s) or data: URLs (one or a list)",
    (InputSpec, "template"): "str.format template over the row's columns",
    (InputSpec, "system"): "system prompt sent before every row",
    (OutputSpec, "path"): "the run directory, which batchrun owns",
    (OutputSpec, "keep_columns"): "input columns copied into each result row",
    (OutputSpec, "flush_rows"): "checkpoint at least every this many results",
    (OutputSpec, "flush_seconds"): "checkpoint at least this often",
    (OutputSpec, "keep_raw"): "store the raw response JSON too",
    (ProviderSpec, "api"): "wire format: POST {base_url}/chat/completions or /messages",
    (ProviderSpec, "base_url"): 'an http(s) URL, or "mock" for the built-in mock provider',
    (ProviderSpec, "preset"): "a known provider: fills api and base_url",
    (ProviderSpec, "api_key_env"): "environment variable holding the key (never the key)",
    (ProviderSpec, "requests_per_minute"): "ceiling; left out: learned from headers and 429s",
    (ProviderSpec, "tokens_per_minute"): "ceiling on input + output tokens a minute",
    (ProviderSpec, "max_concurrency"): "requests in flight at once",
    (ProviderSpec, "timeout_seconds"): "a whole answer must arrive within this",
    (ProviderSpec, "idle_timeout_seconds"): "longest silence between two reads",
    (ProviderSpec, "headers"): "extra HTTP headers (never a key)",
    (ProviderSpec, "max_response_bytes"): "larger answers are refused, not read",
    (ProviderSpec, "stop_after_account_errors"): "account refusals in a row that stop it (exit 5)",
    (VariantSpec, "provider"): "the name of a [[provider]]",
    (VariantSpec, "samples"): "requests per row; sample k sends seed + k",
    (VariantSpec, "params"): "merged into the request body as it is",
    (VariantSpec, "price"): "USD per million tokens",
    (RetrySpec, "max_attempts"): "attempts in all, the first included",
    (RetrySpec, "retry_after_max_s"): "a server's Retry-After is obeyed up to this",
    (ParseSpec, "json"): "parse the answer as JSON into `parsed`",
    (ParseSpec, "schema"): "JSON Schema of the answer: a table, or a JSON file's path",
    (ParseSpec, "fields"): "keys of the parsed answer spread into their own columns",
    (BudgetSpec, "max_usd"): "stop sending before spending more (exit 3)",
    (VariantSpec, "mode"): '"batch": through the provider\'s batch API, at about half price',
    (Price, "batch"): "price multiplier in batch mode",
    (BatchSpec, "poll_seconds"): "how often batch states are polled (backing off when idle)",
    (BatchSpec, "max_requests"): "requests per provider batch; larger jobs are split",
    (BatchSpec, "max_bytes"): "bytes per uploaded batch file / request body",
    (BatchSpec, "window"): "completion_window sent to the provider",
    (BatchSpec, "unfinished"): "expired, cancelled or retryable-errored lines: what to do",
}
# Runtime-only fields of the dataclasses that a job file cannot set.
_NOT_KEYS: dict[type, tuple[str, ...]] = {}


def job_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a job file."""
    sections = {
        "name": {"type": "string", "minLength": 1, "description": "the job's name"},
        "input": _object(InputSpec),
        "output": _object(OutputSpec),
        "provider": {"type": "array", "minItems": 1, "items": _object(ProviderSpec)},
        "variant": {"type": "array", "minItems": 1, "items": _object(VariantSpec)},
        "retry": _object(RetrySpec),
        "parse": _object(ParseSpec),
        "budget": _object(BudgetSpec),
        "batch": _object(BatchSpec),
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "batchrun job file",
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "input", "output", "provider", "variant"],
        "properties": sections,
    }


def _object(spec: type) -> dict[str, Any]:
    hints = typing.get_type_hints(spec)
    properties: dict[str, Any] = {}
    for f in dataclasses.fields(spec):
        if f.name in _NOT_KEYS.get(spec, ()):
            continue
        schema = _value(hints[f.name])
        if (spec, f.name) in _CHOICES:
            schema = {"enum": list(_CHOICES[spec, f.name])}
        elif spec is ProviderSpec and f.name == "api":
            schema = {"enum": list(format_names())}
        elif spec is ProviderSpec and f.name == "preset":
            schema = {"enum": sorted(PRESETS)}
        elif spec is ParseSpec and f.name == "schema":
            schema = {"type": ["object", "string"]}
        if f.default is not dataclasses.MISSING and f.default is not None:
            schema["default"] = list(f.default) if isinstance(f.default, tuple) else f.default
        doc = _DOCS.get((spec, f.name))
        if doc:
            schema["description"] = doc
        properties[f.name] = schema
    required = _REQUIRED.get(spec) or tuple(
        f.name for f in dataclasses.fields(spec)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    result: dict[str, Any] = {"type": "object", "additionalProperties": False,
                              "properties": properties}
    if spec.__doc__:
        result["description"] = spec.__doc__.splitlines()[0]
    if required:
        result["required"] = list(required)
    return result


def _value(hint: Any) -> dict[str, Any]:
    """The schema of one field's type (`X | None` is X: leaving a key out is how to unset it)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _value(options[0]) if len(options) == 1 else {}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer", "minimum": 1}
    if hint is float:
        return {"type": "number", "minimum": 0}
    if hint is str:
        return {"type": "string", "minLength": 1}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return _object(hint)
    origin = typing.get_origin(hint)
    if origin is tuple:
        return {"type": "array", "items": _value(typing.get_args(hint)[0])}
    if origin in (Mapping, dict):
        value = typing.get_args(hint)[1]
        return {"type": "object"} if value is Any else {
            "type": "object", "additionalProperties": _value(value)}
    return {}
