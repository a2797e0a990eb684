"""`batchrun export`: the results to .parquet, .jsonl or .csv, or the OpenAI batch output shape."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from batchrun import sources, store
from batchrun.errors import UsageError
from batchrun.job import InputSpec, Job
from batchrun.results.read import read_table, to_pandas
from batchrun.sources.records import missing_column

if TYPE_CHECKING:
    import pandas as pd


def export(
    root: str | Path,
    to: str | Path,
    *,
    join_input: bool = False,
    format: str | None = None,
) -> int:
    """Write the results to `to` (.parquet, .jsonl or .csv by suffix); returns the row count."""
    root, target = Path(root), Path(to)
    table = read_table(root)
    if join_input:
        table = _join_input(root, table)
    target.parent.mkdir(parents=True, exist_ok=True)
    if format == "openai-batch":
        if target.suffix.lower() != ".jsonl":
            raise UsageError(f"{target}: --format openai-batch writes JSONL; name it *.jsonl")
        _write_openai_batch(table, target)
        return int(table.num_rows)
    if format is not None:
        raise UsageError(f"unknown export format {format!r}; known: openai-batch")
    suffix = target.suffix.lower()
    if suffix == ".parquet":
        pq.write_table(table, target)
    elif suffix == ".csv":
        pacsv.write_csv(_flat(table), target)
    elif suffix == ".jsonl":
        _write_jsonl(table, target)
    else:
        raise UsageError(f"{target}: unknown suffix; use .parquet, .jsonl or .csv")
    return int(table.num_rows)


def _flat(table: pa.Table) -> pa.Table:
    """CSV holds no lists or structs: such columns become JSON text."""
    for index, field in enumerate(table.schema):
        if pa.types.is_nested(field.type):
            values = [None if v is None else orjson.dumps(v, default=str).decode()
                      for v in table.column(index).to_pylist()]
            table = table.set_column(index, field.name, pa.array(values, pa.string()))
    return table


def _write_jsonl(table: pa.Table, target: Path) -> None:
    with target.open("wb") as handle:
        for batch in table.to_batches(max_chunksize=4096):
            for row in batch.to_pylist():
                handle.write(orjson.dumps(row, default=str) + b"\n")


def _join_input(root: Path, table: pa.Table) -> pa.Table:
    # A sharded run's shards ran the same job on the same input: any started one says which.
    manifests = [store.read_manifest(root), *(store.read_manifest(folder)
                                              for _, folder in store.shard_folders(root))]
    manifest = next((m for m in manifests if m is not None), None)
    if manifest is None:
        raise UsageError(f"{root}: no {store.MANIFEST}; --join-input needs the job it ran")
    job = Job.from_dict(manifest["job"], base_dir=Path(manifest.get("base_dir", ".")))
    frame = read_input_frame(job.input, job.base_dir)
    results = to_pandas(table)
    inputs = frame.rename(columns={c: f"input_{c}" for c in frame.columns
                                   if c != "id" and c in results.columns})
    merged = results.merge(inputs, on="id", how="left")
    return pa.Table.from_pandas(merged, preserve_index=False)


def read_input_frame(spec: InputSpec, base_dir: Path) -> pd.DataFrame:
    """The whole input as a DataFrame with a string "id" column first (loads it all)."""
    import pandas as pd

    files = sources.list_files(spec, base_dir)
    id_col = "custom_id" if sources.is_openai_batch(spec, files, base_dir) else spec.id
    frames: list[pd.DataFrame] = []
    ids: list[str] = []
    for path in files:
        shown = sources.show_path(path, base_dir)
        if path.suffix.lower() == ".parquet":
            with sources.open_parquet(path, shown) as pf:
                table = pf.read()
            frames.append(table.to_pandas())
            values = table.column(id_col).to_pylist() if id_col in table.column_names else None
        else:
            records = [rec for _, rec in sources.jsonl_records(path, shown)]
            frames.append(pd.DataFrame.from_records(records))
            values = [rec.get(id_col) for rec in records] if id_col else None
        if id_col is None:
            ids.extend(str(i) for i in range(len(ids), len(ids) + len(frames[-1])))
        elif values is None:
            raise missing_column(shown, id_col, f"[input] id {id_col!r}", frames[-1].columns)
        else:
            ids.extend(v if type(v) is str else str(v) for v in values)
    frame = pd.concat(frames, ignore_index=True).drop(columns="id", errors="ignore")
    frame.insert(0, "id", ids)
    return frame


def _write_openai_batch(table: pa.Table, target: Path) -> None:
    """The OpenAI Batch API output shape: one line per result, the body a chat.completion."""
    multi = len(set(table.column("variant").to_pylist())) > 1 or any(
        s > 0 for s in table.column("sample").to_pylist()
    )
    with target.open("wb") as handle:
        for row in table.to_pylist():
            custom_id = f"{row['id']}/{row['variant']}/{row['sample']}" if multi else row["id"]
            handle.write(orjson.dumps(_batch_line(row, custom_id)) + b"\n")


def _batch_line(row: dict[str, Any], custom_id: str) -> dict[str, Any]:
    if row["status"] != "ok":
        return {
            "id": f"batch_req_{row['request_hash'][:24]}",
            "custom_id": custom_id,
            "response": None,
            "error": {"code": row["error_type"], "message": row["error_message"]},
        }
    message: dict[str, Any] = {"role": "assistant", "content": row["content"]}
    if row.get("reasoning"):
        message["reasoning_content"] = row["reasoning"]
    if row.get("refusal"):
        message["refusal"] = row["refusal"]
    if row.get("tool_calls"):
        message["tool_calls"] = orjson.loads(row["tool_calls"])
    usage: dict[str, Any] = {
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "total_tokens": row["total_tokens"],
    }
    if row.get("reasoning_tokens") is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": row["reasoning_tokens"]}
    if row.get("cached_tokens") is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": row["cached_tokens"]}
    body = {
        "id": row["response_id"],
        "object": "chat.completion",
        "model": row["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": row["finish_reason"]}],
        "usage": usage,
    }
    return {
        "id": f"batch_req_{row['request_hash'][:24]}",
        "custom_id": custom_id,
        "response": {"status_code": 200, "request_id": row["response_id"], "body": body},
        "error": None,
    }
