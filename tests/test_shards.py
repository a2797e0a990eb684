"""Shards: real processes into one directory, killed with real signals, read back as one dataset."""

from __future__ import annotations

import json
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
from batchrun.engine.shards import shard_from_environment, shard_job
from batchrun.errors import UsageError
from batchrun.job import Job
from batchrun.mock import MockConfig, MockThread
from batchrun.mock.answer import answer_digest
from batchrun.sources import Shard
from batchrun.store import OutputLock
from tests.conftest import write_job, write_rows

ROOT = Path(__file__).resolve().parent.parent
CONCURRENCY = 6


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batchrun", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})}, cwd=cwd)


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "batchrun", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def rows(n: int) -> list[dict[str, str]]:
    return [{"id": f"r{i}", "text": f"item {i}"} for i in range(n)]


def test_a_shard_owns_rows_by_id_hash_evenly_and_the_shards_partition_the_rows() -> None:
    ids = [f"row-{i}" for i in range(30_000)]
    owners = [[s for s in range(3) if Shard(s, 3).owns(i)] for i in ids]
    assert all(len(o) == 1 for o in owners)  # disjoint and covering
    sizes = [sum(o == [s] for o in owners) for s in range(3)]
    assert max(sizes) - min(sizes) < 0.05 * len(ids) / 3
    assert Shard.parse(" 2/5 ") == Shard(2, 5) and str(Shard(2, 5)) == "2-of-5"
    for bad in ("3/3", "1", "-1/2", "a/b", "0/0"):
        with pytest.raises(UsageError):
            Shard.parse(bad)


