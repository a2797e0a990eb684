"""JSONL / Parquet / directory / glob -> input rows, streamed in batches.

Inputs may hold millions of rows, so nothing here loads a whole file except `read_frame` (used by
`export --join-input`). JSONL is read one line at a time; Parquet one record batch at a time,
reading only the columns the job needs. Every error names the file and line (JSONL, 1-based) or
row (Parquet, 0-based) and says what to do next.
"""

from __future__ import annotations

import glob
import hashlib
import os
import string
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from batchrun.errors import InputError, JobError

if TYPE_CHECKING:
    import pandas as pd

    from batchrun.job import InputSpec

__all__ = [
    "InputRow",
    "InputScan",
    "input_columns",
    "iter_rows",
    "list_files",
    "read_frame",
    "scan",
]

_SUFFIXES = (".jsonl", ".parquet")
_BATCH_FIELDS = ("custom_id", "method", "url")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True, slots=True)
class InputRow:
    """One input row, ready to become requests."""

    id: str
    messages: list[dict[str, Any]] | None  # OpenAI-style; None when `body` is given
    body: dict[str, Any] | None  # openai-batch input: the request body as-is
    keep: dict[str, Any]  # keep_columns values
    where: str  # "data/x.jsonl:17" or "data/x.parquet row 17", for messages


@dataclass(frozen=True, slots=True)
class InputScan:
    """What a validation pass over the whole input found."""

    files: tuple[Path, ...]
    rows: int
    columns: tuple[str, ...]


def list_files(spec: InputSpec, base_dir: Path) -> tuple[Path, ...]:
    """The input files named by `spec.path`: a file, a directory of them, or a glob, sorted."""
    raw = spec.path
    if any(c in raw for c in "*?["):
        pattern = raw if os.path.isabs(raw) else os.path.join(glob.escape(str(base_dir)), raw)
        files = sorted(p for p in map(Path, glob.glob(pattern)) if p.is_file())
        if not files:
            raise InputError(f"no files match {raw!r} (from {base_dir}); check [input] path")
        for p in files:
            if p.suffix.lower() not in _SUFFIXES:  # a pattern is explicit: say, don't skip
                raise InputError(
                    f"{raw!r} matches {_show(p, base_dir)}, which is neither .jsonl nor .parquet; "
                    "narrow the pattern, e.g. data/*.jsonl"
                )
        return tuple(files)
    path = Path(raw) if os.path.isabs(raw) else base_dir / raw
    shown = _show(path, base_dir)
    try:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in _SUFFIXES)
            if not files:
                raise InputError(f"{shown}: the folder holds no .jsonl or .parquet files")
            return tuple(files)
    except OSError as e:
        raise InputError(f"{shown}: cannot read ({e.strerror}); check its permissions") from None
    if not path.exists():
        raise InputError(
            f"{shown}: no such file or folder; check [input] path "
            "(paths in a job file are relative to the job file's folder)"
        )
    if path.suffix.lower() not in _SUFFIXES:
        raise InputError(f"{shown}: unsupported file type; convert it to .jsonl or .parquet")
    return (path,)


def input_columns(spec: InputSpec, base_dir: Path) -> tuple[str, ...]:
    """The columns of the first input file (JSONL: the keys of its first line)."""
    first = list_files(spec, base_dir)[0]
    shown = _show(first, base_dir)
    if first.suffix.lower() == ".parquet":
        with _parquet_file(first, shown) as pf:
            return tuple(pf.schema_arrow.names)
    return next((tuple(rec) for _, rec in _jsonl(first, shown)), ())


def iter_rows(
    spec: InputSpec, base_dir: Path, keep_columns: Sequence[str] = (), batch_size: int = 2048
) -> Iterator[list[InputRow]]:
    """Yield the input's rows in lists of up to `batch_size`, reading lazily."""
    rows = _stream(spec, base_dir, tuple(keep_columns), batch_size)
    while batch := list(islice(rows, batch_size)):
        yield batch


def scan(spec: InputSpec, base_dir: Path, keep_columns: Sequence[str] = ()) -> InputScan:
    """Validate the whole input before anything is sent: parse, columns, ids present and unique."""
    files = list_files(spec, base_dir)
    # 8 bytes per row instead of a set of strings keeps a million-row scan within a few MB.
    hashes = array("q")
    for row in _stream(spec, base_dir, tuple(keep_columns), 1024):
        hashes.append(_hash(row.id))
    rows = len(hashes)
    sorted_hashes = np.frombuffer(hashes, dtype=np.int64)
    sorted_hashes.sort()
    clash = sorted_hashes[1:][sorted_hashes[1:] == sorted_hashes[:-1]]
    if clash.size:
        _name_duplicate(spec, base_dir, tuple(keep_columns), set(clash.tolist()))
    return InputScan(files, rows, input_columns(spec, base_dir))


