"""The journal, the Parquet checkpoints, recovery after a crash, and the output-directory lock."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from batchrun import store
from batchrun.engine.record import ResultRecord
from batchrun.engine.sink import Sink
from batchrun.errors import OutputDirError
from batchrun.results import read
from batchrun.store import OutputLock, prepare_output, recover


def record(i: int, status: str = "ok", **extra: Any) -> ResultRecord:
    columns = {k: v for k, v in extra.items() if k in store.RESULT_COLUMNS}
    kept = {k: v for k, v in extra.items() if k not in store.RESULT_COLUMNS}
    columns.setdefault("content", f"answer {i}")
    return ResultRecord(f"r{i}", "v", "p", "m", 0, f"{i:064x}", status, 1,
                        1_700_000_000_000_000 + i, extra=kept, **columns)


def append(sink: Sink, *records: ResultRecord) -> None:
    """Hand records to the sink the way workers do, on an event loop."""
    async def go() -> None:
        for one in records:
            await sink.append(one)

    asyncio.run(go())


@pytest.fixture(autouse=True)
def close_sinks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every sink a test opened (after its assertions), as a finished run would."""
    opened: list[Sink] = []
    original = Sink.open

    def tracking_open(self: Sink) -> None:
        opened.append(self)
        original(self)

    monkeypatch.setattr(Sink, "open", tracking_open)
    yield
    for sink in opened:
        if sink.root.exists():
            asyncio.run(sink.close())


def make_output(tmp_path: Path) -> Path:
    root = tmp_path / "out"
    prepare_output(root, fresh=False)
    (root / store.MANIFEST).write_text("{}")
    return root


def test_results_are_readable_from_the_journal_before_any_checkpoint(tmp_path: Path) -> None:
    root = make_output(tmp_path)
    sink = Sink(root, flush_rows=1000, flush_seconds=3600)
    sink.open()
    for i in range(5):
        append(sink, record(i))
    frame = read(root)
    assert sorted(frame["id"]) == [f"r{i}" for i in range(5)]
    assert store.list_parts(root) == []


def test_checkpoint_turns_the_journal_into_a_parquet_part_and_removes_it(tmp_path: Path) -> None:
    root = make_output(tmp_path)
    sink = Sink(root, flush_rows=3, flush_seconds=3600)
    sink.open()
    for i in range(3):
        append(sink, record(i, gold="x"))
    assert sink.due()
    asyncio.run(sink.flush())
    parts = store.list_parts(root)
    assert len(parts) == 1
    table = pq.read_table(parts[0])
    assert table.num_rows == 3
    assert table.schema.field("finished_at").type == store.RESULT_SCHEMA.field("finished_at").type
    assert table.column("gold").to_pylist() == ["x", "x", "x"]
    assert [p.name for p in store.list_journals(root)] == ["000002.jsonl"]


def test_torn_last_journal_line_is_skipped_on_recovery(tmp_path: Path) -> None:
    root = make_output(tmp_path)
    journal = root / store.JOURNAL_DIR / "000001.jsonl"
    with journal.open("wb") as handle:
        for i in range(2):
            handle.write(record(i).to_line())
        handle.write(b'{"id": "r2", "variant": "v", "sta')  # a write cut by SIGKILL
    next_seq = recover(root)
    assert next_seq == 2
    assert store.list_journals(root) == []
    assert sorted(read(root)["id"]) == ["r0", "r1"]


def test_a_part_whose_journal_survived_is_not_counted_twice(tmp_path: Path) -> None:
    root = make_output(tmp_path)
    journal = root / store.JOURNAL_DIR / "000001.jsonl"
    journal.write_bytes(record(0).to_line())
    part = root / store.PARTS_DIR / "000001.parquet"
    store.write_atomically(store.records_to_table(store.read_journal(journal)), part)
    # Crash between the part's rename and the journal's removal: both exist.
    assert len(read(root)) == 1
    recover(root)
    assert store.list_journals(root) == []
    assert len(read(root)) == 1


def test_half_written_temporary_part_is_discarded(tmp_path: Path) -> None:
    root = make_output(tmp_path)
    (root / store.PARTS_DIR / "000001.parquet.tmp").write_bytes(b"PAR1 garbage")
    recover(root)
    assert not list((root / store.PARTS_DIR).iterdir())


def test_read_keeps_the_latest_result_per_id_variant_sample(tmp_path: Path) -> None:
    root = make_output(tmp_path)
    sink = Sink(root, flush_rows=1, flush_seconds=3600)
    sink.open()
    append(sink, record(0, status="error", content=None, error_type="ServerError"))
    asyncio.run(sink.flush())
    append(sink, record(0, content="second try"))
    frame = read(root)
    assert len(frame) == 1
    assert frame.loc[0, "status"] == "ok"
    assert frame.loc[0, "content"] == "second try"


def test_second_live_lock_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    root = make_output(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from batchrun.store import OutputLock;"
         "lock = OutputLock(Path(sys.argv[1])); lock.acquire();"
         "print('locked', flush=True); time.sleep(60)",
         str(root)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputDirError, match=f"pid {holder.pid}"):
            OutputLock(root).acquire()
    finally:
        holder.kill()
        holder.communicate()
    # The killed holder's lock does not block the next run.
    lock = OutputLock(root)
    lock.acquire()
    lock.release()


def test_fresh_refuses_a_directory_with_foreign_files(tmp_path: Path) -> None:
    root = make_output(tmp_path)
    (root / "thesis.docx").write_text("precious")
    with pytest.raises(OutputDirError, match=r"thesis\.docx"):
        prepare_output(root, fresh=True)
    assert (root / "thesis.docx").exists()


def test_fresh_clears_batchrun_results(tmp_path: Path) -> None:
    root = make_output(tmp_path)
    sink = Sink(root, flush_rows=1, flush_seconds=3600)
    sink.open()
    append(sink, record(0))
    asyncio.run(sink.flush())
    prepare_output(root, fresh=True)
    assert store.list_parts(root) == []
    assert not (root / store.MANIFEST).exists()


def test_journal_writes_reach_the_kernel_without_a_flush(tmp_path: Path) -> None:
    root = make_output(tmp_path)
    sink = Sink(root, flush_rows=1000, flush_seconds=3600)
    sink.open()
    append(sink, record(7))
    journal = store.list_journals(root)[0]
    # Another reader sees the line at once: nothing waits in a user-space buffer.
    assert os.path.getsize(journal) > 0
    assert store.read_journal(journal)[0]["id"] == "r7"
