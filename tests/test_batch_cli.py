"""`run --detach` then `run` to collect, `cancel DIR`, Ctrl-C, and `report`: real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import batchrun
from batchrun.mock import MockConfig, MockThread
from tests.test_batch_jobs import batch_job

pytestmark = pytest.mark.slow

ROWS = 20


def batchrun_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "BATCHRUN_TEST_KILL_AT"}
    return subprocess.run([sys.executable, "-m", "batchrun", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def report(folder: Path) -> dict[str, object]:
    done = batchrun_cli("report", str(folder / "out"), "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, object] = json.loads(done.stdout)
    return data


def test_detach_submits_and_exits_0_then_the_same_command_collects(tmp_path: Path) -> None:
    with MockThread(MockConfig(batch_seconds=1.0)) as server:
        job = batch_job(tmp_path, server.base_url, rows=ROWS, batch={"max_requests": 15})
        detached = batchrun_cli("run", str(job), "--detach")
        assert detached.returncode == 0, detached.stderr
        assert f"run `batchrun run {job}` again to collect them" in detached.stderr
        assert server.stats.batches_created == 2 and server.stats.batch_lines_billed == 0
        batches = report(tmp_path)["batches"]
        assert isinstance(batches, list)
        assert [b["state"] for b in batches] == ["created", "created"]
        assert all(b["batch_id"] for b in batches)

        collected = batchrun_cli("run", str(job))
        assert collected.returncode == 0, collected.stderr
        assert server.stats.batches_created == 2  # collected, not submitted again
    frame = batchrun.read(tmp_path / "out")
    assert len(frame) == ROWS and set(frame["status"]) == {"ok"}
    rows = report(tmp_path)["rows"]
    assert rows == {"total": ROWS, "ok": ROWS, "error": 0, "pending": 0}
    text = batchrun_cli("report", str(tmp_path / "out")).stdout
    assert "batches   2 committed" in text


def test_cancel_collects_what_the_batches_finished_and_leaves_the_rest_pending(
    tmp_path: Path,
) -> None:
    with MockThread(MockConfig(batch_seconds=3.0)) as server:
        job = batch_job(tmp_path, server.base_url, rows=ROWS)
        assert batchrun_cli("run", str(job), "--detach").returncode == 0
        # The cancel's own start-up takes a while: by then some lines, not all, are answered.
        cancelled = batchrun_cli("cancel", str(tmp_path / "out"))
        assert cancelled.returncode == 0, cancelled.stderr
        assert "1 batch cancelled" in cancelled.stderr
        assert server.stats.batches_ended == {"cancelled": 1}
        finished = server.stats.batch_lines_billed
        frame = batchrun.read(tmp_path / "out")
        assert 0 < len(frame) == finished < ROWS and set(frame["status"]) == {"ok"}
        assert report(tmp_path)["rows"] == {"total": ROWS, "ok": finished, "error": 0,
                                            "pending": ROWS - finished}

        rerun = batchrun_cli("run", str(job))  # sends what the cancel left
        assert rerun.returncode == 0, rerun.stderr
        assert server.stats.billed_twice() == 0 and server.stats.batch_lines_billed == ROWS
    assert len(batchrun.read(tmp_path / "out")) == ROWS


def test_ctrl_c_leaves_the_batches_running_says_how_to_collect_and_exits_130(
    tmp_path: Path,
) -> None:
    with MockThread(MockConfig(batch_seconds=2.0)) as server:
        job = batch_job(tmp_path, server.base_url, rows=ROWS)
        process = subprocess.Popen([sys.executable, "-m", "batchrun", "run", str(job)],
                                   stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        deadline = time.monotonic() + 30
        while server.stats.batches_created < 1:
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 130, err
        assert "1 batch still running at the provider" in err
        assert "run the same command again to collect them" in err
        assert server.stats.batches_ended == {}  # left running
        assert batchrun_cli("run", str(job)).returncode == 0
        assert server.stats.batches_created == 1
    assert len(batchrun.read(tmp_path / "out")) == ROWS
