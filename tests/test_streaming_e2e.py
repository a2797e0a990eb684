"""Streams and retries that survive the real world, through real runs against a replay server.

Each row's prompt names a scripted answer (`tests.replay`); a script may differ per attempt, so
a test can say "cut short the first time, whole the second" and check what was recorded.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiohttp import web

import batchrun
from tests.conftest import write_job, write_rows
from tests.replay import Handler, ReplayServer, stream

MAX_ATTEMPTS = 3
Script = Sequence[bytes | float]

# ------------------------------------------------------------------------------ scripts


def data(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def named(event: str, obj: dict[str, Any]) -> bytes:
    return f"event: {event}\n".encode() + data(obj)


DONE = b"data: [DONE]\n\n"


def openai_chunks(text: str, *, pieces: int = 3, rid: str = "chatcmpl-e2e") -> list[bytes]:
    """A chat.completion.chunk stream of `text`, up to (not including) `data: [DONE]`."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return data({"id": rid, "object": "chat.completion.chunk", "model": "m",
                     "choices": [choice], **extra})

    size = math.ceil(len(text) / pieces)
    parts = [text[i : i + size] for i in range(0, len(text), size)]
    usage = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    return [
        chunk({"role": "assistant", "content": ""}),
        *(chunk({"content": part}) for part in parts),
        chunk({}, "stop"),
        data({"id": rid, "object": "chat.completion.chunk", "choices": [], "usage": usage}),
    ]


def anthropic_events(text: str) -> list[bytes]:
    """A Messages stream of `text`, up to (not including) `message_stop`."""
    message = {"id": "msg_e2e", "type": "message", "role": "assistant", "model": "m",
               "content": [], "stop_reason": None, "usage": {"input_tokens": 5, "output_tokens": 1}}
    half = len(text) // 2
    return [
        named("message_start", {"type": "message_start", "message": message}),
        named("content_block_start", {"type": "content_block_start", "index": 0,
                                      "content_block": {"type": "text", "text": ""}}),
        *(
            named("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": part}})
            for part in (text[:half], text[half:])
        ),
        named("content_block_stop", {"type": "content_block_stop", "index": 0}),
        named("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                "usage": {"output_tokens": 7}}),
    ]


MESSAGE_STOP = named("message_stop", {"type": "message_stop"})


def whole(api: str, text: str) -> list[bytes]:
    """A complete stream of `text` in the `api`'s format."""
    if api == "openai":
        return [*openai_chunks(text), DONE]
    return [*anthropic_events(text), MESSAGE_STOP]


def by_attempt(*scripts: Script) -> Handler:
    """Stream scripts[k] on attempt k + 1 (the last one on every later attempt)."""

    async def handler(request: web.Request, attempt: int) -> web.StreamResponse:
        return await stream(request, *scripts[min(attempt, len(scripts)) - 1])

    return handler


def json_by_attempt(*answers: tuple[int, dict[str, str], Any]) -> Handler:
    """Answer (status, headers, JSON body) answers[k] on attempt k + 1 (the last one later)."""

    async def handler(request: web.Request, attempt: int) -> web.StreamResponse:
        status, headers, body = answers[min(attempt, len(answers)) - 1]
        return web.json_response(body, status=status, headers=headers)

    return handler


def completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-json",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }


# -------------------------------------------------------------------------------- runs


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    with ReplayServer() as server:
        yield server


def run(
    folder: Path,
    server: ReplayServer,
    *,
    api: str = "openai",
    stream: bool = True,
    provider: dict[str, Any] | None = None,
    retry: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """One real run over every case the server knows; result rows by id (= case name)."""
    write_rows(folder / "rows.jsonl", [{"id": name, "text": name} for name in server.cases])
    job = write_job(
        folder,
        base_url=server.base_url,
        provider={"api": api, **(provider or {})},
        retry={"max_attempts": MAX_ATTEMPTS, "backoff_initial_s": 0.01, "backoff_max_s": 0.02,
               **(retry or {})},
        variants=[{"name": "v", "model": "m", "stream": stream, "params": {"max_tokens": 64}}],
    )
    summary = batchrun.run(job)
    assert summary.pending == 0
    frame = batchrun.read(folder / "out")
    rows = {}
    for record in frame.to_dict("records"):
        rows[record["id"]] = {
            k: None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v
            for k, v in record.items()
        }
    return rows


# ------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_stream_ending_without_its_end_marker_is_retried_never_recorded_as_complete(
    tmp_path: Path, replay: ReplayServer, api: str
) -> None:
    cut = whole(api, "The first answer, which never finished.")[:-1]  # no [DONE] / message_stop
    replay.add("cut-once", by_attempt(cut, whole(api, "The second answer.")))
    replay.add("cut-always", by_attempt(cut))
    rows = run(tmp_path, replay, api=api)
    ok, failed = rows["cut-once"], rows["cut-always"]
    assert (ok["status"], ok["content"], ok["attempts"]) == ("ok", "The second answer.", 2)
    assert (failed["status"], failed["error_type"]) == ("error", "IncompleteStream")
    assert failed["content"] is None and failed["completion_tokens"] is None
    assert failed["attempts"] == replay.requests["cut-always"] == MAX_ATTEMPTS


