"""Batch calls whose answers lie or never come: a gateway in front of the mock, a wrong key,
a batch that ended before its cancel, a create the provider refuses.

The gateway forwards every call to the real mock on loopback and may replace the mock's answer
to chosen calls by its own status (the mock did the work, the client is told it failed), as a
load balancer does when the upstream answers after the gateway gave up.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.request import urlopen

import aiohttp
import pytest
from aiohttp import web

import batchrun
import batchrun.engine.batch.cancel
from batchrun.mock import MockConfig, MockThread, expected_content
from batchrun.mock.loop_thread import LoopThread
from batchrun.store.batches import read_batches
from tests.test_batch_jobs import batch_body, batch_job

ROWS = 12
# (method, path, how many such calls so far) -> a status to answer instead of the mock's, or None.
Rule = Callable[[str, str, int], int | None]


class Gateway:
    """An HTTP proxy in front of the mock that may answer chosen calls with its own status."""

    def __init__(self, upstream: str, rule: Rule | None = None, *, host: str | None = None) -> None:
        self.upstream = upstream.rstrip("/").removesuffix("/v1")
        self.rule = rule or (lambda method, path, count: None)
        self.host = host  # the Host the upstream is told (where it thinks it is reached)
        self.calls: dict[tuple[str, str], int] = {}
        self.keys: list[tuple[str, str | None]] = []  # (path, the x-api-key it came with)
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._thread = LoopThread(self._start, self._stop, name="gateway")

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        key = (request.method, request.path)
        count = self.calls[key] = self.calls.get(key, 0) + 1
        self.keys.append((request.path, request.headers.get("x-api-key")))
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "content-length", "transfer-encoding")}
        if self.host is not None:
            headers["Host"] = self.host
        async with self._session.request(request.method, self.upstream + request.path_qs,
                                         data=await request.read(), headers=headers) as answer:
            body = await answer.read()
            status = self.rule(request.method, request.path, count)
            if status is not None:
                return web.Response(status=status, text="<html>502 Bad Gateway</html>",
                                    content_type="text/html")
            return web.Response(status=answer.status, body=body,
                                content_type=answer.content_type)

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"

    async def _stop(self) -> None:
        assert self._runner is not None and self._session is not None
        await self._session.close()
        await self._runner.cleanup()

    def __enter__(self) -> Gateway:
        self._thread.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.__exit__(*exc)


def creates(path_end: str, statuses: tuple[int, ...]) -> Rule:
    """The first creates answered with `statuses` (each after the mock created the batch)."""
    def rule(method: str, path: str, count: int) -> int | None:
        if method == "POST" and path.endswith(path_end) and count <= len(statuses):
            return statuses[count - 1]
        return None
    return rule


def own_answers(frame: object, model: str) -> bool:
    return all(row.content == expected_content(batch_body(int(row.id[1:]), model))
               for row in frame.itertuples())  # type: ignore[attr-defined]


@pytest.mark.parametrize(("api", "model", "path_end"), [
    ("openai", "mock-1", "/v1/batches"),
    ("anthropic", "claude-mock", "/v1/messages/batches"),
])
def test_a_gateway_error_on_create_is_looked_up_never_created_again(
    tmp_path: Path, api: str, model: str, path_end: str
) -> None:
    variant = {"name": "b", "model": model, "mode": "batch", "params": {"max_tokens": 32}}
    with MockThread(MockConfig(batch_seconds=0.1)) as server, \
            Gateway(server.base_url, creates(path_end, (502,))) as gateway:
        path = batch_job(tmp_path, gateway.base_url, rows=ROWS, api=api, variants=[variant])
        summary = batchrun.run(path)
        assert server.stats.batches_created == 1
    frame = batchrun.read(tmp_path / "out")
    assert summary.exit_code == 0 and len(frame) == ROWS and set(frame["status"]) == {"ok"}
    assert own_answers(frame, model) and server.stats.billed_twice() == 0
    _, states = read_batches(tmp_path / "out")
    assert [s.state for s in states.values()] == ["committed"]


def test_a_batch_created_twice_behind_a_gateway_is_kept_once_and_its_copy_cancelled(
    tmp_path: Path,
) -> None:
    """A 429 the gateway made up is retried (a second batch); the 502 after it is looked up."""
    with MockThread(MockConfig(batch_seconds=0.3)) as server, \
            Gateway(server.base_url, creates("/v1/batches", (429, 502))) as gateway:
        path = batch_job(tmp_path, gateway.base_url, rows=ROWS)
        summary = batchrun.run(path)
        assert server.stats.batches_created == 2
        assert server.stats.batch_calls.get("batches.cancel") == 1
    frame = batchrun.read(tmp_path / "out")
    assert summary.exit_code == 0 and len(frame) == ROWS and own_answers(frame, "mock-1")
    _, states = read_batches(tmp_path / "out")
    assert [s.state for s in states.values()] == ["committed"]


def run_cli(job: Path, *args: str, key: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("BATCHRUN_TEST_KILL_AT", None)
    if key is not None:
        env["BATCH_TEST_KEY"] = key
    return subprocess.run([sys.executable, "-m", "batchrun", "run", str(job), "--no-progress",
                           *args], capture_output=True, text=True, env=env, timeout=timeout,
                          check=False)


def test_a_key_refused_while_polling_stops_waiting_exits_5_and_leaves_the_batch(
    tmp_path: Path,
) -> None:
    with MockThread(MockConfig(batch_seconds=1.0, api_key="sk-the-right-one")) as server:
        path = batch_job(tmp_path, server.base_url, rows=ROWS, batch={"max_requests": 5},
                         provider={"api_key_env": "BATCH_TEST_KEY"}, budget={"max_usd": 1.0})
        assert run_cli(path, "--detach", key="sk-the-right-one").returncode == 0
        refused = run_cli(path, key="sk-not-the-right-one-0123", timeout=20)
        assert refused.returncode == 5, refused.stderr
        said = refused.stderr
        assert said.count("refused the account:") == said.count("refused the account (") == 1
        _, states = read_batches(tmp_path / "out")
        assert [s.state for s in states.values()] == ["created"] * 3
        done = run_cli(path, key="sk-the-right-one")
        assert done.returncode == 0, done.stderr
        assert server.stats.batches_created == 3
    frame = batchrun.read(tmp_path / "out")
    assert len(frame) == ROWS and own_answers(frame, "mock-1")


def test_cancel_of_batches_that_already_ended_collects_them_and_exits_0(tmp_path: Path) -> None:
    from batchrun import cli

    with MockThread(MockConfig(batch_seconds=0.05)) as server:
        path = batch_job(tmp_path, server.base_url, rows=ROWS, batch={"max_requests": 6})
        assert batchrun.run(path, detach=True).exit_code == 0
        for _ in range(10_000):  # until each has ended at the mock
            if server.stats_snapshot()["batches_ended"].get("completed", 0) == 2:
                break
            for batch_id in list(server.stats.batch_jobs):
                urlopen(f"{server.base_url}/batches/{batch_id}").close()
        assert cli.main(["cancel", str(tmp_path / "out")]) == 0
        assert server.stats.batch_calls.get("batches.cancel", 0) == 0
    frame = batchrun.read(tmp_path / "out")
    assert len(frame) == ROWS and set(frame["status"]) == {"ok"}


def test_a_cancel_answered_409_is_not_retried_the_batch_is_polled_and_collected(
    tmp_path: Path,
) -> None:
    """The gateway passes the cancel on, then answers 409 as if the batch had ended."""
    def rule(method: str, path: str, count: int) -> int | None:
        return 409 if method == "POST" and path.endswith("/cancel") else None

    with MockThread(MockConfig(batch_seconds=2.0)) as server, Gateway(server.base_url,
                                                                      rule) as gateway:
        path = batch_job(tmp_path, gateway.base_url, rows=ROWS)
        assert batchrun.run(path, detach=True).exit_code == 0
        cancelled = batchrun.engine.batch.cancel.cancel_batches(tmp_path / "out")
        assert server.stats.batch_calls.get("batches.cancel") == 1
        assert server.stats.batches_ended == {"cancelled": 1}
    assert cancelled.cancelled == 1
    _, states = read_batches(tmp_path / "out")
    assert [(s.state, s.status) for s in states.values()] == [("committed", "cancelled")]


def test_when_the_batch_side_fails_the_online_side_is_cancelled_not_left_running(
    tmp_path: Path,
) -> None:
    import asyncio

    variants = [{"name": "b", "model": "mock-1", "mode": "batch", "params": {"max_tokens": 32}},
                {"name": "o", "model": "mock-1", "params": {"max_tokens": 32}}]
    with MockThread(MockConfig(latency_ms=5000)) as server:
        path = batch_job(tmp_path, server.base_url, rows=ROWS, variants=variants)
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "batches").write_text("not a folder")  # the batch journal fails

        async def main() -> set[asyncio.Task[object]]:
            with pytest.raises(OSError):
                await batchrun.arun(path, progress=False)
            return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}

        left = asyncio.run(main())
    assert left == set()


def test_the_key_goes_to_the_base_url_only_not_to_a_results_url_on_another_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCH_TEST_KEY", "sk-ant-secret-0123456789")
    variant = {"name": "b", "model": "claude-mock", "mode": "batch", "params": {"max_tokens": 32}}
    with MockThread(MockConfig(batch_seconds=0.1)) as server, \
            Gateway(server.base_url) as elsewhere, \
            Gateway(server.base_url, host=elsewhere.base_url.split("/")[2]) as front:
        path = batch_job(tmp_path, front.base_url, rows=ROWS, api="anthropic", variants=[variant],
                         provider={"api_key_env": "BATCH_TEST_KEY"})
        assert batchrun.run(path).exit_code == 0
    assert {key for _, key in front.keys} == {"sk-ant-secret-0123456789"}
    assert [p for p, _ in elsewhere.keys] and all(p.endswith("/results") for p, _ in elsewhere.keys)
    assert {key for _, key in elsewhere.keys} == {None}


def test_the_batch_calls_map_a_529_to_overloaded_and_take_200_mb_files(tmp_path: Path) -> None:
    from batchrun.errors import Overloaded
    from batchrun.job import Job
    from batchrun.providers.batches.anthropic import AnthropicBatches
    from batchrun.providers.batches.openai import OpenAIBatches
    from batchrun.providers.batches.transport import BatchHTTP

    assert OpenAIBatches.max_bytes == 200_000_000 and AnthropicBatches.max_bytes == 256_000_000
    (spec,) = Job.from_toml(batch_job(tmp_path, "http://127.0.0.1:1/v1")).providers
    error = BatchHTTP(spec, {}, api_key=None).status_error(529, {}, "", "POST /v1/batches")
    assert isinstance(error, Overloaded) and error.status == 529
