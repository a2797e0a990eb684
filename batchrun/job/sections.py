"""Job-file sections -> the dataclasses of `batchrun.job.specs`, each key checked where it is read.

The generic checks (types, unknown keys, "did you mean") live in `batchrun.job.toml_table`. A key
left out is left out of the dataclass too, so its default is written once, in `specs`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
from batchrun.job.toml_table import Table, suggest
from batchrun.providers import anthropic, format_names, responses
from batchrun.providers.batches import batch_api_names
from batchrun.providers.presets import PRESETS, requires_max_tokens


def _keys(spec: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(spec))


def _given(**values: Any) -> dict[str, Any]:
    """The keys the job set: the dataclass supplies the default of every other one."""
    return {key: value for key, value in values.items() if value is not None}


TOP_KEYS = ("name", "input", "output", "provider", "variant", "retry", "parse", "budget",
            "batch")
MODES = ("online", "batch")
UNFINISHED = ("resubmit", "online", "error")
# completion_window: OpenAI takes "24h"; some compatible providers take longer ones ("7d").
_WINDOW = re.compile(r"[1-9][0-9]*[hd]")
_CEILINGS = (
    "requests_per_minute",
    "tokens_per_minute",
    "input_tokens_per_minute",
    "output_tokens_per_minute",
)
# Keys reach the request from api_key_env alone, so they never land in a job file or a snapshot.
_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Labels of letters (any script), digits and hyphens, dot-separated; an IPv4 address fits too.
_HOST = re.compile(r"(?!-)[\w-]+(?<!-)(\.(?!-)[\w-]+(?<!-))*\.?")
# What each wire format cannot translate from the canonical params, said when the job loads.
_REFUSED_PARAMS = {"anthropic": anthropic.refused_params, "responses": responses.refused_params}
_NOT_PARAMS = {
    "model": "set the variant's model = ... instead",
    "messages": "the messages are built from [input]",
    "stream": "set the variant's stream = true instead",
}


def check_unique(
    kind: str, tables: list[Table], specs: Sequence[ProviderSpec | VariantSpec]
) -> None:
    seen: set[str] = set()
    for table, spec in zip(tables, specs, strict=True):
        if spec.name in seen:
            table.fail(f'another [[{kind}]] is also named "{spec.name}"; names must be unique')
        seen.add(spec.name)


def read_input(t: Table) -> InputSpec:
    t.only(_keys(InputSpec))
    spec = InputSpec(**_given(
        path=t.required("path", " (a .jsonl or .parquet file, a directory or a glob of them)"),
        id=t.text("id"),
        prompt=t.text("prompt"),
        messages=t.text("messages"),
        images=t.text("images"),
        template=t.text("template"),
        system=t.text("system"),
        format=t.choice("format", ("auto", "rows", "openai-batch"), None),
    ))
    if spec.prompt and spec.messages:
        t.fail('set only one of "prompt" (a column of text) and "messages" (a column of messages)')
    if spec.template is not None:
        if spec.messages:
            t.fail('"template" builds the user message, so it cannot go with "messages"')
        _check_template(t, spec.template)
    if spec.format == "openai-batch":
        for key in ("prompt", "messages", "images", "template", "system"):
            if t.has(key):
                t.fail(f'"{key}" does not apply to format = "openai-batch": each line has its body')
    elif spec.format == "rows" and not (spec.prompt or spec.messages or spec.template):
        t.fail(
            'set "prompt" (a column of text), "messages" (a column of message lists) '
            'or "template" (text with {column} fields)'
        )
    if spec.images is not None and not (spec.prompt or spec.messages or spec.template):
        t.fail(
            '"images" are added to the user message: set "prompt", "messages" or "template" '
            'too (the same text for every row: template = "Describe the image.")'
        )
    return spec


def _check_template(t: Table, template: str) -> None:
    try:
        template_fields(template)
    except ValueError as err:
        t.fail(f'"template" {err}')


def template_fields(template: str) -> tuple[str, ...]:
    """The columns a template's `{fields}` read (their root names); ValueError if it has none."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ValueError(
            f"is not a valid format string ({err}); write {{{{ and }}}} for braces"
        ) from None
    names: list[str] = []
    for _, field, spec, _ in parsed:
        if field is None:
            continue
        root = field.split(".", 1)[0].split("[", 1)[0]
        if not root or root.isdigit():
            raise ValueError(f"has a positional field {{{field}}}; name a column, e.g. {{text}}")
        names.append(root)
        if spec:
            names.extend(template_fields(spec))
    return tuple(dict.fromkeys(names))


