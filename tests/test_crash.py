"""Crash safety with real processes and real signals: SIGKILL at random moments, and Ctrl-C."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import batchrun
from batchrun import store
from batchrun.mock import MockConfig, MockThread
from tests.conftest import write_job, write_rows

pytestmark = pytest.mark.slow

CONCURRENCY = 8


def start_run(job: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "batchrun", "run", str(job), "--no-progress"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )


def wait_for_answers(server: MockThread, count: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while server.stats_snapshot()["ok"] < count:
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.01)


def test_sigkill_at_random_moments_loses_nothing_and_pays_only_for_what_was_in_flight(
    tmp_path: Path,
) -> None:
    n_rows = 500
    chooser = random.Random(20261123)
    with MockThread(MockConfig(latency_ms=40)) as server:
        write_rows(tmp_path / "rows.jsonl",
                   [{"id": f"r{i}", "text": f"item {i}"} for i in range(n_rows)])
        job = write_job(tmp_path, base_url=server.base_url,
                        provider={"max_concurrency": CONCURRENCY},
                        output={"flush_rows": 37, "flush_seconds": 0.3})
        kills = 0
        answered = 0
        for _ in range(4):
            answered += chooser.randint(30, 90)
            process = start_run(job)
            wait_for_answers(server, answered, process)
            time.sleep(chooser.random() * 0.05)  # not always right after an answer
            process.send_signal(signal.SIGKILL)
            process.communicate()
            assert process.returncode == -signal.SIGKILL
            kills += 1
            answered = server.stats_snapshot()["ok"]
        final = start_run(job)
        _, stderr = final.communicate(timeout=120)
        assert final.returncode == 0, stderr.decode()
        stats = server.stats_snapshot()

    frame = batchrun.read(tmp_path / "out")
    assert len(frame) == n_rows
    assert frame.groupby(["id", "variant", "sample"]).size().max() == 1
    assert set(frame.status) == {"ok"}
    for part in store.list_parts(tmp_path / "out"):
        pq.read_table(part)  # every checkpoint is a whole Parquet file
    assert not list((tmp_path / "out" / store.PARTS_DIR).glob("*.tmp"))
    # Paid twice only for what was in flight when a kill came.
    paid_twice = sum(n - 1 for n in stats["answered"].values() if n > 1)
    assert paid_twice <= kills * CONCURRENCY
    assert len(stats["answered"]) == n_rows


def test_ctrl_c_flushes_exits_130_and_the_rerun_finishes(tmp_path: Path) -> None:
    n_rows = 300
    with MockThread(MockConfig(latency_ms=60)) as server:
        write_rows(tmp_path / "rows.jsonl",
                   [{"id": f"r{i}", "text": f"item {i}"} for i in range(n_rows)])
        job = write_job(tmp_path, base_url=server.base_url,
                        provider={"max_concurrency": CONCURRENCY},
                        output={"flush_rows": 1000, "flush_seconds": 60})
        process = start_run(job)
        wait_for_answers(server, 40, process)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr.decode()
        assert "resume" in stderr.decode()
        # Flushed: everything answered is in Parquet parts, nothing left in a journal.
        assert store.list_journals(tmp_path / "out") == []
        saved = batchrun.read(tmp_path / "out")
        assert 40 <= len(saved) < n_rows
        assert server.stats_snapshot()["ok"] == len(saved)

        rerun = start_run(job)
        _, stderr = rerun.communicate(timeout=60)
        assert rerun.returncode == 0, stderr.decode()
        stats = server.stats_snapshot()
    assert len(batchrun.read(tmp_path / "out")) == n_rows
    assert stats["answered_twice"] == 0
