"""Compaction: many small parts become a few large ones, with every row kept exactly once."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.compute as pc
import pytest

from batchrun import store
from batchrun.engine.record import ResultRecord
from batchrun.engine.sink import Sink
from batchrun.results import read_table
from batchrun.store.compaction import compact, drop_covered

ROOT = Path(__file__).resolve().parent.parent


def many_parts(root: Path, rows: int, per_part: int) -> None:
    """A run directory whose results sit in parts of `per_part` rows, as a long run leaves it."""
    store.prepare_output(root, fresh=False)
    (root / store.MANIFEST).write_text("{}")
    sink = Sink(root, flush_rows=per_part, flush_seconds=3600)
    sink.open()

    async def go() -> None:
        for i in range(rows):
            # Every tenth row answered twice (a retried error): the latest must win.
            for attempt in range(2 if i % 10 == 0 else 1):
                await sink.append(ResultRecord(
                    f"r{i}", "v", "p", "m", 0, f"{i:064x}", "ok" if attempt or i % 10 else "error",
                    1, 1_700_000_000_000_000 + i, content=f"answer {i}/{attempt}",
                    cost_usd=0.001, extra={"gold": i % 3}))
                if sink.pending_rows >= per_part:
                    await sink.flush()
        await sink.close()

    asyncio.run(go())


def all_rows(root: Path) -> list[str]:
    table = store.read_all(root)
    assert table is not None
    return sorted(table.column("id").to_pylist())


def test_compaction_merges_parts_and_keeps_every_row_and_its_order(tmp_path: Path) -> None:
    root = tmp_path / "out"
    many_parts(root, rows=500, per_part=10)
    before = read_table(root)
    spent_before = store.previous_results(root, retry_errors=False).spent
    assert len(store.list_parts(root)) == 55
    result = compact(root, target_rows=200)
    assert (result.parts_before, result.parts_after) == (55, 3)
    after = read_table(root)
    assert after.to_pylist() == before.to_pylist()  # same latest rows, same arrival order
    assert pc.sum(pc.equal(after.column("status"), "ok")).as_py() == 500
    assert store.previous_results(root, retry_errors=False).spent == pytest.approx(spent_before)
    assert compact(root, target_rows=200).parts_after == 3  # nothing left to merge


def test_a_reader_during_compaction_sees_every_row_once(tmp_path: Path) -> None:
    root = tmp_path / "out"
    many_parts(root, rows=2000, per_part=10)
    expected = sorted(f"r{i}" for i in range(2000))
    done = threading.Event()
    worker = threading.Thread(target=lambda: (compact(root, target_rows=100), done.set()))
    worker.start()
    reads = 0
    while not done.is_set() or reads < 3:
        assert sorted(read_table(root).column("id").to_pylist()) == expected
        reads += 1
    worker.join()
    assert len(store.list_parts(root)) < 30


@pytest.mark.slow
def test_compaction_killed_at_random_moments_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    rng = random.Random(7)
    root = tmp_path / "out"
    many_parts(root, rows=3000, per_part=10)
    spent = store.previous_results(root, retry_errors=False).spent
    expected = sorted(f"r{i}" for i in range(3000)) + sorted(f"r{i}" for i in range(0, 3000, 10))
    code = ("import sys; from pathlib import Path; from batchrun.store.compaction import compact; "
            "compact(Path(sys.argv[1]), target_rows=int(sys.argv[2]))")
    for round_ in range(5):
        process = subprocess.Popen([sys.executable, "-c", code, str(root), str(40 + 30 * round_)],
                                   cwd=ROOT)
        time.sleep(rng.uniform(0.3, 1.5))
        process.send_signal(signal.SIGKILL)
        process.wait()
        for tmp in (root / store.PARTS_DIR).glob("*.tmp"):
            tmp.unlink()  # what recovery does with a half-written part
        # Readers see every latest row once, even before the covered parts are dropped.
        assert sorted(read_table(root).column("id").to_pylist()) == expected[:3000]
        drop_covered(root)
        assert sorted(all_rows(root)) == sorted(expected)  # every row, each exactly once
        assert store.previous_results(root, retry_errors=False).spent == pytest.approx(spent)
    compact(root, target_rows=10_000)
    assert len(store.list_parts(root)) == 1
    assert sorted(all_rows(root)) == sorted(expected)