def test_the_environment_names_the_shard_slurm_kubernetes_and_batchrun_shard() -> None:
    assert shard_from_environment({}) is None
    assert shard_from_environment({"BATCHRUN_SHARD": "1/4"}) == Shard(1, 4)
    slurm = {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "4",
             "SLURM_ARRAY_TASK_MIN": "5"}
    assert shard_from_environment(slurm) == Shard(2, 4)
    assert shard_from_environment({**slurm, "SLURM_ARRAY_TASK_MIN": "0",
                                   "SLURM_ARRAY_TASK_ID": "3"}) == Shard(3, 4)
    with pytest.raises(UsageError, match="contiguous"):
        shard_from_environment({**slurm, "SLURM_ARRAY_TASK_ID": "9"})
    assert shard_from_environment({"JOB_COMPLETION_INDEX": "2"}, shards=3) == Shard(2, 3)
    with pytest.raises(UsageError, match="--shards N"):
        shard_from_environment({"JOB_COMPLETION_INDEX": "2"})
    with pytest.raises(UsageError, match="JOB_COMPLETION_INDEX"):
        shard_from_environment({}, shards=3)
    # BATCHRUN_SHARD is the explicit one: it wins over a scheduler's variables.
    assert shard_from_environment({**slurm, "BATCHRUN_SHARD": "0/2"}) == Shard(0, 2)
    # A step or a list leaves gaps in the task ids: refused, not mapped onto wrong shards.
    with pytest.raises(UsageError, match="contiguous"):
        shard_from_environment({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3",
                                "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "4",
                                "SLURM_ARRAY_TASK_STEP": "2"})
    with pytest.raises(UsageError, match="contiguous"):
        shard_from_environment({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "3",
                                "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "5"})
    with pytest.raises(UsageError, match="disagrees"):
        shard_from_environment({"BATCHRUN_SHARD": "0/2"}, shards=3)


def test_a_shard_gets_its_share_of_the_stated_limits_and_budget(tmp_path: Path) -> None:
    job = Job.from_toml(write_job(
        tmp_path, base_url="mock", budget={"max_usd": 9.0},
        provider={"requests_per_minute": 900, "tokens_per_minute": 30_000, "max_concurrency": 8}))
    share = shard_job(job, Shard(1, 3))
    spec = share.providers[0]
    assert (spec.requests_per_minute, spec.tokens_per_minute, spec.max_concurrency) == (
        300, 10_000, 3)
    assert share.budget.max_usd == pytest.approx(3.0)
    assert share.output_path() == job.output_path() / "shards" / "1-of-3"
    # Shared through one limiter (Ray), the shard keeps the whole limit.
    shared = shard_job(job, Shard(1, 3), divide_limits=False)
    assert shared.providers[0].requests_per_minute == 900
    assert shared.providers[0].max_concurrency == 3  # connections are each shard's own
    assert shared.budget.max_usd == pytest.approx(3.0)  # each shard still counts its own spend


@pytest.mark.slow
def test_three_shard_processes_one_killed_then_rerun_then_reshuffled_input_each_row_once(
    tmp_path: Path,
) -> None:
    n_rows = 450
    with MockThread(MockConfig(latency_ms=30)) as server:
        write_rows(tmp_path / "rows.jsonl", rows(n_rows))
        job = write_job(tmp_path, base_url=server.base_url,
                        provider={"max_concurrency": 3 * CONCURRENCY},
                        output={"flush_rows": 25, "flush_seconds": 0.3})
        shards = [start("run", str(job), "--shard", f"{i}/3", "--no-progress") for i in range(3)]
        deadline = time.monotonic() + 60
        while server.stats_snapshot()["ok"] < 90:
            assert time.monotonic() < deadline, "the shards made no progress"
            time.sleep(0.01)
        shards[1].send_signal(signal.SIGKILL)
        for process in shards:
            _, stderr = process.communicate(timeout=120)
            assert process.returncode in (0, -signal.SIGKILL), stderr.decode()
        assert shards[1].returncode == -signal.SIGKILL
        rerun = cli("run", str(job), "--shard", "1/3", "--no-progress")
        assert rerun.returncode == 0, rerun.stderr
        answered = server.stats_snapshot()["ok"]

        # The input reshuffled: every row is still in its shard, so nothing is sent again.
        shuffled = rows(n_rows)
        random.Random(3).shuffle(shuffled)
        write_rows(tmp_path / "rows.jsonl", shuffled)
        for i in range(3):
            again = cli("run", str(job), "--shard", f"{i}/3", "--no-progress")
            assert again.returncode == 0, again.stderr
            assert "already done" in again.stderr
        stats = server.stats_snapshot()
    assert stats["ok"] == answered  # nothing already answered was sent again

    frame = batchrun.read(tmp_path / "out")
    assert len(frame) == n_rows
    assert frame.groupby(["id", "variant", "sample"]).size().max() == 1
    assert set(frame.status) == {"ok"}
    for shard_name, group in frame.groupby("shard"):
        index, count = (int(x) for x in str(shard_name).split("-of-"))
        assert count == 3
        assert all(Shard(index, 3).owns(row_id) for row_id in group.id)
    assert frame.shard.nunique() == 3
    # Each answer is its own request's: the mock's answer carries a digest of its prompt.
    for row_id, content in zip(frame.id, frame.content, strict=True):
        assert answer_digest({"model": "mock-1"}, f"item {row_id[1:]}")[0][:10] in content
    paid_twice = sum(n - 1 for n in stats["answered"].values() if n > 1)
    assert paid_twice <= CONCURRENCY  # only what the killed shard had in flight

    report = json.loads(cli("report", str(tmp_path / "out"), "--json").stdout)
    assert report["rows"] == {"total": n_rows, "ok": n_rows, "error": 0, "pending": 0}
    assert report["shards"]["count"] == 3 and report["shards"]["started"] == 3
    assert sum(s["ok"] for s in report["shards"]["by_shard"].values()) == n_rows
    exported = tmp_path / "all.jsonl"
    assert cli("export", str(tmp_path / "out"), "--to", str(exported)).returncode == 0
    assert len(exported.read_text().splitlines()) == n_rows


def test_mixing_shard_counts_or_sharded_and_unsharded_runs_is_refused(tmp_path: Path) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(40))
    job = write_job(tmp_path, base_url="mock")
    first = cli("run", str(job), "--shard", "0/2", "--no-progress")
    assert first.returncode == 0, first.stderr
    other_n = cli("run", str(job), "--shard", "0/3", "--no-progress")
    assert other_n.returncode == 2
    assert "2 shards, not 3" in other_n.stderr
    unsharded = cli("run", str(job), "--no-progress")
    assert unsharded.returncode == 2
    assert "split in 2 shards" in unsharded.stderr
    # A shard that has not run yet shows as not started, and its rows are not guessed.
    report = json.loads(cli("report", str(tmp_path / "out"), "--json").stdout)
    assert report["shards"]["by_shard"]["1-of-2"] == {
        "ok": 0, "error": 0, "pending": None, "started": False, "limit": None}
    assert "1 not started" in cli("report", str(tmp_path / "out")).stdout
    # --fresh of the whole run clears the shards, and then it runs unsharded.
    fresh = cli("run", str(job), "--fresh", "--no-progress")
    assert fresh.returncode == 0, fresh.stderr
    assert not (tmp_path / "out" / "shards").exists()
    sharded = cli("run", str(job), "--shard", "1/2", "--no-progress")
    assert sharded.returncode == 2
    assert "not sharded" in sharded.stderr


def test_slurm_and_kubernetes_variables_pick_the_shard_of_a_plain_run(tmp_path: Path) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(60))
    job = write_job(tmp_path, base_url="mock")
    slurm = {"SLURM_ARRAY_TASK_ID": "11", "SLURM_ARRAY_TASK_MIN": "10",
             "SLURM_ARRAY_TASK_COUNT": "2"}
    done = cli("run", str(job), "--no-progress", env=slurm)
    assert done.returncode == 0, done.stderr
    k8s = cli("run", str(job), "--no-progress", "--shards", "2",
              env={"JOB_COMPLETION_INDEX": "0"})
    assert k8s.returncode == 0, k8s.stderr
    frame = batchrun.read(tmp_path / "out")
    assert sorted(frame.id) == sorted(r["id"] for r in rows(60))
    assert set(frame.shard) == {"0-of-2", "1-of-2"}
    missing = cli("run", str(job), "--no-progress", env={"JOB_COMPLETION_INDEX": "0"})
    assert missing.returncode == 2 and "--shards N" in missing.stderr


