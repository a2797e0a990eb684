"""Failure paths: disk errors, odd column types, a refused --fresh, budgets, Ctrl-C, echoed keys."""

from __future__ import annotations

import datetime as dt
import decimal
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiohttp import web

import batchrun
from batchrun import store
from batchrun.engine.record import ResultRecord
from batchrun.engine.sink import Sink
from batchrun.errors import StorageError
from batchrun.mock import MockConfig, MockThread
from tests.conftest import write_job, write_rows
from tests.replay import ReplayServer


@pytest.mark.timeout(60)
def test_an_unexpected_worker_failure_ends_the_run_instead_of_hanging(
    tmp_path: Path, mock: MockThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_rows(tmp_path / "rows.jsonl", [{"id": f"r{i}", "text": f"t{i}"} for i in range(200)])
    job = write_job(tmp_path, base_url=mock.base_url, provider={"max_concurrency": 2})
    original = Sink.append
    calls = {"n": 0}

    async def failing_append(self: Sink, record: ResultRecord) -> None:
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError(28, "No space left on device")
        await original(self, record)

    monkeypatch.setattr(Sink, "append", failing_append)
    with pytest.raises(StorageError, match="the disk is full; the results written so far"):
        batchrun.run(job)
    monkeypatch.setattr(Sink, "append", original)
    assert len(batchrun.read(tmp_path / "out")) == 5  # what was journaled is kept


def test_parquet_keep_columns_of_any_type_survive_checkpoints_and_recovery(
    tmp_path: Path, mock: MockThread
) -> None:
    table = pa.table({
        "id": [f"r{i}" for i in range(30)],
        "text": [f"t{i}" for i in range(30)],
        "day": [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(30)],
        "price": [decimal.Decimal(f"{i}.25") for i in range(30)],
    })
    pq.write_table(table, tmp_path / "rows.parquet")
    job = write_job(tmp_path, base_url=mock.base_url,
                    input={"path": "rows.parquet"},
                    output={"keep_columns": ["day", "price"], "flush_rows": 7})
    summary = batchrun.run(job)
    assert summary.ok == 30
    # A crash leaves a journal segment that recovery turns into a part: same types as the rest.
    journal = tmp_path / "out" / store.JOURNAL_DIR / "000099.jsonl"
    journal.write_bytes(
        b'{"id":"r0","variant":"v1","provider":"mock","model":"mock-1","sample":0,'
        b'"request_hash":"x","status":"ok","day":"2026-01-01","price":"0.25",'
        b'"finished_at":1}\n')
    frame = batchrun.read(tmp_path / "out")
    assert len(frame) == 30
    assert set(frame["day"].astype(str)) >= {"2026-01-01", "2026-01-30"}
    assert batchrun.run(job).ok == 30  # the rerun reads its own output back


def test_keep_column_of_mixed_types_across_parts_is_read_as_text(
    tmp_path: Path, mock: MockThread
) -> None:
    rows = [{"id": f"r{i}", "text": f"t{i}", "code": i if i < 10 else f"c{i}"} for i in range(20)]
    write_rows(tmp_path / "rows.jsonl", rows)
    job = write_job(tmp_path, base_url=mock.base_url, provider={"max_concurrency": 1},
                    output={"keep_columns": ["code"], "flush_rows": 10})
    assert batchrun.run(job).ok == 20
    frame = batchrun.read(tmp_path / "out").set_index("id")
    assert frame.loc["r3", "code"] == "3" and frame.loc["r15", "code"] == "c15"


def test_a_refused_fresh_leaves_a_live_run_untouched(tmp_path: Path) -> None:
    with MockThread(MockConfig(latency_ms=100)) as server:
        write_rows(tmp_path / "rows.jsonl", [{"id": f"r{i}", "text": f"t{i}"} for i in range(60)])
        job = write_job(tmp_path, base_url=server.base_url, provider={"max_concurrency": 2},
                        output={"flush_rows": 5, "flush_seconds": 0.2})
        live = subprocess.Popen([sys.executable, "-m", "batchrun", "run", str(job),
                                 "--no-progress"], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while len(store.list_parts(tmp_path / "out")) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        fresh = subprocess.run([sys.executable, "-m", "batchrun", "run", str(job), "--fresh"],
                               capture_output=True, text=True, timeout=60)
        assert fresh.returncode == 2
        assert "another batchrun run" in fresh.stderr
        _, stderr = live.communicate(timeout=60)
        assert live.returncode == 0, stderr
    assert len(batchrun.read(tmp_path / "out")) == 60


def test_requests_that_fail_unpaid_do_not_use_up_the_budget(
    tmp_path: Path, mock: MockThread
) -> None:
    rows = [{"id": f"bad{i}", "text": "x [[mock:fail=400]]"} for i in range(10)]
    rows += [{"id": f"ok{i}", "text": f"fine {i}"} for i in range(5)]
    write_rows(tmp_path / "rows.jsonl", rows)
    job = write_job(tmp_path, base_url=mock.base_url, budget={"max_usd": 0.01},
                    provider={"max_concurrency": 1},
                    variants=[{"name": "v", "model": "mock-1", "params": {"max_tokens": 100},
                               "price": {"input": 10.0, "output": 10.0}}])
    # Each request's worst case is about $0.001: ten unpaid 400s must not exhaust $0.01.
    summary = batchrun.run(job)
    assert summary.stopped is None
    assert (summary.ok, summary.error) == (5, 10)


def test_answers_rejected_by_parse_are_still_counted_in_tokens_and_cost(tmp_path: Path) -> None:
    answers = iter(["not json", "still not", '{"label": "ok"}'])

    async def handler(request: web.Request, attempt: int) -> web.Response:
        return web.json_response({
            "id": "c1", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": next(answers)}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        })

    with ReplayServer({"label it": handler}) as server:
        write_rows(tmp_path / "rows.jsonl", [{"id": "a", "text": "label it"}])
        job = write_job(tmp_path, base_url=server.base_url, parse={"json": True},
                        retry={"max_attempts": 3},
                        variants=[{"name": "v", "model": "m",
                                   "price": {"input": 1.0, "output": 2.0}}])
        summary = batchrun.run(job)
    row = batchrun.read(tmp_path / "out").iloc[0]
    assert (row.status, row.attempts) == ("ok", 3)
    assert (row.prompt_tokens, row.completion_tokens) == (30, 15)
    assert row.cost_usd == pytest.approx((30 * 1.0 + 15 * 2.0) / 1e6)
    assert summary.cost_usd == pytest.approx(row.cost_usd)


def test_ctrl_c_sends_nothing_more_after_the_signal(tmp_path: Path) -> None:
    with MockThread(MockConfig()) as server:
        write_rows(tmp_path / "rows.jsonl", [{"id": f"r{i}", "text": f"t{i}"} for i in range(100)])
        job = write_job(tmp_path, base_url=server.base_url,
                        provider={"max_concurrency": 8, "requests_per_minute": 120})
        process = subprocess.Popen([sys.executable, "-m", "batchrun", "run", str(job),
                                    "--no-progress"], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while server.stats_snapshot()["ok"] < 3:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        sent_at_signal = server.stats_snapshot()["requests"]
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
        assert process.returncode == 130
        # Requests already on the wire may finish; nothing new is sent (pacing is 2/s).
        assert server.stats_snapshot()["requests"] <= sent_at_signal + 1


def test_results_read_while_a_run_writes_never_go_backwards(tmp_path: Path) -> None:
    with MockThread(MockConfig(latency_ms=5)) as server:
        write_rows(tmp_path / "rows.jsonl", [{"id": f"r{i}", "text": f"t{i}"} for i in range(300)])
        job = write_job(tmp_path, base_url=server.base_url, provider={"max_concurrency": 4},
                        output={"flush_rows": 7, "flush_seconds": 0.05})
        counts: list[int] = []
        done = threading.Event()

        def reader() -> None:
            while not done.is_set():
                if (tmp_path / "out" / store.MANIFEST).exists():
                    counts.append(len(batchrun.read(tmp_path / "out")))

        thread = threading.Thread(target=reader)
        thread.start()
        try:
            batchrun.run(job)
        finally:
            done.set()
            thread.join()
    assert counts and counts == sorted(counts)
    assert len(batchrun.read(tmp_path / "out")) == 300


def test_a_key_echoed_by_the_provider_is_redacted_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-echo-ME-NOT-0123456789"
    monkeypatch.setenv("ECHO_KEY", key)

    async def handler(request: web.Request, attempt: int) -> web.Response:
        auth = request.headers.get("Authorization", "")
        body = await request.json()
        if "fail" in body["messages"][-1]["content"]:
            return web.json_response({"error": {"message": f"bad key {auth}"}}, status=500)
        return web.json_response({
            "id": "c1", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"you sent {auth}"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })

    with ReplayServer({"hi": handler, "fail": handler}) as server:
        write_rows(tmp_path / "rows.jsonl",
                   [{"id": "a", "text": "hi"}, {"id": "b", "text": "fail"}])
        job = write_job(tmp_path, base_url=server.base_url, provider={"api_key_env": "ECHO_KEY"},
                        output={"keep_raw": True}, retry={"max_attempts": 1})
        batchrun.run(job)
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
    frame = batchrun.read(tmp_path / "out").set_index("id")
    assert "***" in frame.loc["a", "content"] and "***" in frame.loc["b", "error_message"]
