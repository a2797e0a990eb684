"""Input files -> rows -> canonical requests with token estimates, streamed in bounded memory."""

from batchrun.sources.records import is_openai_batch, jsonl_records, open_parquet, show_path
from batchrun.sources.requests import DEFAULT_COMPLETION_RESERVATION, Request, requests_for_row
from batchrun.sources.rows import InputRow
from batchrun.sources.shards import Shard, id_hash
from batchrun.sources.stream import (
    InputScan,
    input_columns,
    iter_rows,
    list_files,
    no_rows,
    scan,
)

__all__ = [
    "DEFAULT_COMPLETION_RESERVATION",
    "InputRow",
    "InputScan",
    "Request",
    "Shard",
    "id_hash",
    "input_columns",
    "is_openai_batch",
    "iter_rows",
    "jsonl_records",
    "list_files",
    "no_rows",
    "open_parquet",
    "requests_for_row",
    "scan",
    "show_path",
]
