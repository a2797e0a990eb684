"""Typed reading of TOML tables: unknown keys, types and ranges, every error naming file and key."""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, overload

import orjson

from batchrun.errors import JobError


def describe(value: object) -> str:
    """A value as the user wrote it, shortened, for `got ...` in messages."""
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, bool | int | float | str):
        shown = json.dumps(value, ensure_ascii=False)
        return shown if len(shown) <= 60 else shown[:57] + "..."
    return f"{value} (a TOML {type(value).__name__})"


def suggest(word: str, choices: Iterable[str], *, list_all: bool = False) -> str:
    """` — did you mean "x"?` for a close choice; the whole list when none is close or asked."""
    options = sorted(choices)
    close = difflib.get_close_matches(word, options, n=1)
    listing = "expected one of: " + ", ".join(f'"{option}"' for option in options)
    if close:
        return f' — did you mean "{close[0]}"?' + (f" ({listing})" if list_all else "")
    return f"; {listing}"


def is_number(value: object) -> bool:
    """An int or float, but not a bool (TOML's `true` is no number)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


class Table:
    """One table of a TOML document being read.

    `where` prefixes every message (`jobs/a.toml: [[variant]] "x"`); `prefix` is prepended to key
    names in nested inline tables (`"price.input"`). A key whose value is None counts as absent, so
    dicts built in Python may spell "not set" either way.
    """

    __slots__ = ("data", "prefix", "where")

    def __init__(self, data: Mapping[str, Any], where: str, prefix: str = "") -> None:
        self.data = data
        self.where = where
        self.prefix = prefix

    def fail(self, message: str) -> NoReturn:
        """Raise a JobError located at this table."""
        raise JobError(f"{self.where}: {message}")

    def name(self, key: str) -> str:
        """The key as shown in messages, quoted, with its nesting."""
        return f'"{self.prefix}{key}"'

    def wrong(self, key: str, expected: str, value: object) -> NoReturn:
        """Raise the standard `"key" must be <expected>, got <value>` error."""
        self.fail(f"{self.name(key)} must be {expected}, got {describe(value)}")

    def only(self, allowed: Iterable[str]) -> None:
        """Reject any key not in `allowed`, suggesting the closest one."""
        allowed = tuple(allowed)
        for key in self.data:
            if key not in allowed:
                self.fail(f"unknown key {self.name(key)}{suggest(key, allowed)}")

    def has(self, key: str) -> bool:
        """Whether the key is set."""
        return self.data.get(key) is not None

    def raw(self, key: str) -> Any:
        """The value as it is, None when absent."""
        return self.data.get(key)

    def required(self, key: str, hint: str = "") -> str:
        """A non-empty string that must be present."""
        value = self.text(key)
        if value is None:
            self.fail(f"{self.name(key)} is required{hint}")
        return value

    def text(self, key: str) -> str | None:
        """A non-empty string, or None when absent."""
        value = self.raw(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            self.wrong(key, "a non-empty string", value)
        return value

    @overload
    def integer(self, key: str, default: int, *, at_least: int = ...) -> int: ...
    @overload
    def integer(self, key: str, default: None = ..., *, at_least: int = ...) -> int | None: ...
    def integer(self, key: str, default: int | None = None, *, at_least: int = 1) -> Any:
        """An integer >= `at_least`."""
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, int) or isinstance(value, bool) or value < at_least:
            self.wrong(key, f"an integer >= {at_least}", value)
        return value

    @overload
    def number(self, key: str, default: float, *, positive: bool = ...) -> float: ...
    @overload
    def number(self, key: str, default: None = ..., *, positive: bool = ...) -> float | None: ...
    def number(self, key: str, default: float | None = None, *, positive: bool = True) -> Any:
        """A finite number, > 0 when `positive`, else >= 0; integers are accepted."""
        value = self.raw(key)
        if value is None:
            return default
        ok = is_number(value) and math.isfinite(value) and (value > 0 if positive else value >= 0)
        if not ok:
            self.wrong(key, "a number > 0" if positive else "a number >= 0", value)
        return float(value)

    def flag(self, key: str, default: bool | None = None) -> bool | None:
        """A boolean."""
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.wrong(key, "true or false", value)
        return value

    @overload
    def choice(self, key: str, choices: Sequence[str], default: str) -> str: ...
    @overload
    def choice(self, key: str, choices: Sequence[str], default: None) -> str | None: ...
    def choice(self, key: str, choices: Sequence[str], default: str | None) -> str | None:
        """One of `choices`."""
        value = self.raw(key)
        if value is None:
            return default
        if value not in choices:
            expected = "one of " + ", ".join(f'"{choice}"' for choice in choices)
            close = suggest(value, choices) if isinstance(value, str) else ""
            hint = close if close.startswith(" — ") else ""
            self.fail(f"{self.name(key)} must be {expected}, got {describe(value)}{hint}")
        return str(value)

    def texts(self, key: str) -> tuple[str, ...]:
        """An array of non-empty strings."""
        value = self.raw(key)
        if value is None:
            return ()
        if not isinstance(value, list | tuple) or not all(
            isinstance(item, str) and item for item in value
        ):
            self.wrong(key, "an array of strings", value)
        return tuple(value)

    def table(self, key: str) -> Table | None:
        """A nested (inline) table; its keys are shown as `"key.inner"`."""
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.wrong(key, "a table", value)
        return Table(value, self.where, f"{self.prefix}{key}.")

    def section(self, key: str) -> Table:
        """A `[key]` section; empty when absent."""
        value = self.raw(key)
        if value is not None and not isinstance(value, Mapping):
            self.wrong(key, f"a table ([{key}])", value)
        return Table(value or {}, f"{self.where}: [{key}]")

    def sections(self, key: str) -> list[Table]:
        """An array of `[[key]]` tables, each located by its position until it is named."""
        value = self.raw(key)
        if value is None:
            return []
        if isinstance(value, Mapping):
            self.fail(f'"{key}" must be an array of tables: write [[{key}]], not [{key}]')
        if not isinstance(value, list | tuple) or not all(isinstance(v, Mapping) for v in value):
            self.wrong(key, f"an array of tables ([[{key}]])", value)
        return [Table(item, f"{self.where}: [[{key}]] #{i}") for i, item in enumerate(value, 1)]

    def json_value(self, key: str) -> Any:
        """A deep copy of the value, refusing what JSON cannot carry (TOML dates, inf, nan)."""
        return self._json(self.name(key).strip('"'), self.raw(key))

    def _json(self, shown: str, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: self._json(f"{shown}.{k}", v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._json(f"{shown}[{i}]", v) for i, v in enumerate(value)]
        if value is None or isinstance(value, str | int):
            return value
        if isinstance(value, float) and math.isfinite(value):
            return value
        self.fail(f'"{shown}" cannot be sent as JSON (got {value}); write it as a string')

    def json_schema(self, key: str, base_dir: Path) -> dict[str, Any] | None:
        """A JSON Schema given inline, or as the path of a JSON file relative to `base_dir`."""
        value = self.raw(key)
        origin = ""
        if isinstance(value, str):
            path = base_dir / Path(value).expanduser()
            origin = f" (file {value})"
            try:
                value = orjson.loads(path.read_bytes())
            except FileNotFoundError:
                self.fail(f"{self.name(key)} file not found: {value} (looked for {path})")
            except orjson.JSONDecodeError as err:
                self.fail(f"{self.name(key)} file {value} is not valid JSON: {err}")
            except OSError as err:
                self.fail(f"{self.name(key)} file {value} cannot be read: {err.strerror}")
            if not isinstance(value, dict):
                self.fail(f"{self.name(key)}{origin} must hold a JSON object")
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.wrong(key, "a table, or the path of a JSON Schema file", value)
        schema: dict[str, Any] = self._json(self.name(key).strip('"'), value)
        # Imported here: jsonschema is slow to import and most jobs have no schema.
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as err:
            at = f" at {err.json_path}" if err.path else ""
            self.fail(f"{self.name(key)}{origin} is not a valid JSON Schema: {err.message}{at}")
        return schema