def test_the_python_api_runs_one_shard(tmp_path: Path) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(30))
    job = write_job(tmp_path, base_url="mock")
    summaries = [batchrun.run(job, shard=f"{i}/2") for i in range(2)]
    assert sum(s.total for s in summaries) == 30
    assert all(s.exit_code == 0 for s in summaries)
    assert len(batchrun.read(tmp_path / "out")) == 30


@pytest.mark.slow
def test_two_processes_under_a_limit_the_mock_enforces_stay_under_it_together(
    tmp_path: Path,
) -> None:
    n_rows = 240
    # 3,000/min is 50 per 1 s window, enforced by the mock; each process paces at half of it.
    with MockThread(MockConfig(rpm=3000, window_s=1.0)) as server:
        write_rows(tmp_path / "rows.jsonl", rows(n_rows))
        job = write_job(tmp_path, base_url=server.base_url,
                        provider={"requests_per_minute": 3000, "max_concurrency": 16})
        done = cli("run", str(job), "--processes", "2", "--no-progress")
        stats = server.stats_snapshot()
    assert done.returncode == 0, done.stderr
    assert stats["rate_limited"] == 0
    assert stats["ok"] == n_rows
    assert f"{n_rows} ok, 0 error, 0 pending of {n_rows}" in done.stderr
    frame = batchrun.read(tmp_path / "out")
    assert len(frame) == n_rows and set(frame.shard) == {"0-of-2", "1-of-2"}