MID_STREAM_ERRORS = {
    # Retryable by type: a gateway's upstream failure, Anthropic's overloaded_error.
    "openai": (
        {"error": {"message": "Upstream provider error", "type": "server_error", "code": 502}},
        {"error": {"message": "This model's maximum context length is 8192 tokens.",
                   "type": "invalid_request_error", "code": "context_length_exceeded"}},
        "ProviderError", "ContextTooLong",
    ),
    "anthropic": (
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        {"type": "error", "error": {"type": "invalid_request_error",
                                    "message": "messages: text content blocks must be non-empty"}},
        "Overloaded", "BadRequest",
    ),
}


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_error_event_mid_stream_is_retried_or_final_by_its_type(
    tmp_path: Path, replay: ReplayServer, api: str
) -> None:
    retryable, terminal, retry_type, terminal_type = MID_STREAM_ERRORS[api]

    def broken(error: dict[str, Any]) -> list[bytes]:
        start = whole(api, "Partial answer that is cut by an error")[:3]
        return [*start, named("error", error) if api == "anthropic" else data(error)]

    replay.add("retryable-once", by_attempt(broken(retryable), whole(api, "Recovered.")))
    replay.add("retryable-always", by_attempt(broken(retryable)))
    replay.add("terminal", by_attempt(broken(terminal)))
    rows = run(tmp_path, replay, api=api)
    recovered = rows["retryable-once"]
    assert (recovered["status"], recovered["content"], recovered["attempts"]) == (
        "ok", "Recovered.", 2)
    failed = rows["retryable-always"]
    assert (failed["status"], failed["error_type"]) == ("error", retry_type)
    assert failed["attempts"] == replay.requests["retryable-always"] == MAX_ATTEMPTS
    final = rows["terminal"]
    assert (final["status"], final["error_type"]) == ("error", terminal_type)
    assert final["attempts"] == replay.requests["terminal"] == 1
    assert final["content"] is None
    message = terminal["error"]["message"]
    assert message in final["error_message"]


IDLE_TIMEOUT_S = 0.3


def test_silence_longer_than_the_idle_timeout_is_a_retried_timeout(
    tmp_path: Path, replay: ReplayServer
) -> None:
    head, *rest = whole("openai", "An answer with a long silence in it.")
    replay.add("stalls", by_attempt([head, 3 * IDLE_TIMEOUT_S, *rest]))
    rows = run(tmp_path, replay, provider={"idle_timeout_seconds": IDLE_TIMEOUT_S},
               retry={"max_attempts": 2})
    row = rows["stalls"]
    assert (row["status"], row["error_type"]) == ("error", "Timeout")
    assert row["attempts"] == replay.requests["stalls"] == 2
    assert row["content"] is None


def test_slow_but_steady_stream_outlasting_the_idle_timeout_succeeds(
    tmp_path: Path, replay: ReplayServer
) -> None:
    events = whole("openai", "Slow and steady wins the race.")
    pause = IDLE_TIMEOUT_S / 2
    steady: list[bytes | float] = []
    for event in events:
        steady += [event, pause]
    assert pause * len(events) > 2 * IDLE_TIMEOUT_S  # the whole answer takes far longer
    replay.add("steady", by_attempt(steady))
    rows = run(tmp_path, replay, provider={"idle_timeout_seconds": IDLE_TIMEOUT_S,
                                           "timeout_seconds": 10})
    row = rows["steady"]
    assert (row["status"], row["content"], row["attempts"]) == (
        "ok", "Slow and steady wins the race.", 1)
    assert row["latency_s"] > 2 * IDLE_TIMEOUT_S
    assert row["total_tokens"] == 12


