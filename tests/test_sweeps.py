"""Sweeps, JSON labels, cost, budget, export and batch files: real runs against loopback servers."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from aiohttp import web

import batchrun
from batchrun.mock import MockThread, expected_content, request_key
from batchrun.results import build_report, export
from tests.conftest import write_job, write_rows
from tests.replay import ReplayServer, load_cases

SCHEMA = {"type": "object", "required": ["label", "confidence"],
          "properties": {"label": {"enum": ["positive", "negative", "neutral"]},
                         "confidence": {"type": "number"}}}


def rows(n: int, template: str = "review {i}") -> list[dict[str, Any]]:
    return [{"id": f"r{i:02d}", "text": template.format(i=i)} for i in range(n)]


def body(text: str, model: str = "mock-1", **params: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **params}


class CannedServer:
    """A tiny OpenAI-format server whose answer text and usage a test chooses per prompt."""

    def __init__(self, answer: Callable[[str], tuple[str, dict[str, Any]]]) -> None:
        self.answer = answer
        self.requests = 0
        self.base_url = ""
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        data = await request.json()
        content, usage = self.answer(data["messages"][-1]["content"])
        return web.json_response({
            "id": f"canned-{self.requests}", "object": "chat.completion", "created": 0,
            "model": data["model"], "usage": usage,
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
        })

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def __enter__(self) -> CannedServer:
        self._loop.run_until_complete(self._start())
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        assert self._runner is not None
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()


@pytest.fixture
def canned() -> Iterator[Callable[..., CannedServer]]:
    servers: list[CannedServer] = []

    def start(answer: Callable[[str], tuple[str, dict[str, Any]]]) -> CannedServer:
        servers.append(CannedServer(answer).__enter__())
        return servers[-1]

    yield start
    for server in servers:
        server.__exit__()


SWEEP = [
    {"name": "cold", "model": "mock-1", "samples": 2,
     "params": {"temperature": 0, "max_tokens": 40}, "price": {"input": 1.0, "output": 2.0}},
    {"name": "warm", "model": "mock-2", "samples": 2,
     "params": {"temperature": 1.0, "seed": 100, "max_tokens": 40}},
]


def test_sweep_runs_every_row_for_each_variant_and_sample_into_one_directory(
    tmp_path: Path, mock: MockThread
) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(10))
    job = write_job(tmp_path, base_url=mock.base_url, variants=SWEEP)
    summary = batchrun.run(job)
    assert (summary.total, summary.ok, summary.exit_code) == (40, 40, 0)
    frame = batchrun.read(tmp_path / "out")
    assert len(frame) == 40
    counts = frame.groupby(["variant", "sample"]).size().to_dict()
    assert counts == {("cold", 0): 10, ("cold", 1): 10, ("warm", 0): 10, ("warm", 1): 10}
    assert frame.set_index(["variant"]).loc["warm", "model"].unique().tolist() == ["mock-2"]
    assert mock.stats_snapshot()["requests"] == 40


def test_adding_a_variant_to_a_finished_job_sends_only_the_new_variants_requests(
    tmp_path: Path, mock: MockThread
) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(8))
    job = write_job(tmp_path, base_url=mock.base_url, variants=SWEEP)
    batchrun.run(job)
    before = mock.stats_snapshot()
    assert before["requests"] == 32
    added = {"name": "third", "model": "mock-3", "params": {"temperature": 0, "max_tokens": 40}}
    job = write_job(tmp_path, base_url=mock.base_url, variants=[*SWEEP, added])
    summary = batchrun.run(job)
    stats = mock.stats_snapshot()
    assert stats["requests"] == 32 + 8
    assert (summary.ok, summary.skipped, summary.pending) == (40, 32, 0)
    new_keys = {request_key(body(f"review {i}", "mock-3", temperature=0, max_tokens=40))
                for i in range(8)}
    assert set(stats["answered"]) == set(before["answered"]) | new_keys
    assert all(stats["answered"][key] == n for key, n in before["answered"].items())
    assert set(batchrun.read(tmp_path / "out").variant) == {"cold", "warm", "third"}


def test_sample_k_sends_the_variants_seed_plus_k(tmp_path: Path, mock: MockThread) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(30))
    variant = {"name": "s", "model": "mock-1", "samples": 3,
               "params": {"temperature": 1.0, "seed": 100, "max_tokens": 40}}
    job = write_job(tmp_path, base_url=mock.base_url, variants=[variant])
    batchrun.run(job)
    answered = mock.stats_snapshot()["answered"]
    for i in range(30):
        for k in range(3):
            sent = body(f"review {i}", temperature=1.0, seed=100 + k, max_tokens=40)
            assert answered.get(request_key(sent)) == 1, (i, k)
    frame = batchrun.read(tmp_path / "out")
    for row in frame.itertuples():
        sent = body(f"review {int(row.id[1:])}", temperature=1.0, seed=100 + row.sample,
                    max_tokens=40)
        assert row.content == expected_content(sent)
    # The seeds make the samples differ for some rows, and a rerun repeats them exactly.
    per_row = frame.groupby("id").content.nunique()
    assert (per_row > 1).any()


def test_json_answers_are_parsed_and_fields_spread_into_columns(
    tmp_path: Path, mock: MockThread
) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(6, "Answer in JSON: review {i}"))
    job = write_job(tmp_path, base_url=mock.base_url,
                    variants=[{"name": "v", "model": "mock-1",
                               "params": {"temperature": 0,
                                          "response_format": {"type": "json_object"}}}],
                    parse={"json": True, "schema": SCHEMA, "fields": ["label", "confidence"]})
    summary = batchrun.run(job)
    assert summary.exit_code == 0
    frame = batchrun.read(tmp_path / "out")
    for row in frame.itertuples():
        parsed = json.loads(row.parsed)
        assert parsed == json.loads(row.content)
        assert row.label == parsed["label"] and row.confidence == parsed["confidence"]
        assert row.label in ("positive", "negative", "neutral")


def test_json_inside_a_fenced_block_is_parsed(tmp_path: Path, canned: Callable[..., Any]) -> None:
    def answer(text: str) -> tuple[str, dict[str, Any]]:
        fenced = f'Here you go:\n```json\n{{"label": "{text}", "confidence": 0.5}}\n```\nDone.'
        return fenced, {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}

    server = canned(answer)
    write_rows(tmp_path / "rows.jsonl", [{"id": "a", "text": "positive"},
                                         {"id": "b", "text": "negative"}])
    job = write_job(tmp_path, base_url=server.base_url,
                    parse={"json": True, "schema": SCHEMA, "fields": ["label"]})
    assert batchrun.run(job).exit_code == 0
    frame = batchrun.read(tmp_path / "out").set_index("id")
    assert json.loads(frame.loc["a", "parsed"]) == {"label": "positive", "confidence": 0.5}
    assert frame.loc["b", "label"] == "negative"
    assert frame.loc["a", "content"].startswith("Here you go:")
    assert server.requests == 2


def test_invalid_json_is_asked_again_up_to_max_attempts_then_kept_as_an_error(
    tmp_path: Path, mock: MockThread
) -> None:
    write_rows(tmp_path / "rows.jsonl", [{"id": "prose", "text": "no structure here"},
                                         {"id": "json", "text": "Reply in JSON please"}])
    job = write_job(tmp_path, base_url=mock.base_url, retry={"max_attempts": 3},
                    parse={"json": True})
    summary = batchrun.run(job)
    assert (summary.ok, summary.error, summary.exit_code) == (1, 1, 1)
    row = batchrun.read(tmp_path / "out").set_index("id").loc["prose"]
    assert (row.status, row.error_type, row.attempts) == ("error", "invalid_json", 3)
    assert row.content == expected_content(body("no structure here"))
    assert row.parsed is None or pd.isna(row.parsed)
    assert row.prompt_tokens > 0  # the answers were paid for: usage is kept
    assert mock.stats_snapshot()["attempts"][request_key(body("no structure here"))] == 3


def test_schema_failure_is_schema_mismatch_with_the_validators_message(
    tmp_path: Path, mock: MockThread
) -> None:
    write_rows(tmp_path / "rows.jsonl", [{"id": "a", "text": "Give JSON for review 1"}])
    strict = {"type": "object", "properties": {"label": {"enum": ["yes", "no"]}}}
    job = write_job(tmp_path, base_url=mock.base_url, retry={"max_attempts": 2},
                    parse={"json": True, "schema": strict})
    batchrun.run(job)
    row = batchrun.read(tmp_path / "out").iloc[0]
    assert (row.status, row.error_type, row.attempts) == ("error", "schema_mismatch", 2)
    assert "is not one of ['yes', 'no']" in row.error_message
    assert "label" in row.error_message
    assert json.loads(row.content)["label"] in ("positive", "negative", "neutral")


def test_cost_per_row_and_report_totals_equal_usage_times_prices(
    tmp_path: Path, mock: MockThread
) -> None:
    price = {"input": 3.0, "output": 15.0}
    write_rows(tmp_path / "rows.jsonl", rows(12))
    job = write_job(tmp_path, base_url=mock.base_url, variants=[
        {"name": "paid", "model": "mock-1", "price": price, "params": {"max_tokens": 30}},
        {"name": "free", "model": "mock-2", "params": {"max_tokens": 30}},
    ])
    batchrun.run(job)
    frame = batchrun.read(tmp_path / "out")
    paid, free = frame[frame.variant == "paid"], frame[frame.variant == "free"]
    by_hand = (paid.prompt_tokens * 3.0 + paid.completion_tokens * 15.0) / 1e6
    assert list(paid.cost_usd) == pytest.approx(list(by_hand))
    assert free.cost_usd.isna().all()
    report = build_report(tmp_path / "out")
    assert report["cost_usd"]["total"] == pytest.approx(float(by_hand.sum()), abs=1e-6)
    assert report["cost_usd"]["by_variant"] == {
        "paid": pytest.approx(float(by_hand.sum()), abs=1e-6), "free": None}
    assert report["unpriced_variants"] == ["free"]
    assert report["by_variant"]["free"]["cost_usd"] is None
    assert report["cost_usd"]["by_model"]["mock-2"] is None
    tokens = report["tokens"]
    assert tokens["prompt"] == frame.prompt_tokens.sum()
    assert tokens["completion"] == frame.completion_tokens.sum()


def test_cached_tokens_are_billed_at_the_cached_price(
    tmp_path: Path, canned: Callable[..., Any]
) -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 200, "total_tokens": 1200,
             "prompt_tokens_details": {"cached_tokens": 600},
             "completion_tokens_details": {"reasoning_tokens": 50}}
    server = canned(lambda text: ("ok", usage))
    write_rows(tmp_path / "rows.jsonl", rows(3))
    job = write_job(tmp_path, base_url=server.base_url, variants=[
        {"name": "v", "model": "m", "price": {"input": 2.0, "output": 8.0, "cached_input": 0.5}}])
    batchrun.run(job)
    frame = batchrun.read(tmp_path / "out")
    # Reasoning tokens are inside completion_tokens: billed once, as output.
    row_cost = (400 * 2.0 + 600 * 0.5 + 200 * 8.0) / 1e6
    assert list(frame.cost_usd) == pytest.approx([row_cost] * 3)
    assert list(frame.reasoning_tokens) == [50] * 3
    report = build_report(tmp_path / "out")
    assert report["cost_usd"]["total"] == pytest.approx(3 * row_cost, abs=1e-6)
    assert report["tokens"]["cached"] == 1800


def test_budget_stops_mid_run_with_exit_3_and_a_higher_budget_finishes(
    tmp_path: Path, mock: MockThread
) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(30))
    # $1,000 per million tokens: a request's worst case (about 7 prompt + 20 max tokens) is
    # about $0.027, so $0.10 runs a few requests and stops.
    variant = {"name": "v", "model": "mock-1", "params": {"max_tokens": 20},
               "price": {"input": 1000.0, "output": 1000.0}}
    job = write_job(tmp_path, base_url=mock.base_url, variants=[variant],
                    budget={"max_usd": 0.1})
    stopped = batchrun.run(job)
    assert (stopped.stopped, stopped.exit_code) == ("budget", 3)
    assert 0 < stopped.ok < 30 and stopped.pending == 30 - stopped.ok
    frame = batchrun.read(tmp_path / "out")
    assert len(frame) == stopped.ok and frame.cost_usd.sum() <= 0.1
    sent = mock.stats_snapshot()["requests"]
    assert sent == stopped.ok
    job = write_job(tmp_path, base_url=mock.base_url, variants=[variant],
                    budget={"max_usd": 100.0})
    finished = batchrun.run(job)
    assert (finished.exit_code, finished.ok, finished.pending) == (0, 30, 0)
    assert mock.stats_snapshot()["requests"] == 30
    assert mock.stats_snapshot()["answered_twice"] == 0


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    columns = ["id", "variant", "sample", "status", "content", "parsed", "label",
               "prompt_tokens", "completion_tokens", "cost_usd", "attempts", "gold"]
    out = frame[columns].sort_values(["id", "variant", "sample"]).reset_index(drop=True)
    return out.astype({"sample": "int64", "prompt_tokens": "int64",
                       "completion_tokens": "int64", "attempts": "int64", "cost_usd": "float64"})


def test_export_to_parquet_jsonl_and_csv_reads_back_the_same_results(
    tmp_path: Path, mock: MockThread
) -> None:
    data = [{**r, "gold": "positive"} for r in rows(6, "JSON label for review {i}")]
    write_rows(tmp_path / "rows.jsonl", data)
    job = write_job(tmp_path, base_url=mock.base_url, variants=SWEEP,
                    output={"keep_columns": ["gold"]},
                    parse={"json": True, "fields": ["label"]})
    batchrun.run(job)
    expected = _comparable(batchrun.read(tmp_path / "out"))
    readers = {".parquet": pd.read_parquet, ".csv": pd.read_csv,
               ".jsonl": lambda p: pd.read_json(p, lines=True, dtype=False)}
    for suffix, reader in readers.items():
        target = tmp_path / f"labels{suffix}"
        assert export(tmp_path / "out", target) == 24
        got = _comparable(reader(target))
        # CSV and JSON lose only the null-vs-NaN distinction of the (all-null) cost column.
        pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_exact=False)
    joined = pd.read_parquet(tmp_path / "labels.parquet")
    assert len(joined.columns) == len(batchrun.read(tmp_path / "out").columns)
    target = tmp_path / "joined.csv"
    export(tmp_path / "out", target, join_input=True)
    with_input = pd.read_csv(target)
    assert set(with_input.text) == {f"JSON label for review {i}" for i in range(6)}


def test_openai_batch_file_runs_as_is_and_exports_in_the_batch_output_shape(
    tmp_path: Path, mock: MockThread
) -> None:
    lines = [{"custom_id": f"task-{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "gpt-4o-mini", "max_tokens": 30,
                       "messages": [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": f"classify {i}"}]}}
             for i in range(5)]
    lines.append({"custom_id": "broken", "method": "POST", "url": "/v1/chat/completions",
                  "body": {"model": "x", "messages": [
                      {"role": "user", "content": "x [[mock:fail=400]]"}]}})
    write_rows(tmp_path / "batch.jsonl", lines)
    job = write_job(tmp_path, base_url=mock.base_url, input={"path": "batch.jsonl"},
                    variants=[{"name": "v", "model": "mock-1", "params": {"temperature": 0}}])
    summary = batchrun.run(job)
    assert (summary.ok, summary.error) == (5, 1)
    target = tmp_path / "batch_output.jsonl"
    assert export(tmp_path / "out", target, format="openai-batch") == 6
    out = {line["custom_id"]: line for line in map(orjson.loads, target.read_bytes().splitlines())}
    assert set(out) == {line["custom_id"] for line in lines}
    results = batchrun.read(tmp_path / "out").set_index("id")
    for line in lines[:5]:
        got = out[line["custom_id"]]
        assert got["error"] is None and got["response"]["status_code"] == 200
        answer = got["response"]["body"]
        sent = {"temperature": 0, **line["body"], "model": "mock-1"}
        assert answer["choices"][0]["message"]["content"] == expected_content(sent)
        assert answer["model"] == "mock-1"
        row = results.loc[line["custom_id"]]
        assert answer["usage"]["prompt_tokens"] == row.prompt_tokens
        assert answer["usage"]["total_tokens"] == row.total_tokens
    broken = out["broken"]
    assert broken["response"] is None and broken["error"]["code"] == "BadRequest"
    # The batch output's bodies are chat.completion objects: they read back like any answer.
    assert all(line["response"]["body"]["object"] == "chat.completion"
               for line in out.values() if line["response"])


def test_a_refusal_is_never_parsed_into_a_label_nor_asked_again(tmp_path: Path) -> None:
    write_rows(tmp_path / "rows.jsonl",
               [{"id": f"r{i}", "text": "openai_refusal"} for i in range(3)])
    with ReplayServer({"openai_refusal": load_cases()["openai_refusal"]}) as server:
        job = write_job(tmp_path, base_url=server.base_url,
                        parse={"json": True, "fields": ["label"]})
        summary = batchrun.run(job)
        assert (summary.ok, server.requests["openai_refusal"]) == (3, 3)  # each asked once
    frame = batchrun.read(tmp_path / "out")
    assert set(frame["refusal"]) == {"I'm sorry, I cannot assist with that request."}
    assert frame["content"].isna().all() and frame["parsed"].isna().all()
    assert "label" not in frame or frame["label"].isna().all()