def read_frame(spec: InputSpec, base_dir: Path) -> pd.DataFrame:
    """The whole input as a DataFrame with a string "id" column first (loads it all)."""
    import pandas as pd

    files = list_files(spec, base_dir)
    id_col = "custom_id" if _is_batch(spec, files, base_dir) else spec.id
    frames: list[pd.DataFrame] = []
    ids: list[str] = []
    for path in files:
        shown = _show(path, base_dir)
        if path.suffix.lower() == ".parquet":
            with _parquet_file(path, shown) as pf:
                table = pf.read()
            frames.append(table.to_pandas())
            values = table.column(id_col).to_pylist() if id_col in table.column_names else None
        else:
            records = [rec for _, rec in _jsonl(path, shown)]
            frames.append(pd.DataFrame.from_records(records))
            values = [rec.get(id_col) for rec in records] if id_col else None
        if id_col is None:
            ids.extend(str(i) for i in range(len(ids), len(ids) + len(frames[-1])))
        elif values is None:
            raise _missing(shown, id_col, f"[input] id {id_col!r}", frames[-1].columns)
        else:
            ids.extend(v if type(v) is str else str(v) for v in values)
    frame = pd.concat(frames, ignore_index=True).drop(columns="id", errors="ignore")
    frame.insert(0, "id", ids)
    return frame


@dataclass(frozen=True, slots=True)
class _Plan:
    """How to turn one record into an InputRow, decided once per input."""

    batch: bool
    id_col: str | None
    prompt: str | None
    messages: str | None
    template: str | None
    fields: tuple[str, ...]  # root names of the template's fields
    system: str | None
    keep: tuple[str, ...]
    owners: dict[str, str]  # column -> the job setting that names it, for error messages

    def row(self, rec: dict[str, Any], where: str, seq: int) -> InputRow:
        if self.batch:
            cid, body = rec.get("custom_id"), rec.get("body")
            if cid is None or type(body) is not dict:
                raise InputError(
                    f'{where}: an OpenAI batch line needs "custom_id" and a "body" object; '
                    "fix the line"
                )
            return InputRow(str(cid), None, body, {c: rec.get(c) for c in self.keep}, where)
        try:
            if self.id_col is None:
                rid = str(seq)
            else:
                rid = rec[self.id_col]
                if rid is None:
                    raise InputError(
                        f"{where}: id {self.id_col!r} is null; give every row an id "
                        "or drop [input] id to use row numbers"
                    )
                if type(rid) is not str:
                    rid = str(rid)
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
                        text = str(text)
                messages = [{"role": "user", "content": text}]
            if self.system is not None:
                messages.insert(0, {"role": "system", "content": self.system})
            keep = {c: rec[c] for c in self.keep}
        except KeyError as e:
            col = e.args[0]
            raise _missing(where, col, self.owners.get(col, f"column {col!r}"), rec) from None
        except (ValueError, IndexError, AttributeError, TypeError) as e:
            raise InputError(f"{where}: [input] template does not apply ({e}); fix it") from None
        return InputRow(rid, messages, None, keep, where)


def _plan(spec: InputSpec, files: tuple[Path, ...], base_dir: Path, keep: tuple[str, ...]) -> _Plan:
    batch = _is_batch(spec, files, base_dir)
    if batch:
        if bad := [c for c in keep if c not in _BATCH_FIELDS]:
            raise InputError(
                f"keep_columns {bad[0]!r} is not a field of OpenAI batch input "
                f"({_show(files[0], base_dir)}); only custom_id, method and url can be kept"
            )
        return _Plan(True, None, None, None, None, (), None, keep, {})
    if spec.messages is None and spec.prompt is None and spec.template is None:
        raise InputError(
            f"{_show(files[0], base_dir)} is not OpenAI batch input (custom_id + body); "
            "set [input] prompt, messages or template"
        )
    template = spec.template if spec.messages is None else None
    fields = _template_fields(template) if template is not None else ()
    owners = {c: f"keep_columns entry {c!r}" for c in keep}
    owners.update({f: f"template field {{{f}}}" for f in fields})
    if spec.messages is not None:
        owners[spec.messages] = f"[input] messages {spec.messages!r}"
    elif template is None and spec.prompt is not None:
        owners[spec.prompt] = f"[input] prompt {spec.prompt!r}"
    if spec.id is not None:
        owners[spec.id] = f"[input] id {spec.id!r}"
    return _Plan(
        False, spec.id, spec.prompt, spec.messages, template, fields, spec.system, keep, owners
    )


