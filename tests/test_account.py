"""Account refusals stop their provider within a handful of requests and leave its rows pending.

Each kind of refusal is answered by a real loopback server in the shape the provider sends it;
the run is a real `batchrun run` subprocess. Once the server recovers, the same command finishes
every row.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

import batchrun
from batchrun.mock import MockThread
from batchrun.mock.loop_thread import LoopThread
from tests.conftest import write_job, write_rows

ROOT = Path(__file__).resolve().parent.parent
ROWS = 40
CONCURRENCY = 4

# (name, api, HTTP status, body): each as the provider documents or users reported it.
REFUSALS = [
    ("openai_insufficient_quota", "openai", 429, {"error": {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}}),
    ("deepseek_402_insufficient_balance", "openai", 402, {"error": {
        "message": "Insufficient Balance", "type": "unknown_error", "param": None,
        "code": "invalid_request_error"}}),
    ("openrouter_402_credits", "openai", 402, {"error": {
        "code": 402, "message": "Insufficient credits. Add more using https://openrouter.ai/credits"}}),
    ("zhipu_1113_in_a_429", "openai", 429, {"error": {
        "code": "1113", "message": "余额不足或无可用资源包,请充值。"}}),
    ("dashscope_arrearage", "openai", 400, {"error": {
        "code": "Arrearage", "param": None, "type": "Arrearage",
        "message": "Access denied, please make sure your account is in good standing."}}),
    ("openai_invalid_key", "openai", 401, {"error": {
        "message": "Incorrect API key provided: sk-proj-****abcd.", "type": "invalid_request_error",
        "param": None, "code": "invalid_api_key"}}),
    ("relay_quota_in_an_http_200", "openai", 200, {"error": {
        "message": "You exceeded your current quota", "type": "insufficient_quota",
        "code": "insufficient_quota"}}),
    ("anthropic_credit_balance", "anthropic", 400, {"type": "error", "error": {
        "type": "invalid_request_error",
        "message": "Your credit balance is too low to access the Anthropic API. Please go to "
                   "Plans & Billing to upgrade or purchase credits."}}),
]


class AccountServer:
    """Refuses every request in one shape until `recover()`, then answers them all."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.body = status, body
        self.refusing = True
        self.requests = 0
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._thread = LoopThread(self._start, self._stop, name="account-server")

    async def _answer(self, request: web.Request) -> web.Response:
        self.requests += 1
        data = await request.json()
        if self.refusing:
            return web.json_response(self.body, status=self.status)
        text = str(data["messages"][-1]["content"])
        if request.path.endswith("/messages"):
            return web.json_response({
                "id": "msg_1", "type": "message", "role": "assistant", "model": data["model"],
                "content": [{"type": "text", "text": f"ok {text}"}], "stop_reason": "end_turn",
                "usage": {"input_tokens": 3, "output_tokens": 2}})
        return web.json_response({
            "id": "c1", "object": "chat.completion", "model": data["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"ok {text}"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})

    async def _start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._answer)
        app.router.add_post("/v1/messages", self._answer)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"
        return self.base_url

    async def _stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    def recover(self) -> None:
        self._thread.call(lambda: setattr(self, "refusing", False))

    def __enter__(self) -> AccountServer:
        self._thread.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.__exit__(*exc)


@pytest.fixture
def rows(tmp_path: Path) -> Iterator[Path]:
    yield write_rows(tmp_path / "rows.jsonl",
                     [{"id": f"r{i}", "text": f"t{i}"} for i in range(ROWS)])


def run_cli(job: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batchrun", "run", str(job), "--no-progress"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "ACCOUNT_KEY": "k-test-123"})


@pytest.mark.parametrize(("name", "api", "status", "body"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_an_account_refusal_stops_the_provider_leaves_rows_pending_and_a_rerun_finishes(
    tmp_path: Path, rows: Path, name: str, api: str, status: int, body: dict[str, Any]
) -> None:
    with AccountServer(status, body) as server:
        job = write_job(tmp_path, base_url=server.base_url, provider={
            "api": api, "max_concurrency": CONCURRENCY, "api_key_env": "ACCOUNT_KEY"},
            variants=[{"name": "v1", "model": "m-1", "params": {"max_tokens": 16}}])
        first = run_cli(job)
        assert first.returncode == 5, first.stderr
        # Three in a row stop it; requests already in flight finish: a handful, not 40 x retries.
        assert server.requests <= 3 + CONCURRENCY
        assert "mock refused the account" in first.stderr
        assert "run the same command again" in first.stderr
        assert len(batchrun.read(tmp_path / "out")) == 0  # pending, not error
        assert "k-test-123" not in first.stderr
        server.recover()
        second = run_cli(job)
    assert second.returncode == 0, second.stderr
    frame = batchrun.read(tmp_path / "out")
    assert (len(frame), set(frame["status"])) == (ROWS, {"ok"})


def test_other_providers_finish_while_a_refused_one_is_stopped(
    tmp_path: Path, rows: Path, mock: MockThread
) -> None:
    with AccountServer(*REFUSALS[0][2:]) as server:
        job = write_job(tmp_path, base_url=server.base_url, provider={
            "api": "openai", "max_concurrency": CONCURRENCY, "api_key_env": "ACCOUNT_KEY"},
            variants=[{"name": "broke", "model": "m-1"}])
        text = job.read_text() + (
            f'\n[[provider]]\nname = "healthy"\napi = "openai"\nbase_url = "{mock.base_url}"\n'
            '\n[[variant]]\nname = "fine"\nprovider = "healthy"\nmodel = "mock-1"\n')
        job.write_text(text)
        result = run_cli(job)
    assert result.returncode == 5, result.stderr
    frame = batchrun.read(tmp_path / "out")
    assert (len(frame), set(frame["variant"]), set(frame["status"])) == (ROWS, {"fine"}, {"ok"})


def test_a_request_too_large_for_the_tokens_limit_is_final_for_its_row(
    tmp_path: Path, rows: Path
) -> None:
    body = {"error": {
        "message": "Request too large for gpt-4o in organization org-x on tokens per min (TPM): "
                   "Limit 30000, Requested 36278. The input or output tokens must be reduced in "
                   "order to run successfully.", "type": "tokens", "param": None,
        "code": "rate_limit_exceeded"}}
    with AccountServer(429, body) as server:
        job = write_job(tmp_path, base_url=server.base_url, provider={
            "api": "openai", "max_concurrency": CONCURRENCY, "api_key_env": "ACCOUNT_KEY"})
        result = run_cli(job)
        assert server.requests == ROWS  # each sent once, never retried as a rate limit
    assert result.returncode == 1, result.stderr
    frame = batchrun.read(tmp_path / "out")
    assert set(frame["error_type"]) == {"RequestTooLarge"}
    assert set(frame["attempts"]) == {1}


def test_how_many_refusals_stop_a_provider_is_set_per_provider(
    tmp_path: Path, rows: Path
) -> None:
    with AccountServer(*REFUSALS[0][2:]) as server:
        job = write_job(tmp_path, base_url=server.base_url, provider={
            "api": "openai", "max_concurrency": 1, "api_key_env": "ACCOUNT_KEY",
            "stop_after_account_errors": 1})
        result = run_cli(job)
        assert (result.returncode, server.requests) == (5, 1), result.stderr