def test_total_timeout_ends_a_stream_that_never_goes_idle(
    tmp_path: Path, replay: ReplayServer
) -> None:
    events = whole("openai", "An answer that keeps coming for too long.")
    steady: list[bytes | float] = []
    for event in events:
        steady += [event, 0.1]
    replay.add("endless", by_attempt(steady))
    rows = run(tmp_path, replay, provider={"idle_timeout_seconds": 0.5, "timeout_seconds": 0.3},
               retry={"max_attempts": 1})
    row = rows["endless"]
    assert (row["status"], row["error_type"], row["attempts"]) == ("error", "Timeout", 1)


RATE_LIMITED = {"error": {"message": "Rate limit reached for requests", "type": "requests",
                          "code": "rate_limit_exceeded"}}


def test_retry_after_on_a_429_is_obeyed(tmp_path: Path, replay: ReplayServer) -> None:
    replay.add("limited", json_by_attempt((429, {"Retry-After": "1"}, RATE_LIMITED),
                                          (200, {}, completion("Waited."))))
    rows = run(tmp_path, replay, stream=False, retry={"retry_after_max_s": 5})
    row = rows["limited"]
    assert (row["status"], row["content"], row["attempts"]) == ("ok", "Waited.", 2)
    (gap,) = replay.gaps("limited")
    assert 0.95 <= gap < 1.8


# A regression would wait the whole hint: fail in seconds rather than hang for an hour.
@pytest.mark.timeout(20)
def test_huge_retry_after_is_capped_by_retry_after_max_s(
    tmp_path: Path, replay: ReplayServer
) -> None:
    # A hint far above the cap waits the cap: the retry and the provider's cool-down alike.
    replay.add("huge-hint", json_by_attempt((429, {"Retry-After": "3600"}, RATE_LIMITED),
                                            (200, {}, completion("Capped."))))
    rows = run(tmp_path, replay, stream=False, retry={"retry_after_max_s": 0.2})
    row = rows["huge-hint"]
    assert (row["status"], row["content"], row["attempts"]) == ("ok", "Capped.", 2)
    (gap,) = replay.gaps("huge-hint")
    assert 0.2 <= gap < 1.5


def test_http_200_carrying_an_error_object_is_retried(
    tmp_path: Path, replay: ReplayServer
) -> None:
    error = {"error": {"message": "Upstream error from provider", "code": 502}}
    replay.add("error-in-200", json_by_attempt((200, {}, error), (200, {}, completion("Fine."))))
    replay.add("error-in-200-always", json_by_attempt((200, {}, error)))
    rows = run(tmp_path, replay, stream=False)
    ok, failed = rows["error-in-200"], rows["error-in-200-always"]
    assert (ok["status"], ok["content"], ok["attempts"]) == ("ok", "Fine.", 2)
    assert (failed["status"], failed["error_type"]) == ("error", "ProviderError")
    assert failed["attempts"] == replay.requests["error-in-200-always"] == MAX_ATTEMPTS
    assert "Upstream error from provider" in failed["error_message"]


def test_connection_dropped_mid_stream_is_retried(tmp_path: Path, replay: ReplayServer) -> None:
    async def drop(request: web.Request, attempt: int) -> web.StreamResponse:
        if attempt > 1:
            return await stream(request, *whole("openai", "Whole at last."))
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        for event in openai_chunks("Cut off in the middle of a chunked body.")[:3]:
            await response.write(event)
        await asyncio.sleep(0.01)
        assert request.transport is not None
        request.transport.close()  # no terminating chunk: the body is incomplete
        return response

    replay.add("dropped", drop)
    row = run(tmp_path, replay)["dropped"]
    assert (row["status"], row["content"], row["attempts"]) == ("ok", "Whole at last.", 2)


def test_json_reply_to_a_streamed_request_is_read_as_a_body(
    tmp_path: Path, replay: ReplayServer
) -> None:
    context = {"error": {"message": "This model's maximum context length is 8192 tokens.",
                         "type": "invalid_request_error", "code": "context_length_exceeded"}}
    replay.add("json-error", json_by_attempt((200, {}, context)))
    replay.add("not-streamed", json_by_attempt((200, {}, completion("Sent whole."))))
    rows = run(tmp_path, replay)
    error = rows["json-error"]
    assert (error["error_type"], error["attempts"]) == ("ContextTooLong", 1)
    assert "maximum context length is 8192 tokens" in error["error_message"]
    whole_body = rows["not-streamed"]
    assert (whole_body["status"], whole_body["content"]) == ("ok", "Sent whole.")
    assert whole_body["total_tokens"] == 7