def _template_fields(template: str) -> tuple[str, ...]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise JobError(f"[input] template is not a valid format string ({e})") from None
    names: list[str] = []
    for _, field, spec, _ in parsed:
        if field is None:
            continue
        root = field.split(".", 1)[0].split("[", 1)[0]
        if not root or root.isdigit():
            raise JobError(
                f"[input] template has a positional field {{{field}}}; name a column, e.g. {{text}}"
            )
        names.append(root)
        if spec:
            names.extend(_template_fields(spec))
    return tuple(dict.fromkeys(names))


def _is_batch(spec: InputSpec, files: tuple[Path, ...], base_dir: Path) -> bool:
    if spec.format == "rows":
        return False
    if spec.format == "auto":
        first = files[0]
        if first.suffix.lower() != ".jsonl":
            return False
        rec = next((rec for _, rec in _jsonl(first, _show(first, base_dir))), {})
        if "custom_id" not in rec or "body" not in rec:
            return False
    for path in files:
        if path.suffix.lower() != ".jsonl":
            raise InputError(
                f"{_show(path, base_dir)}: OpenAI batch input must be .jsonl; convert the file "
                'or set [input] format = "rows"'
            )
    return True


def _stream(
    spec: InputSpec, base_dir: Path, keep: tuple[str, ...], batch_size: int
) -> Iterator[InputRow]:
    files = list_files(spec, base_dir)
    plan = _plan(spec, files, base_dir, keep)
    seq = 0
    for path in files:
        shown = _show(path, base_dir)
        if path.suffix.lower() == ".parquet":
            records = _parquet(path, shown, plan, batch_size)
        else:
            records = _jsonl(path, shown)
        for where, rec in records:
            yield plan.row(rec, where, seq)
            seq += 1


def _jsonl(path: Path, shown: str) -> Iterator[tuple[str, dict[str, Any]]]:
    try:
        f = open(path, "rb")  # noqa: SIM115 - a generator closes it when exhausted or collected
    except OSError as e:
        raise InputError(f"{shown}: cannot read ({e.strerror}); check its permissions") from None
    with f:
        if f.read(3) != _BOM:
            f.seek(0)
        for n, line in enumerate(f, 1):
            if line.isspace():
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                raise InputError(
                    f"{shown}:{n}: not a JSON object ({e}); fix or remove the line"
                ) from None
            if type(rec) is not dict:
                raise InputError(
                    f"{shown}:{n}: not a JSON object (a {type(rec).__name__}); "
                    "fix or remove the line"
                )
            yield f"{shown}:{n}", rec


def _parquet(
    path: Path, shown: str, plan: _Plan, batch_size: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    needed = list(plan.owners)
    i = 0
    with _parquet_file(path, shown) as pf:
        names = pf.schema_arrow.names
        for col in needed:
            if col not in names:
                raise _missing(shown, col, plan.owners[col], names)
        for batch in pf.iter_batches(batch_size=batch_size, columns=needed):
            for rec in batch.to_pylist():
                if plan.messages is not None:
                    rec[plan.messages] = _drop_struct_nulls(rec[plan.messages])
                yield f"{shown} row {i}", rec
                i += 1


def _parquet_file(path: Path, shown: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path, pre_buffer=False)  # read ahead one page, not one row group
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"{shown}: cannot read as Parquet ({e}); check the file") from None


def _drop_struct_nulls(messages: Any) -> Any:
    # A Parquet list<struct> gives every message every field, null where a message lacked it;
    # APIs reject "name": null, so drop them (content stays: null content is meaningful).
    if type(messages) is not list:
        return messages
    return [
        {k: v for k, v in m.items() if v is not None or k == "content"}
        if type(m) is dict and None in m.values()
        else m
        for m in messages
    ]


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


def _missing(where: str, col: str, owner: str, columns: Any) -> InputError:
    listed = ", ".join(map(str, columns)) or "none"
    return InputError(
        f"{where}: {owner} is not a column; the columns are: {listed}. Fix the data or the job file"
    )


def _hash(row_id: str) -> int:
    digest = hashlib.blake2b(row_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _name_duplicate(
    spec: InputSpec, base_dir: Path, keep: tuple[str, ...], clashes: set[int]
) -> None:
    # Only rows whose hash collided are remembered, so this second pass stays small too.
    seen: dict[str, str] = {}
    for row in _stream(spec, base_dir, keep, 1024):
        if _hash(row.id) not in clashes:
            continue
        if row.id in seen:
            fix = "" if spec.id is None else " or drop [input] id to use row numbers"
            raise InputError(
                f'duplicate id "{row.id}" at {seen[row.id]} and {row.where}; '
                f"ids must be unique — fix the data{fix}"
            )
        seen[row.id] = row.where


def _show(path: Path, base_dir: Path) -> str:
    try:
        return str(path.relative_to(base_dir))
    except ValueError:
        return str(path)