def read_output(t: Table) -> OutputSpec:
    t.only(_keys(OutputSpec))
    return OutputSpec(**_given(
        path=t.required("path", " (the run directory, which batchrun owns)"),
        keep_columns=t.texts("keep_columns"),
        flush_rows=t.integer("flush_rows"),
        flush_seconds=t.number("flush_seconds"),
        keep_raw=t.flag("keep_raw"),
    ))


def read_provider(t: Table, source: str) -> ProviderSpec:
    name = t.required("name")
    t.where = f'{source}: [[provider]] "{name}"'
    t.only(_keys(ProviderSpec))
    preset_name = t.text("preset")
    preset = PRESETS.get(preset_name) if preset_name is not None else None
    if preset_name is not None and preset is None:
        t.fail(f'unknown preset "{preset_name}"{suggest(preset_name, PRESETS, list_all=True)}')
    api = t.choice("api", format_names(), preset.api if preset else None)
    if api is None:
        t.fail('"api" is required: "openai" or "anthropic" (or a preset, e.g. preset = "openai")')
    base_url = t.text("base_url") or (preset.base_url if preset else None)
    if base_url is None and preset is not None:
        t.fail(f'preset "{preset.name}" has no fixed address: set base_url, e.g. "https://host/v1"')
    if base_url is None:
        t.fail('"base_url" is required (e.g. "https://api.example.com/v1", or "mock")')
    if base_url != "mock":
        _check_base_url(t, base_url)
    key_env = t.text("api_key_env")
    if key_env is not None and not _ENV_NAME.fullmatch(key_env):
        # The value is not echoed: it may be the key itself, pasted in the wrong place.
        t.fail('"api_key_env" must be the name of an environment variable, not the key itself')
    rpm, tpm, itpm, otpm = (t.number(key) for key in _CEILINGS)
    any_ceiling = any(value is not None for value in (rpm, tpm, itpm, otpm))
    return ProviderSpec(**_given(
        name=name,
        api=api,
        base_url=base_url,
        api_key_env=key_env,
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
        input_tokens_per_minute=itpm,
        output_tokens_per_minute=otpm,
        max_concurrency=t.integer("max_concurrency"),
        timeout_seconds=t.number("timeout_seconds"),
        idle_timeout_seconds=t.number("idle_timeout_seconds"),
        max_response_bytes=t.integer("max_response_bytes"),
        stop_after_account_errors=t.integer("stop_after_account_errors"),
        headers=_read_headers(t),
        limits=t.choice("limits", ("fixed", "auto"), "fixed" if any_ceiling else "auto"),
        preset=preset_name,
    ))


def _check_base_url(t: Table, url: str) -> None:
    """Refuse at load time what would make every request fail (or leak) at run time."""
    example = ' (e.g. "https://api.example.com/v1")'
    if "@" in url.partition("//")[2].partition("/")[0]:
        # Checked first and not echoed: a user:password part is a secret in the wrong place.
        t.fail('"base_url" must not hold a user or password; keys come from api_key_env only')
    try:
        parts = urlsplit(url)
        port = parts.port  # ValueError when out of range or not a number
    except ValueError as err:
        t.fail(f'"base_url" = "{url}" is not a valid URL ({err}){example}')
    if parts.scheme not in ("http", "https"):
        t.wrong("base_url", 'an http:// or https:// URL, or "mock"', url)
    host = parts.hostname or ""
    if not (_HOST.fullmatch(host) or _is_ip_literal(parts.netloc, host)):
        t.fail(f'"base_url" = "{url}" has no valid host name{example}')
    if port == 0:
        t.fail(f'"base_url" = "{url}": port 0 cannot be connected to; give a port from 1 to 65535')
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        t.fail(
            f'"base_url" = "{url}" must not have a ?query or #fragment: the API path '
            '(e.g. /chat/completions) is appended to it'
        )


def _is_ip_literal(netloc: str, host: str) -> bool:
    if "[" not in netloc:
        return False
    try:
        ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _read_headers(t: Table) -> dict[str, str]:
    table = t.table("headers")
    if table is None:
        return {}
    for key, value in table.data.items():
        if key.lower() in _SECRET_HEADERS:
            t.fail(
                f"{table.name(key)} is not allowed: keys come from api_key_env only "
                '(api_key_env = "MY_KEY_VAR", with the key exported in that variable)'
            )
        if not isinstance(value, str):
            t.fail(f"{table.name(key)} must be a string")  # not echoed: headers may hold secrets
    return dict(table.data)