@pytest.mark.slow
def test_processes_ctrl_c_reaches_every_shard_once_and_the_rerun_finishes(tmp_path: Path) -> None:
    n_rows = 300
    with MockThread(MockConfig(latency_ms=50)) as server:
        write_rows(tmp_path / "rows.jsonl", rows(n_rows))
        job = write_job(tmp_path, base_url=server.base_url, provider={"max_concurrency": 8})
        parent = subprocess.Popen(
            [sys.executable, "-m", "batchrun", "run", str(job), "--processes", "2",
             "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while server.stats_snapshot()["ok"] < 40:
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.01)
        parent.send_signal(signal.SIGINT)
        _, stderr = parent.communicate(timeout=60)
        assert parent.returncode == 130, stderr.decode()
        assert stderr.decode().count("interrupted: results so far are saved") == 1
        saved = len(batchrun.read(tmp_path / "out"))
        assert 40 <= saved < n_rows
        rerun = cli("run", str(job), "--processes", "2", "--no-progress")
        assert rerun.returncode == 0, rerun.stderr
        stats = server.stats_snapshot()
    assert len(batchrun.read(tmp_path / "out")) == n_rows
    assert stats["answered_twice"] == 0


@pytest.mark.slow
def test_shard_processes_stop_when_their_parent_is_killed(tmp_path: Path) -> None:
    with MockThread(MockConfig(latency_ms=50)) as server:
        write_rows(tmp_path / "rows.jsonl", rows(400))
        job = write_job(tmp_path, base_url=server.base_url, provider={"max_concurrency": 4})
        parent = subprocess.Popen(
            [sys.executable, "-m", "batchrun", "run", str(job), "--processes", "2",
             "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while server.stats_snapshot()["ok"] < 20:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        pids = [int((folder / ".lock").read_text())
                for _, folder in store.shard_folders(tmp_path / "out")]
        assert len(pids) == 2
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in pids):
            assert time.monotonic() < deadline, "orphaned shard processes kept running"
            time.sleep(0.05)
        rerun = cli("run", str(job), "--processes", "2", "--no-progress")
        assert rerun.returncode == 0, rerun.stderr
    assert len(batchrun.read(tmp_path / "out")) == 400


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its dead parent's reaper) is not running.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_a_finished_run_leaves_few_parts_and_compact_merges_a_stopped_one(tmp_path: Path) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(400))
    job = write_job(tmp_path, base_url="mock", output={"flush_rows": 10, "flush_seconds": 0.05})
    done = cli("run", str(job), "--processes", "2", "--no-progress")
    assert done.returncode == 0, done.stderr
    for _, folder in store.shard_folders(tmp_path / "out"):
        assert len(store.list_parts(folder)) == 1  # merged at the end, not one per checkpoint
    # An interrupted run keeps its parts until `batchrun compact`.
    with MockThread(MockConfig(latency_ms=20)) as server:
        stopped = write_job(tmp_path, base_url=server.base_url, provider={"max_concurrency": 4},
                            output={"path": "out2", "flush_rows": 10, "flush_seconds": 0.05})
        process = start("run", str(stopped), "--no-progress", "--shard", "0/1")
        while server.stats_snapshot()["ok"] < 100:
            assert process.poll() is None
            time.sleep(0.01)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130, stderr.decode()
    folder = tmp_path / "out2" / "shards" / "0-of-1"
    assert len(store.list_parts(folder)) > 5
    before = sorted(batchrun.read(tmp_path / "out2").id)
    compacted = cli("compact", str(tmp_path / "out2"))
    assert compacted.returncode == 0, compacted.stderr
    assert "merged into 1" in compacted.stdout
    assert len(store.list_parts(folder)) == 1
    assert sorted(batchrun.read(tmp_path / "out2").id) == before


def test_processes_check_the_input_once_and_a_bad_one_is_exit_2_before_any_shard_starts(
    tmp_path: Path,
) -> None:
    write_rows(tmp_path / "rows.jsonl", [*rows(20), {"id": "r3", "text": "again"}])
    job = write_job(tmp_path, base_url="mock")
    done = cli("run", str(job), "--processes", "3", "--no-progress")
    assert done.returncode == 2
    assert done.stderr.count('duplicate id "r3"') == 1
    assert not (tmp_path / "out" / "shards").exists()


@pytest.mark.slow
def test_processes_detach_submits_each_shards_batches_and_the_same_command_collects(
    tmp_path: Path,
) -> None:
    from tests.test_batch_jobs import batch_job

    with MockThread(MockConfig(batch_seconds=1.0)) as server:
        job = batch_job(tmp_path, server.base_url, rows=40)
        detached = cli("run", str(job), "--processes", "2", "--detach", "--no-progress")
        assert detached.returncode == 0, detached.stderr
        assert server.stats.batches_created == 2  # one per shard
        assert server.stats.batch_lines_billed == 0
        collected = cli("run", str(job), "--processes", "2", "--no-progress")
        assert collected.returncode == 0, collected.stderr
        assert server.stats.batches_created == 2  # collected, not submitted again
    frame = batchrun.read(tmp_path / "out")
    assert len(frame) == 40 and set(frame.status) == {"ok"} and set(frame["mode"]) == {"batch"}
    assert set(frame.shard) == {"0-of-2", "1-of-2"}


def test_combined_summaries_keep_unsettled_rows_and_say_a_shared_refusal_once() -> None:
    from batchrun.cluster.combine import combine
    from batchrun.engine import RunSummary
    from batchrun.engine.account import Stop

    stop = Stop("p", "QuotaExhausted", "no credit", stopped=True)
    shards = [RunSummary(name="j", output=Path(f"out/shards/{i}-of-2"), total=10, ok=10 - i,
                         error=0, skipped=0, pending=i, tokens={"prompt": 5}, cost_usd=None,
                         elapsed_s=1.0 + i, stopped=None, refused=(stop,), unsettled=i)
              for i in range(2)]
    whole = combine(shards, output=Path("out"))
    assert (whole.total, whole.ok, whole.pending, whole.unsettled) == (20, 19, 1, 1)
    assert whole.refused == (stop,) and whole.tokens == {"prompt": 10}
    assert whole.elapsed_s == 2.0 and whole.output == Path("out")
    assert whole.exit_code == 5


@pytest.mark.slow
def test_fresh_never_clears_a_live_run_in_the_other_layout(tmp_path: Path) -> None:
    with MockThread(MockConfig(latency_ms=100)) as server:
        write_rows(tmp_path / "rows.jsonl", rows(300))
        job = write_job(tmp_path, base_url=server.base_url, provider={"max_concurrency": 2})
        # A live shard: an unsharded --fresh must not delete it under it.
        shard = start("run", str(job), "--shard", "0/2", "--no-progress")
        lock = tmp_path / "out" / "shards" / "0-of-2" / ".lock"
        while not (lock.exists() and lock.read_text()):
            assert shard.poll() is None
            time.sleep(0.01)
        fresh = cli("run", str(job), "--fresh", "--limit", "5", "--no-progress")
        assert fresh.returncode == 2 and "another batchrun run" in fresh.stderr
        assert lock.exists()
        shard.send_signal(signal.SIGINT)
        shard.communicate(timeout=60)
        # A live unsharded run: --processes --fresh must not delete it under it.
        other = write_job(tmp_path, base_url=server.base_url, provider={"max_concurrency": 2},
                          output={"path": "out2"})
        plain = start("run", str(other), "--no-progress")
        lock = tmp_path / "out2" / ".lock"
        while not (lock.exists() and lock.read_text()):
            assert plain.poll() is None
            time.sleep(0.01)
        again = cli("run", str(other), "--processes", "2", "--fresh", "--no-progress")
        assert again.returncode == 2 and "another batchrun run" in again.stderr
        assert (tmp_path / "out2" / "batchrun.json").exists()
        plain.send_signal(signal.SIGINT)
        plain.communicate(timeout=60)


def test_compact_refuses_before_merging_anything_while_a_shard_is_live(tmp_path: Path) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(100))
    job = write_job(tmp_path, base_url="mock")
    for i in range(2):
        assert cli("run", str(job), "--shard", f"{i}/2", "--no-progress").returncode == 0
    first = tmp_path / "out" / "shards" / "0-of-2"
    # Checkpoints of a run that stopped: split shard 0's one part into several.
    (part,) = store.list_parts(first)
    table = pq.read_table(part).replace_schema_metadata(None)  # no longer a merged part
    part.unlink()
    for k, start_row in enumerate(range(0, table.num_rows, 10)):
        store.write_atomically(table.slice(start_row, 10), store.part_path(first, k + 1))
    before = len(store.list_parts(first))
    live = OutputLock(tmp_path / "out" / "shards" / "1-of-2")
    live.acquire()
    try:
        refused = cli("compact", str(tmp_path / "out"))
    finally:
        live.release()
    assert refused.returncode == 2 and "another batchrun run" in refused.stderr
    assert len(store.list_parts(first)) == before > 1
    assert cli("compact", str(tmp_path / "out")).returncode == 0
    assert len(store.list_parts(first)) == 1


