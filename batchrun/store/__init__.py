"""The run directory's format: layout, journal, Parquet parts, manifest, lock, what is done."""

from batchrun.store.compaction import Compacted, compact
from batchrun.store.done import Previous, done_key, previous_results, revive
from batchrun.store.journal import JournalFile, read_journal
from batchrun.store.layout import (
    JOURNAL_DIR,
    MANIFEST,
    OWNED_NAMES,
    PARTS_DIR,
    SHARDS_DIR,
    journal_path,
    list_journals,
    list_parts,
    part_path,
)
from batchrun.store.lock import OutputLock, clear_run, prepare_output, run_locked
from batchrun.store.manifest import read_manifest, write_manifest
from batchrun.store.parts import (
    RESULT_COLUMNS,
    RESULT_SCHEMA,
    iter_keys,
    latest_per_key,
    lines_to_table,
    read_all,
    records_to_table,
    write_atomically,
)
from batchrun.store.recovery import recover
from batchrun.store.sharded import read_run, shard_counts, shard_folders

__all__ = [
    "JOURNAL_DIR",
    "MANIFEST",
    "OWNED_NAMES",
    "PARTS_DIR",
    "RESULT_COLUMNS",
    "RESULT_SCHEMA",
    "SHARDS_DIR",
    "Compacted",
    "JournalFile",
    "OutputLock",
    "Previous",
    "clear_run",
    "compact",
    "done_key",
    "iter_keys",
    "journal_path",
    "latest_per_key",
    "lines_to_table",
    "list_journals",
    "list_parts",
    "part_path",
    "prepare_output",
    "previous_results",
    "read_all",
    "read_journal",
    "read_manifest",
    "read_run",
    "records_to_table",
    "recover",
    "revive",
    "run_locked",
    "shard_counts",
    "shard_folders",
    "write_atomically",
    "write_manifest",
]