def read_variant(t: Table, source: str, providers: Mapping[str, ProviderSpec]) -> VariantSpec:
    name = t.required("name")
    t.where = f'{source}: [[variant]] "{name}"'
    t.only(_keys(VariantSpec))
    provider = t.required("provider", " (the name of a [[provider]])")
    if provider not in providers:
        t.fail(f'"provider" = "{provider}" names no [[provider]]{suggest(provider, providers)}')
    mode = t.choice("mode", MODES, None)
    if mode == "batch":
        _check_batch_variant(t, providers[provider])
    return VariantSpec(**_given(
        name=name,
        provider=provider,
        model=t.required("model", ' (e.g. model = "gpt-4o-mini")'),
        stream=t.flag("stream"),
        samples=t.integer("samples"),
        params=_read_params(t, providers[provider]),
        price=_read_price(t),
        mode=mode,
    ))


def _check_batch_variant(t: Table, provider: ProviderSpec) -> None:
    """Refuse at load time a batch variant that no batch API could take."""
    if provider.api not in batch_api_names():
        apis = ", ".join(f'"{name}"' for name in batch_api_names())
        t.fail(
            f'mode = "batch": provider "{provider.name}" has api = "{provider.api}", which has '
            f'no batch API here (batch mode works with api = {apis}); set mode = "online" or '
            "use another provider"
        )
    if t.flag("stream"):
        t.fail('mode = "batch" answers are never streamed: drop stream = true from this variant')


def _read_params(t: Table, provider: ProviderSpec) -> dict[str, Any]:
    table = t.table("params") or Table({}, t.where, "params.")
    for key, instead in _NOT_PARAMS.items():
        if key in table.data:
            t.fail(f'"params.{key}" is not allowed: {instead}')
    if table.integer("n", 1) > 1:
        n = table.data["n"]
        t.fail(
            f'"params.n" = {n} is not supported: use samples = {n} instead: '
            "each sample is its own row, retried and seeded on its own"
        )
    if table.has("max_tokens"):
        table.integer("max_tokens", 1)
    elif requires_max_tokens(provider.api, provider.preset):
        why = "the Anthropic API" if provider.api == "anthropic" else f'preset "{provider.preset}"'
        t.fail(
            f'provider "{provider.name}" ({why}) requires max_tokens: '
            "add params = { max_tokens = 1024 } (or your limit)"
        )
    params = {key: table.json_value(key) for key in table.data}
    refused = _REFUSED_PARAMS.get(provider.api)
    if refused is not None and (problem := refused(params)):
        t.fail(f'provider "{provider.name}" (api = "{provider.api}"): {problem}')
    return params


def _read_price(t: Table) -> Price | None:
    table = t.table("price")
    if table is None:
        return None
    table.only(_keys(Price))
    for key in ("input", "output"):
        if not table.has(key):
            t.fail(f"{table.name(key)} is required (USD per million tokens)")
    return Price(
        input=table.number("input", 0.0, positive=False),
        output=table.number("output", 0.0, positive=False),
        cached_input=table.number("cached_input", positive=False),
        **_given(batch=table.number("batch", positive=False)),
    )


def read_retry(t: Table) -> RetrySpec:
    t.only(_keys(RetrySpec))
    spec = RetrySpec(**_given(
        max_attempts=t.integer("max_attempts"),
        backoff_initial_s=t.number("backoff_initial_s"),
        backoff_max_s=t.number("backoff_max_s"),
        retry_after_max_s=t.number("retry_after_max_s"),
    ))
    if spec.backoff_max_s < spec.backoff_initial_s:
        t.fail('"backoff_max_s" must be >= "backoff_initial_s"')
    return spec


def read_parse(t: Table, base_dir: Path) -> ParseSpec:
    t.only(_keys(ParseSpec))
    as_json = bool(t.flag("json"))
    for key in ("schema", "fields"):
        # An empty list is "not set" (a to_dict snapshot writes one).
        if t.has(key) and t.data.get(key) not in ([], ()) and not as_json:
            t.fail(f'"{key}" needs json = true: the answer must be parsed as JSON first')
    return ParseSpec(**_given(
        reasoning=t.choice("reasoning", ("auto", "none"), None),
        json=as_json,
        schema=t.json_schema("schema", base_dir),
        fields=t.texts("fields"),
    ))


def read_budget(t: Table) -> BudgetSpec:
    t.only(_keys(BudgetSpec))
    return BudgetSpec(max_usd=t.number("max_usd"))


def read_batch(t: Table) -> BatchSpec:
    t.only(_keys(BatchSpec))
    window = t.text("window")
    if window is not None and not _WINDOW.fullmatch(window):
        t.wrong("window", 'a completion window such as "24h" (what the provider accepts)', window)
    return BatchSpec(**_given(
        poll_seconds=t.number("poll_seconds"),
        max_requests=t.integer("max_requests"),
        max_bytes=t.integer("max_bytes", at_least=1024),
        window=window,
        unfinished=t.choice("unfinished", UNFINISHED, None),
    ))
