"""JSONL and Parquet files -> (where, record) pairs, streamed; and whether an input is OpenAI batch.

Every error names the file and line (JSONL, 1-based) or row (Parquet, 0-based) and says what to do.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from batchrun.errors import InputError

if TYPE_CHECKING:
    from batchrun.job import InputSpec

_BOM = b"\xef\xbb\xbf"


def jsonl_records(path: Path, shown: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each JSON object of a JSONL file with its "file:line", one line at a time."""
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


def parquet_records(
    path: Path, shown: str, owners: Mapping[str, str], messages: str | None, batch_size: int
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each row of a Parquet file with its "file row i", reading only the columns in `owners`.

    `owners` maps each needed column to the job setting that names it, for the error message.
    """
    needed = list(owners)
    i = 0
    with open_parquet(path, shown) as pf:
        names = pf.schema_arrow.names
        for col in needed:
            if col not in names:
                raise missing_column(shown, col, owners[col], names)
        for batch in pf.iter_batches(batch_size=batch_size, columns=needed):
            for rec in batch.to_pylist():
                if messages is not None:
                    rec[messages] = _drop_struct_nulls(rec[messages])
                yield f"{shown} row {i}", rec
                i += 1


def open_parquet(path: Path, shown: str) -> pq.ParquetFile:
    """A Parquet file opened for streaming; InputError when it is not one."""
    try:
        return pq.ParquetFile(path, pre_buffer=False)  # read ahead one page, not one row group
    except (OSError, pa.ArrowException) as e:
        raise InputError(f"{shown}: cannot read as Parquet ({e}); check the file") from None


def _drop_struct_nulls(messages: Any) -> Any:
    # A Parquet list<struct> gives every message every field, null where a message lacked it;
    # APIs reject "name": null, so drop them (content stays: null content is meaningful). Parts
    # of a content list are structs too: a text part gets "image_url": null and the other way.
    if type(messages) is not list:
        return messages
    out = []
    for m in messages:
        if type(m) is dict:
            if None in m.values():
                m = {k: v for k, v in m.items() if v is not None or k == "content"}
            if type(m.get("content")) is list:
                m = {**m, "content": [_drop_nulls(p) for p in m["content"]]}
        out.append(m)
    return out


def _drop_nulls(part: Any) -> Any:
    if type(part) is not dict:
        return part
    return {k: _drop_nulls(v) for k, v in part.items() if v is not None}


def is_openai_batch(spec: InputSpec, files: tuple[Path, ...], base_dir: Path) -> bool:
    """Whether the input is OpenAI batch JSONL: by `format`, or with "auto" by its first line."""
    if spec.format == "rows":
        return False
    if spec.format == "auto":
        first = files[0]
        if first.suffix.lower() != ".jsonl":
            return False
        rec = next((rec for _, rec in jsonl_records(first, show_path(first, base_dir))), {})
        if "custom_id" not in rec or "body" not in rec:
            return False
    for path in files:
        if path.suffix.lower() != ".jsonl":
            raise InputError(
                f"{show_path(path, base_dir)}: OpenAI batch input must be .jsonl; convert the file "
                'or set [input] format = "rows"'
            )
    return True


def missing_column(where: str, col: str, owner: str, columns: Any) -> InputError:
    """The error for a column the job names but the data lacks, listing the columns there are."""
    listed = ", ".join(map(str, columns)) or "none"
    return InputError(
        f"{where}: {owner} is not a column; the columns are: {listed}. Fix the data or the job file"
    )


def show_path(path: Path, base_dir: Path) -> str:
    """`path` as messages show it: relative to the job file's folder when it is inside it."""
    try:
        return str(path.relative_to(base_dir))
    except ValueError:
        return str(path)
