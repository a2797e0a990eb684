"""Batch mode survives SIGKILL anywhere: real processes, real signals, a real mock on loopback.

Each run is killed at one moment, by the driver's own hook right after it journals a state
(BATCHRUN_TEST_KILL_AT) or by the test at a random moment, then run again until it is done. In
the end every (id, variant, sample) has exactly one result, each the answer to its own request;
at the mock no request ever sat in two live batches at once and none was billed twice.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import batchrun
from batchrun.mock import MockConfig, MockThread, expected_content
from tests.test_batch_jobs import batch_body, batch_job

pytestmark = pytest.mark.slow

ROWS = 40
KILLED = -signal.SIGKILL


def run(job: Path, kill_at: str | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("BATCHRUN_TEST_KILL_AT", None)
    if kill_at is not None:
        env["BATCHRUN_TEST_KILL_AT"] = kill_at
    return subprocess.Popen([sys.executable, "-m", "batchrun", "run", str(job), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)


def finish(job: Path) -> None:
    """Run again until a run ends by itself with exit 0."""
    for _ in range(4):
        process = run(job)
        _, err = process.communicate(timeout=60)
        if process.returncode == 0:
            return
        assert process.returncode != KILLED, err.decode()
    raise AssertionError(f"not done after 4 reruns: {err.decode()}")


def check_exactly_once(folder: Path, server: MockThread, model: str = "mock-1") -> None:
    frame = batchrun.read(folder / "out")
    assert len(frame) == ROWS
    assert frame.groupby(["id", "variant", "sample"]).size().max() == 1
    assert set(frame["status"]) == {"ok"}
    assert set(frame["mode"]) == {"batch"} and frame["batch_id"].notna().all()
    for row in frame.itertuples():
        assert row.content == expected_content(batch_body(int(row.id[1:]), model)), row.id
    stats = server.stats
    assert stats.batch_overlaps() == 0, stats.batch_live_max
    assert stats.billed_twice() == 0, stats.batch_billed
    assert stats.batch_lines_billed == ROWS


# In the order a batch goes through them: each run of one directory is killed at the next one.
OPENAI_POINTS = ["upload", "uploaded", "create", "create-sent", "created", "polled", "download",
                 "downloaded", "commit-half", "committed"]
ANTHROPIC_POINTS = ["create", "create-sent", "created", "downloaded", "commit-half"]


@pytest.mark.parametrize(("api", "model", "points"), [
    ("openai", "mock-1", OPENAI_POINTS),
    ("anthropic", "claude-mock", ANTHROPIC_POINTS),
])
def test_sigkill_right_after_each_journaled_state_then_rerun_gives_every_row_once(
    tmp_path: Path, api: str, model: str, points: list[str]
) -> None:
    """create-sent: the provider has the batch, its id never reached the disk (an orphan)."""
    with MockThread(MockConfig(batch_seconds=0.2)) as server:
        job = batch_job(tmp_path, server.base_url, rows=ROWS, api=api,
                        batch={"max_requests": 15},
                        variants=[{"name": "b", "model": model, "mode": "batch",
                                   "params": {"max_tokens": 32}}])
        for point in points:
            process = run(job, kill_at=point)
            _, err = process.communicate(timeout=60)
            assert process.returncode == KILLED, (point, err.decode())
        finish(job)
        check_exactly_once(tmp_path, server, model)


def test_sigkill_at_random_moments_then_rerun_gives_every_row_once(tmp_path: Path) -> None:
    chooser = random.Random(20261202)
    with MockThread(MockConfig(batch_seconds=0.3, batch_shuffle_results=True)) as server:
        job = batch_job(tmp_path, server.base_url, rows=ROWS, batch={"max_requests": 7})
        kills = 0
        for _ in range(3):
            process = run(job)
            time.sleep(0.6 + chooser.random() * 0.8)
            ended = process.poll() is not None
            if not ended:
                process.send_signal(signal.SIGKILL)
                kills += 1
            process.communicate(timeout=30)
            if ended:
                break
        assert kills >= 1
        finish(job)
        check_exactly_once(tmp_path, server)


def test_a_kill_between_two_planned_batches_never_reuses_a_live_batch_key(tmp_path: Path) -> None:
    """The first `planned` line is b3's; b's file, cut off, leaves a gap in the keys."""
    from batchrun.store.batches import read_lines

    rows = 10
    variants = [{"name": "b", "model": "mock-1", "mode": "batch", "params": {"max_tokens": 32}},
                {"name": "b3", "model": "mock-2", "mode": "batch", "samples": 3,
                 "params": {"max_tokens": 32, "seed": 1}}]
    with MockThread(MockConfig(batch_seconds=0.1)) as server:
        job = batch_job(tmp_path, server.base_url, rows=rows, variants=variants,
                        batch={"max_requests": 12})
        process = run(job, kill_at="planned")
        _, err = process.communicate(timeout=60)
        assert process.returncode == KILLED, err.decode()
        finish(job)
        assert server.stats.billed_twice() == 0
    planned: dict[str, set[str]] = {}
    for line in read_lines(tmp_path / "out" / "batches" / "journal.jsonl"):
        if line["event"] == "planned":
            planned.setdefault(line["key"], set()).add(line["variant"])
    assert all(len(names) == 1 for names in planned.values()), planned
    assert len(planned) == sum(1 for line in read_lines(tmp_path / "out" / "batches" /
                                                         "journal.jsonl")
                               if line["event"] == "planned")
    frame = batchrun.read(tmp_path / "out")
    assert len(frame) == rows * 4 and set(frame["status"]) == {"ok"}
    assert frame.groupby(["id", "variant", "sample"]).size().max() == 1



def test_the_files_of_a_batch_committed_just_before_a_kill_are_deleted_by_the_rerun(
    tmp_path: Path,
) -> None:
    with MockThread(MockConfig(batch_seconds=0.1)) as server:
        job = batch_job(tmp_path, server.base_url, rows=10)
        process = run(job, kill_at="committed")
        _, err = process.communicate(timeout=60)
        assert process.returncode == KILLED, err.decode()
        folder = tmp_path / "out" / "batches"
        assert len(list(folder.glob("br-*"))) > 0
        finish(job)
    assert [path.name for path in folder.iterdir()] == ["journal.jsonl"]
    assert len(batchrun.read(tmp_path / "out")) == 10


def anthropic_job(folder: Path, base_url: str, rows: int) -> Path:
    folder.mkdir()
    return batch_job(folder, base_url, rows=rows, api="anthropic",
                     variants=[{"name": "b", "model": "claude-mock", "mode": "batch",
                                "params": {"max_tokens": 32}}])


def results_calls(server: MockThread) -> int:
    return int(server.stats_snapshot()["batch_calls"].get("messages.batches.results", 0))


def test_an_anthropic_orphan_look_up_reads_another_runs_batch_of_the_same_size_once(
    tmp_path: Path,
) -> None:
    with MockThread(MockConfig(batch_seconds=2.0)) as server:
        other = anthropic_job(tmp_path / "other", server.base_url, 12)
        finish(other)  # an ended batch of 12 lines that is not ours
        job = anthropic_job(tmp_path / "ours", server.base_url, 12)
        process = run(job, kill_at="create-sent")
        process.communicate(timeout=60)
        before = results_calls(server)
        finish(job)
        # the other batch probed once, ours probed once and downloaded
        assert results_calls(server) - before == 3
        assert server.stats.billed_twice() == 0
    assert len(batchrun.read(tmp_path / "ours" / "out")) == 12


def test_an_anthropic_look_up_skips_batches_created_after_the_create_could_have_been(
    tmp_path: Path,
) -> None:
    """A create intent of hours ago: a batch created just now cannot be its answer."""
    import orjson

    with MockThread(MockConfig(batch_seconds=1.0)) as server:
        job = anthropic_job(tmp_path / "ours", server.base_url, 12)
        process = run(job, kill_at="create")  # the intent written, nothing sent
        process.communicate(timeout=60)
        journal = tmp_path / "ours" / "out" / "batches" / "journal.jsonl"
        lines = [orjson.loads(raw) for raw in journal.read_bytes().splitlines()]
        for line in lines:
            if line["event"] == "create":
                line["at"] -= 7200
        journal.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
        other = anthropic_job(tmp_path / "other", server.base_url, 12)
        detached = subprocess.run([sys.executable, "-m", "batchrun", "run", str(other),
                                   "--detach", "--no-progress"], capture_output=True, check=False)
        assert detached.returncode == 0, detached.stderr.decode()
        before = results_calls(server)
        finish(job)
        assert results_calls(server) - before == 1  # its own results; the other never probed
    assert len(batchrun.read(tmp_path / "ours" / "out")) == 12