def test_export_join_input_reads_the_job_of_a_sharded_run(tmp_path: Path) -> None:
    write_rows(tmp_path / "rows.jsonl", [{**r, "gold": r["id"].upper()} for r in rows(30)])
    job = write_job(tmp_path, base_url="mock")
    assert cli("run", str(job), "--processes", "2", "--no-progress").returncode == 0
    target = tmp_path / "joined.jsonl"
    done = cli("export", str(tmp_path / "out"), "--to", str(target), "--join-input")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(lines) == 30 and all(r["gold"] == r["id"].upper() for r in lines)


def test_shards_with_shard_or_processes_is_refused(tmp_path: Path) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(10))
    job = write_job(tmp_path, base_url="mock")
    for extra in (["--shard", "0/2"], ["--processes", "2"]):
        done = cli("run", str(job), "--shards", "3", *extra, "--no-progress")
        assert done.returncode == 2 and "--shards N goes with" in done.stderr
    inside = cli("run", str(job), "--processes", "2", "--no-progress",
                 env={"BATCHRUN_SHARD": "1/4"})
    assert inside.returncode == 2 and "one shard per task" in inside.stderr


def test_report_says_which_shard_ran_with_a_limit(tmp_path: Path) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(60))
    job = write_job(tmp_path, base_url="mock")
    assert cli("run", str(job), "--shard", "0/2", "--no-progress").returncode == 0
    assert cli("run", str(job), "--shard", "1/2", "--limit", "20", "--no-progress").returncode == 0
    report = json.loads(cli("report", str(tmp_path / "out"), "--json").stdout)
    shards = report["shards"]["by_shard"]
    assert shards["0-of-2"]["limit"] is None and shards["1-of-2"]["limit"] == 20
    assert shards["1-of-2"]["ok"] == sum(Shard(1, 2).owns(f"r{i}") for i in range(20))
    assert "it ran with --limit" in cli("report", str(tmp_path / "out")).stdout
