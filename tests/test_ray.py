"""Shards as Ray tasks on a real local Ray cluster, sharing a limit the mock enforces."""

from __future__ import annotations

import glob
import importlib.util
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import batchrun
from batchrun.engine import RunOptions
from batchrun.job import Job
from batchrun.mock import MockConfig, MockThread
from tests.conftest import write_job, write_rows

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="Ray is not installed: pip install -e '.[ray]' (the test extra has it)",
)

RPM = 6000.0  # 100/s, checked as 500 per 5 s window: the margin is a few requests a window
WINDOW_S = 5.0


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Any]:
    """One local Ray cluster for the module: starting one takes seconds."""
    import ray

    ray.init(num_cpus=3, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture
def limited_mock() -> Iterator[MockThread]:
    """The mock enforcing RPM over windows of WINDOW_S, answering after a few milliseconds."""
    with MockThread(MockConfig(rpm=RPM, window_s=WINDOW_S, latency_ms=5)) as server:
        yield server


def sharded_job(folder: Path, base_url: str, rows: int) -> Job:
    write_rows(folder / "rows.jsonl", [{"id": f"r{i}", "text": f"row {i}"} for i in range(rows)])
    path = write_job(folder, base_url=base_url,
                     provider={"requests_per_minute": RPM, "max_concurrency": 16},
                     variants=[{"name": "v", "model": "mock-1", "params": {"max_tokens": 8}}])
    return Job.from_toml(path)


def assert_one_ok_result_per_request(out: Path, rows: int) -> None:
    frame = batchrun.read(out)
    assert len(frame) == rows
    assert frame["id"].nunique() == rows
    assert (frame["status"] == "ok").all()


def test_importing_batchrun_never_imports_ray() -> None:
    code = ("import sys, batchrun, batchrun.cli, batchrun.cluster.ray_tasks; "
            "assert 'ray' not in sys.modules, 'ray was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


@needs_ray
@pytest.mark.slow
def test_shards_on_ray_stay_under_the_limit_they_share(
    tmp_path: Path, ray_cluster: Any, limited_mock: MockThread
) -> None:
    from batchrun.cluster.ray_tasks import run_on_ray

    rows = 1200  # some 12 s at the limit: windows where it binds
    job = sharded_job(tmp_path, limited_mock.base_url, rows)
    summary = run_on_ray(job, RunOptions(progress=False), 3, None)
    assert (summary.ok, summary.error, summary.pending) == (rows, 0, 0)
    stats = limited_mock.stats_snapshot()
    # Each shard paces at the whole limit; only the shared leases keep the three under it.
    assert stats["rate_limited"] == 0 and "429" not in stats["by_status"]
    assert stats["requests"] == rows
    assert sorted(p.name for p in (tmp_path / "out" / "shards").iterdir()) == [
        "0-of-3", "1-of-3", "2-of-3"]
    assert_one_ok_result_per_request(tmp_path / "out", rows)


def shard_workers() -> list[int]:
    """Processes running a shard task: Ray names them after the task's function."""
    pids = []
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(path, "rb") as handle:
                if handle.read().startswith(b"ray::_run_shard"):
                    pids.append(int(path.split("/")[2]))
        except OSError:
            continue
    return pids


@needs_ray
@pytest.mark.slow
def test_a_shard_whose_worker_is_killed_is_retried_and_resumes_its_journal(
    tmp_path: Path, ray_cluster: Any, limited_mock: MockThread
) -> None:
    from batchrun.cluster.ray_tasks import run_on_ray

    rows = 600
    job = sharded_job(tmp_path, limited_mock.base_url, rows)
    killed: list[int] = []
    done = threading.Event()

    def kill_one_worker_midway() -> None:
        while not done.wait(0.05):
            workers = shard_workers()
            if limited_mock.stats_snapshot()["ok"] >= rows // 3 and workers:
                os.kill(workers[0], signal.SIGKILL)
                killed.append(workers[0])
                return

    killer = threading.Thread(target=kill_one_worker_midway, daemon=True)
    killer.start()
    try:
        summary = run_on_ray(job, RunOptions(progress=False), 2, None)
    finally:
        done.set()
        killer.join()
    assert len(killed) == 1
    assert (summary.ok, summary.error, summary.pending) == (rows, 0, 0)
    assert_one_ok_result_per_request(tmp_path / "out", rows)
    stats = limited_mock.stats_snapshot()
    # Only what was in flight when the worker died (or answered, not yet journaled) was sent
    # again; the rest came back from its journal.
    assert stats["answered_twice"] <= 16
    assert stats["rate_limited"] == 0


@needs_ray
@pytest.mark.slow
def test_a_shards_own_error_reaches_the_caller_as_itself(
    tmp_path: Path, ray_cluster: Any, limited_mock: MockThread
) -> None:
    from batchrun.cluster.ray_tasks import run_on_ray
    from batchrun.errors import UsageError

    job = sharded_job(tmp_path, limited_mock.base_url, 10)
    (tmp_path / "rows.jsonl").write_text('{"id": "r0", "text": "one"}\n{"id": "r0", "text": '
                                         '"the same id again"}\n')
    with pytest.raises(UsageError):
        run_on_ray(job, RunOptions(progress=False), 2, None)


@needs_ray
@pytest.mark.slow
def test_the_command_line_runs_the_shards_on_the_cluster_at_an_address(
    tmp_path: Path, ray_cluster: Any, limited_mock: MockThread
) -> None:
    rows = 200
    sharded_job(tmp_path, limited_mock.base_url, rows)
    address = ray_cluster.get_runtime_context().gcs_address
    result = subprocess.run(
        [sys.executable, "-m", "batchrun", "run", str(tmp_path / "job.toml"), "--ray", address,
         "--shards", "2"], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    assert f"{rows} ok, 0 error, 0 pending" in result.stderr
    assert "shard 0-of-2 done" in result.stderr and "shard 1-of-2 done" in result.stderr
    assert_one_ok_result_per_request(tmp_path / "out", rows)

