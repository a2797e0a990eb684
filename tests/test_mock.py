"""The built-in mock provider: answers, shapes, streams, limits, injected failures, SDKs."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from multidict import CIMultiDict

from batchrun.errors import UsageError
from batchrun.mock import (
    MockConfig,
    MockProvider,
    MockThread,
    expected_answer,
    expected_content,
    request_key,
)
from batchrun.mock.answer import LABELS, count_tokens, parse_directives
from batchrun.mock.config import parse_fault_mix
from batchrun.mock.limits import FixedWindow, go_duration
from batchrun.mock.shapes import SHAPES

pytestmark = pytest.mark.anyio

Start = Callable[..., Awaitable[MockProvider]]
Reply = tuple[int, CIMultiDict[str], bytes]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Start MockProviders on loopback with the given config fields; stop them afterwards."""
    started: list[MockProvider] = []

    async def start_mock(**fields: Any) -> MockProvider:
        provider = MockProvider(MockConfig(**fields))
        await provider.start()
        started.append(provider)
        return provider

    yield start_mock
    for provider in started:
        await provider.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def mock_thread() -> Iterator[MockThread]:
    with MockThread(MockConfig(reasoning="field")) as thread:
        yield thread


def chat(text: str = "The battery lasts all day.", **params: Any) -> dict[str, Any]:
    return {"model": "mock-1", "messages": [{"role": "user", "content": text}], **params}


async def post(
    session: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str] | None = None
) -> Reply:
    async with session.post(url, json=body, headers=headers) as response:
        return response.status, CIMultiDict(response.headers), await response.read()


def sse(raw: bytes) -> list[tuple[str | None, str]]:
    """(event name or ":" for a comment, data) of each SSE event."""
    events: list[tuple[str | None, str]] = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith(":"):
                events.append((":", line[1:].strip()))
            elif line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        if data:
            events.append((name, "\n".join(data)))
    return events


def chunks(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(d) for n, d in sse(raw) if n != ":" and d != "[DONE]"]


# --- answers --------------------------------------------------------------------------------


async def test_answer_is_deterministic_and_equals_expected_content(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start()
    body = chat()
    first = json.loads((await post(session, mock.base_url + "/chat/completions", body))[2])
    again = json.loads((await post(session, mock.base_url + "/chat/completions", body))[2])
    content = first["choices"][0]["message"]["content"]
    assert content == again["choices"][0]["message"]["content"] == expected_content(body)
    assert re.fullmatch(r"(positive|negative|neutral) \([0-9a-f]{10}\)", content)
    assert first["choices"][0]["finish_reason"] == "stop"


def test_answer_depends_on_model_and_last_user_text_only() -> None:
    base = chat("a review")
    assert expected_content(base) == expected_content({**base, "temperature": 0.3})
    assert expected_content(base) != expected_content(chat("another review"))
    assert expected_content(base) != expected_content({**base, "model": "mock-2"})
    parts = chat("x")
    parts["messages"] = [
        {"role": "user", "content": "earlier"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "a review"}]},
    ]
    assert expected_content(parts) == expected_content(base)


def test_json_answer_when_response_format_or_prompt_asks_for_it() -> None:
    for body in (
        chat("Label it.", response_format={"type": "json_object"}),
        chat("Label it.", response_format={"type": "json_schema", "json_schema": {}}),
        chat("Label it, answer in JSON."),
    ):
        parsed = json.loads(expected_content(body))
        assert parsed["label"] in LABELS
        assert 0.5 <= parsed["confidence"] < 1


def test_seeded_samples_mostly_agree_with_the_base_answer_but_not_always() -> None:
    body = chat("a review to sample")
    base = expected_content(body)
    answers = [expected_content({**body, "seed": seed}) for seed in range(400)]
    share = answers.count(base) / len(answers)
    assert 0.7 < share < 0.9
    assert all(a.split()[0] != base.split()[0] for a in answers if a != base)
    cold = {expected_content({**body, "seed": seed, "temperature": 0}) for seed in range(50)}
    assert cold == {base}


async def test_usage_counts_prompt_and_completion_tokens(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start()
    body = chat("x" * 40)
    body["messages"].insert(0, {"role": "system", "content": "y" * 20})
    reply = json.loads((await post(session, mock.base_url + "/chat/completions", body))[2])
    usage = reply["usage"]
    assert usage["prompt_tokens"] == 60 // 4 + 2 * 4
    assert usage["completion_tokens"] == count_tokens(reply["choices"][0]["message"]["content"])
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens_details"]["reasoning_tokens"] == 0


async def test_max_tokens_cuts_the_answer_with_finish_reason_length(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start()
    body = chat(max_tokens=2)
    reply = json.loads((await post(session, mock.base_url + "/chat/completions", body))[2])
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "length"
    assert choice["message"]["content"] == expected_content(body) == expected_content(chat())[:8]
    assert reply["usage"]["completion_tokens"] == 2


async def test_max_tokens_spent_on_reasoning_leaves_an_unclosed_think_tag(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start(reasoning="think")
    body = chat(max_tokens=5)
    reply = json.loads((await post(session, mock.base_url + "/chat/completions", body))[2])
    content = reply["choices"][0]["message"]["content"]
    assert content.startswith("<think>\n") and "</think>" not in content
    assert reply["choices"][0]["finish_reason"] == "length"
    assert expected_content(body, MockConfig(reasoning="think")) == ""


async def test_n_returns_that_many_choices(start: Start, session: aiohttp.ClientSession) -> None:
    mock = await start()
    body = chat(n=3)
    reply = json.loads((await post(session, mock.base_url + "/chat/completions", body))[2])
    assert [c["index"] for c in reply["choices"]] == [0, 1, 2]
    assert reply["choices"][0]["message"]["content"] == expected_content(body)
    per_choice = [count_tokens(c["message"]["content"]) for c in reply["choices"]]
    assert reply["usage"]["completion_tokens"] == sum(per_choice)


# --- reasoning and shapes -------------------------------------------------------------------


async def test_reasoning_field_mode_puts_reasoning_in_reasoning_content(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start(reasoning="field")
    body = chat()
    reply = json.loads((await post(session, mock.base_url + "/chat/completions", body))[2])
    message = reply["choices"][0]["message"]
    answer = expected_answer(body, MockConfig(reasoning="field"))
    assert message["content"] == answer.content
    assert message["reasoning_content"] == answer.reasoning
    details = reply["usage"]["completion_tokens_details"]
    assert details["reasoning_tokens"] == count_tokens(answer.reasoning or "") > 0


async def test_reasoning_think_mode_wraps_reasoning_in_think_tags(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start(reasoning="think")
    body = chat()
    reply = json.loads((await post(session, mock.base_url + "/chat/completions", body))[2])
    content = reply["choices"][0]["message"]["content"]
    answer = expected_answer(body, MockConfig(reasoning="think"))
    assert content == f"<think>\n{answer.reasoning}\n</think>\n{answer.content}"
    assert "reasoning_content" not in reply["choices"][0]["message"]


async def test_think_directive_and_anthropic_thinking_add_reasoning_when_mode_is_none(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start()
    plain = json.loads((await post(session, mock.base_url + "/chat/completions", chat()))[2])
    assert "reasoning_content" not in plain["choices"][0]["message"]
    body = chat("why? [[mock:think]]")
    reply = json.loads((await post(session, mock.base_url + "/chat/completions", body))[2])
    assert reply["choices"][0]["message"]["reasoning_content"]
    thinking = chat(max_tokens=500, thinking={"type": "enabled", "budget_tokens": 100})
    message = json.loads((await post(session, mock.base_url + "/messages", thinking))[2])
    assert [b["type"] for b in message["content"]] == ["thinking", "text"]
    fielded = await start(reasoning="field")
    off = chat(enable_thinking=False)
    reply = json.loads((await post(session, fielded.base_url + "/chat/completions", off))[2])
    assert "reasoning_content" not in reply["choices"][0]["message"]


@pytest.mark.parametrize("shape", SHAPES)
async def test_each_shape_copies_its_providers_quirks(
    start: Start, session: aiohttp.ClientSession, shape: str
) -> None:
    mock = await start(shape=shape, reasoning="field")
    body = chat(max_tokens=100)
    reply = json.loads((await post(session, mock.base_url + "/chat/completions", body))[2])
    choice, usage = reply["choices"][0], reply["usage"]
    answer = expected_answer(body, MockConfig(reasoning="field"))
    assert reply["object"] == "chat.completion"
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    if shape == "openai":
        assert reply["system_fingerprint"] and reply["model"] == "mock-1"
        assert usage["prompt_tokens_details"]["cached_tokens"] == 0
        assert usage["completion_tokens_details"]["reasoning_tokens"] == answer.reasoning_tokens
    elif shape == "liandanxia":
        assert choice["message"]["content"].startswith("<think>\n")
        assert choice["message"]["content"].endswith(f"</think>\n{answer.content}")
        assert choice["message"]["reasoning_content"] is None
        assert choice["message"]["tool_calls"] is None
        assert choice["matched_stop"] == 1
        assert usage["reasoning_tokens"] == 0 and usage["prompt_tokens_details"] is None
        assert reply["metadata"] == {"weight_version": "default"}
    elif shape == "relay":
        assert "model" not in reply
        assert set(usage) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    elif shape in ("jiekou", "deepseek"):
        assert choice["message"]["reasoning_content"] == answer.reasoning
    if shape == "deepseek":
        hit, miss = usage["prompt_cache_hit_tokens"], usage["prompt_cache_miss_tokens"]
        assert hit + miss == usage["prompt_tokens"]
    if shape == "openrouter":
        assert choice["message"]["reasoning"] == answer.reasoning
        assert choice["native_finish_reason"] == "stop"


async def test_jiekou_shape_and_anthropic_format_require_max_tokens(
    start: Start, session: aiohttp.ClientSession
) -> None:
    jiekou = await start(shape="jiekou")
    status, _, raw = await post(session, jiekou.base_url + "/chat/completions", chat())
    assert status == 400 and json.loads(raw)["error"]["type"] == "invalid_request_error"
    status, _, raw = await post(session, jiekou.base_url + "/messages", chat())
    assert status == 400
    assert json.loads(raw) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
    }


async def test_completion_route_matches_any_prefix(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start()
    root = mock.base_url.removesuffix("/v1")
    status, _, _ = await post(session, root + "/openai/v1/chat/completions", chat())
    assert status == 200
    async with session.get(mock.base_url + "/models") as response:
        assert (await response.json())["object"] == "list"


# --- tools ----------------------------------------------------------------------------------

TOOLS = [{"type": "function", "function": {"name": "set_label", "parameters": {}}}]


async def test_tools_get_one_call_to_the_first_tool(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start()
    reply = json.loads(
        (await post(session, mock.base_url + "/chat/completions", chat(tools=TOOLS)))[2]
    )
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "set_label"
    assert json.loads(call["function"]["arguments"])["label"] in LABELS
    none = chat(tools=TOOLS, tool_choice="none")
    reply = json.loads((await post(session, mock.base_url + "/chat/completions", none))[2])
    assert reply["choices"][0]["message"]["content"] == expected_content(none)


async def test_anthropic_tools_get_a_tool_use_block(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start()
    body = chat(max_tokens=100, tools=[{"name": "set_label", "input_schema": {}}])
    message = json.loads((await post(session, mock.base_url + "/messages", body))[2])
    assert message["stop_reason"] == "tool_use"
    (block,) = message["content"]
    assert block["type"] == "tool_use" and block["name"] == "set_label"
    assert block["input"]["label"] in LABELS


# --- streams --------------------------------------------------------------------------------


async def test_stream_sends_role_pieces_finish_then_done(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start()
    body = chat(stream=True)
    status, headers, raw = await post(session, mock.base_url + "/chat/completions", body)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    events = sse(raw)
    assert events[-1] == (None, "[DONE]") and (":", "keep-alive") in events
    parts = chunks(raw)
    assert parts[0]["choices"][0]["delta"]["role"] == "assistant"
    pieces = [c["choices"][0]["delta"].get("content") or "" for c in parts]
    assert sum(1 for p in pieces if p) >= 2
    assert "".join(pieces) == expected_content(body)
    assert parts[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in c for c in parts)


async def test_stream_sends_a_usage_chunk_only_when_include_usage(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start()
    body = chat(stream=True, stream_options={"include_usage": True})
    parts = chunks((await post(session, mock.base_url + "/chat/completions", body))[2])
    assert parts[-1]["choices"] == [] and parts[-1]["usage"]["total_tokens"] > 0
    assert all(c["usage"] is None for c in parts[:-1])


async def test_think_stream_cuts_the_tags_across_chunks(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start(shape="liandanxia")
    body = chat("[[mock:think]] go", stream=True)
    parts = chunks((await post(session, mock.base_url + "/chat/completions", body))[2])
    pieces = [c["choices"][0]["delta"].get("content") or "" for c in parts]
    assert not any("<think>" in p or "</think>" in p for p in pieces)
    answer = expected_answer(body)
    assert "".join(pieces) == f"<think>\n{answer.reasoning}\n</think>\n{answer.content}"
    assert parts[-1]["choices"][0]["matched_stop"] == 1


@pytest.mark.parametrize(
    ("shape", "field"), [("deepseek", "reasoning_content"), ("openrouter", "reasoning")]
)
async def test_stream_sends_reasoning_deltas_in_the_shapes_field(
    start: Start, session: aiohttp.ClientSession, shape: str, field: str
) -> None:
    mock = await start(shape=shape, reasoning="field")
    body = chat(stream=True)
    _, _, raw = await post(session, mock.base_url + "/chat/completions", body)
    reasoning = "".join(c["choices"][0]["delta"].get(field) or "" for c in chunks(raw))
    assert reasoning == expected_answer(body, MockConfig(reasoning="field")).reasoning
    if shape == "openrouter":
        assert sse(raw)[0] == (":", "OPENROUTER PROCESSING")


async def test_stream_sends_tool_call_arguments_in_several_deltas(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start()
    body = chat(stream=True, tools=TOOLS)
    parts = chunks((await post(session, mock.base_url + "/chat/completions", body))[2])
    calls = [d["tool_calls"][0] for c in parts if (d := c["choices"][0]["delta"]).get("tool_calls")]
    assert calls[0]["function"]["name"] == "set_label" and calls[0]["id"].startswith("call_")
    arguments = [c["function"]["arguments"] for c in calls[1:]]
    assert len(arguments) > 2
    assert json.loads("".join(arguments))["label"] in LABELS
    assert parts[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_anthropic_stream_sends_named_events_with_pings(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start()
    body = chat(max_tokens=300, stream=True, thinking={"type": "enabled", "budget_tokens": 100})
    _, _, raw = await post(session, mock.base_url + "/messages", body)
    events = sse(raw)
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-1] == "message_stop" and "ping" in names
    deltas = [json.loads(d)["delta"] for n, d in events if n == "content_block_delta"]
    kinds = {d["type"] for d in deltas}
    assert kinds == {"thinking_delta", "signature_delta", "text_delta"}
    answer = expected_answer(body)
    assert "".join(d.get("text", "") for d in deltas) == answer.content
    assert "".join(d.get("thinking", "") for d in deltas) == answer.reasoning
    final = json.loads(next(d for n, d in events if n == "message_delta"))
    assert final["delta"]["stop_reason"] == "end_turn"
    assert final["usage"]["output_tokens"] == answer.completion_tokens


# --- official SDKs --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
async def test_async_openai_sdk_accepts_every_shape_streamed_or_not(
    start: Start, shape: str
) -> None:
    mock = await start(shape=shape, reasoning="think" if shape == "liandanxia" else "none")
    body = chat(max_tokens=100)
    async with openai.AsyncOpenAI(base_url=mock.base_url, api_key="k", max_retries=0) as client:
        reply = await client.chat.completions.create(
            model="mock-1", messages=body["messages"], max_tokens=100
        )
        assert reply.choices[0].message.content is not None
        assert reply.choices[0].message.content.endswith(expected_content(body))
        assert reply.usage is not None and reply.usage.total_tokens > 0
        stream = await client.chat.completions.create(
            model="mock-1",
            messages=body["messages"],
            max_tokens=100,
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
            usage = chunk.usage or usage
        assert text == reply.choices[0].message.content
        assert usage is not None and usage.total_tokens == reply.usage.total_tokens


def test_sync_openai_sdk_accepts_answers_tool_calls_and_streams(mock_thread: MockThread) -> None:
    body = chat()
    with openai.OpenAI(base_url=mock_thread.base_url, api_key="k", max_retries=0) as client:
        reply = client.chat.completions.create(model="mock-1", messages=body["messages"])
        assert reply.choices[0].message.content == expected_content(body)
        assert reply.usage is not None and reply.usage.completion_tokens_details is not None
        assert reply.usage.completion_tokens_details.reasoning_tokens > 0
        tools = client.chat.completions.create(
            model="mock-1",
            messages=body["messages"],
            tools=TOOLS,
        )
        calls = tools.choices[0].message.tool_calls
        assert calls is not None and calls[0].function.name == "set_label"
        pieces = [
            chunk.choices[0].delta.content or ""
            for chunk in client.chat.completions.create(
                model="mock-1", messages=body["messages"], stream=True
            )
            if chunk.choices
        ]
        assert "".join(pieces) == expected_content(body)
    assert mock_thread.stats_snapshot()["ok"] == 3


def test_anthropic_sdk_accepts_messages_thinking_tools_and_streams(
    mock_thread: MockThread,
) -> None:
    root = mock_thread.base_url.removesuffix("/v1")
    body = chat(max_tokens=200)
    with anthropic.Anthropic(base_url=root, api_key="k", max_retries=0) as client:
        message = client.messages.create(model="mock-1", max_tokens=200, messages=body["messages"])
        assert [b.type for b in message.content] == ["thinking", "text"]
        assert message.content[1].text == expected_content(body)
        assert message.stop_reason == "end_turn" and message.usage.input_tokens > 0
        tool = client.messages.create(
            model="mock-1",
            max_tokens=200,
            messages=body["messages"],
            tools=[{"name": "set_label", "input_schema": {"type": "object"}}],
        )
        assert tool.stop_reason == "tool_use" and tool.content[-1].type == "tool_use"
        with client.messages.stream(
            model="mock-1", max_tokens=200, messages=body["messages"]
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text == expected_content(body)
        assert final.content[0].type == "thinking" and final.usage.output_tokens > 0


async def test_async_anthropic_sdk_streams_tool_use(start: Start) -> None:
    mock = await start()
    root = mock.base_url.removesuffix("/v1")
    client = anthropic.AsyncAnthropic(base_url=root, api_key="k", max_retries=0)
    async with (
        client,
        client.messages.stream(
            model="mock-1",
            max_tokens=100,
            messages=[{"role": "user", "content": "label this"}],
            tools=[{"name": "set_label", "input_schema": {"type": "object"}}],
        ) as stream,
    ):
        final = await stream.get_final_message()
    block = final.content[-1]
    assert final.stop_reason == "tool_use" and block.type == "tool_use"
    assert block.input["label"] in LABELS


# --- limits ---------------------------------------------------------------------------------


def test_fixed_window_caps_requests_and_tokens_per_window() -> None:
    now = [100.0]
    window = FixedWindow(rpm=120, tpm=600, window_s=1.0, clock=lambda: now[0])
    assert window.request_cap == 2 and window.token_cap == 10
    assert window.admit() is None and window.admit() is None
    refusal = window.admit()
    assert refusal is not None and refusal.limit == "requests" and refusal.wait_s == 1.0
    now[0] = 100.75
    refusal = window.admit()
    assert refusal is not None and refusal.headers == {"retry-after": "1", "retry-after-ms": "250"}
    now[0] = 101.0
    assert window.admit() is None
    window.spend(10)
    refusal = window.admit()
    assert refusal is not None and refusal.limit == "tokens"
    now[0] = 103.5
    assert window.admit() is None


def test_durations_are_written_in_openai_style() -> None:
    assert go_duration(360) == "6m0s"
    assert go_duration(1.5) == "1.5s"
    assert go_duration(0.02) == "20ms"
    assert go_duration(3725) == "1h2m5s"
    assert go_duration(0) == "0s"


async def test_rpm_limit_answers_429_with_retry_after_until_the_window_ends(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start(rpm=120, window_s=1.0)  # 2 requests per one-second window
    url = mock.base_url + "/chat/completions"
    replies = [await post(session, url, chat(f"r{i}")) for i in range(3)]
    assert [status for status, _, _ in replies] == [200, 200, 429]
    _, headers, raw = replies[2]
    assert headers["Retry-After"] == "1" and 0 < int(headers["retry-after-ms"]) <= 1000
    assert json.loads(raw)["error"]["code"] == "rate_limit_exceeded"
    assert headers["x-ratelimit-limit-requests"] == "120"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert re.fullmatch(r"\d+ms", headers["x-ratelimit-reset-requests"])
    assert replies[0][1]["x-ratelimit-remaining-requests"] == "60"  # half the window is left
    await asyncio.sleep(int(headers["retry-after-ms"]) / 1000)
    assert (await post(session, url, chat("after")))[0] == 200
    assert mock.stats.rate_limited == 1 and mock.stats.by_status == {200: 3, 429: 1}


async def test_tpm_limit_refuses_arrivals_once_the_windows_tokens_are_used(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start(tpm=12, window_s=5.0)  # 1 token per window: the first answer uses it
    url = mock.base_url + "/messages"
    status, headers, _ = await post(session, url, chat(max_tokens=10))
    assert status == 200 and headers["anthropic-ratelimit-tokens-limit"] == "12"
    assert headers["anthropic-ratelimit-tokens-remaining"] == "0"
    datetime.fromisoformat(headers["anthropic-ratelimit-tokens-reset"])
    status, headers, raw = await post(session, url, chat(max_tokens=10))
    assert status == 429 and json.loads(raw)["error"]["type"] == "rate_limit_error"
    assert "retry-after" in headers
    assert mock.stats.tokens == expected_answer(chat(max_tokens=10)).total_tokens


async def test_rate_headers_can_be_switched_off(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start(rpm=60, rate_headers=False)
    _, headers, _ = await post(session, mock.base_url + "/chat/completions", chat())
    assert not any("ratelimit" in h.lower() for h in headers)


async def test_set_limits_and_limits_endpoint_change_limits_mid_run(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start(window_s=30)
    url = mock.base_url + "/chat/completions"
    assert (await post(session, url, chat("a")))[0] == 200
    mock.set_limits(rpm=2)  # 1 per 30 s window, and this window already served one
    assert (await post(session, url, chat("b")))[0] == 429
    mock.set_limits(rpm=None)
    assert (await post(session, url, chat("c")))[0] == 200
    root = mock.base_url.removesuffix("/v1")
    async with session.post(root + "/_mock/limits", json={"tpm": 1}) as response:
        assert await response.json() == {"rpm": None, "tpm": 1}
    status, headers, _ = await post(session, url, chat("d"))
    assert status == 429 and headers["x-ratelimit-limit-tokens"] == "1"


# --- injected failures ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "status"), [("503", 503), ("500", 500), ("overloaded", 529), ("context", 400)]
)
async def test_fail_directive_with_count_fails_that_many_attempts_then_answers(
    start: Start, session: aiohttp.ClientSession, kind: str, status: int
) -> None:
    mock = await start()
    body = chat(f"flaky [[mock:fail={kind}x2]]")
    url = mock.base_url + "/chat/completions"
    statuses = [(await post(session, url, body))[0] for _ in range(3)]
    assert statuses == [status, status, 200]
    assert mock.stats.attempts[request_key(body)] == 3
    assert mock.stats.answered == {request_key(body): 1}
    assert mock.stats.injected == {kind: 2}


async def test_fail_directive_error_bodies_follow_each_format(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start()
    _, _, raw = await post(
        session, mock.base_url + "/chat/completions", chat("[[mock:fail=context]]")
    )
    assert json.loads(raw)["error"]["code"] == "context_length_exceeded"
    body = chat("[[mock:fail=overloaded]]", max_tokens=10)
    status, _, raw = await post(session, mock.base_url + "/messages", body)
    assert status == 529 and json.loads(raw)["error"]["type"] == "overloaded_error"
    status, headers, raw = await post(
        session, mock.base_url + "/messages", chat("[[mock:fail=429]]", max_tokens=9)
    )
    assert status == 429 and headers["retry-after-ms"] == "50" and headers["Retry-After"] == "0"
    assert json.loads(raw)["error"]["type"] == "rate_limit_error"


async def test_fail_directive_without_count_fails_every_attempt(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start()
    body = chat("[[mock:fail=404]]")
    statuses = [
        (await post(session, mock.base_url + "/chat/completions", body))[0] for _ in range(4)
    ]
    assert statuses == [404] * 4 and mock.stats.attempts[request_key(body)] == 4


async def test_fail_directives_apply_in_order(start: Start, session: aiohttp.ClientSession) -> None:
    mock = await start()
    body = chat("[[mock:fail=500x1]] [[mock:fail=dropx1]] [[mock:fail=429x1]]")
    url = mock.base_url + "/chat/completions"
    assert (await post(session, url, body))[0] == 500
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(session, url, body)
    assert (await post(session, url, body))[0] == 429
    assert (await post(session, url, body))[0] == 200


async def test_drop_closes_the_connection_without_an_answer(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start()
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await post(session, mock.base_url + "/chat/completions", chat("[[mock:fail=drop]]"))
    assert mock.stats.injected == {"drop": 1} and mock.stats.by_status == {}


async def test_truncate_malformed_and_error200_answer_200_without_a_usable_body(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start()
    url = mock.base_url + "/chat/completions"
    for kind in ("truncate", "malformed"):
        status, _, raw = await post(session, url, chat(f"[[mock:fail={kind}]]"))
        assert status == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(raw)
    status, _, raw = await post(session, url, chat("[[mock:fail=error200]]"))
    assert status == 200 and "error" in json.loads(raw)
    status, _, raw = await post(
        session, mock.base_url + "/messages", chat("[[mock:fail=error200]]", max_tokens=5)
    )
    assert json.loads(raw)["type"] == "error"
    assert mock.stats.ok == 0 and mock.stats.answered == {} and mock.stats.tokens == 0


async def test_truncated_streams_end_before_their_end_marker(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start()
    body = chat("[[mock:fail=truncate]]", stream=True)
    _, _, raw = await post(session, mock.base_url + "/chat/completions", body)
    assert chunks(raw) and b"[DONE]" not in raw
    _, _, raw = await post(session, mock.base_url + "/messages", {**body, "max_tokens": 50})
    names = [n for n, _ in sse(raw)]
    assert names[0] == "message_start" and "message_stop" not in names
    error = chat("[[mock:fail=error200]]", stream=True, max_tokens=50)
    _, _, raw = await post(session, mock.base_url + "/messages", error)
    assert sse(raw)[-1][0] == "error"
    _, _, raw = await post(session, mock.base_url + "/chat/completions", error)
    assert "error" in json.loads(sse(raw)[-1][1])


async def test_sleep_directive_and_latency_delay_the_answer(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start(latency_ms=50)
    began = time.perf_counter()
    assert (
        await post(session, mock.base_url + "/chat/completions", chat("[[mock:sleep_ms=100]]"))
    )[0] == 200
    assert time.perf_counter() - began >= 0.15


async def test_latency_delays_requests_concurrently_without_blocking(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start(latency_ms=200)
    url = mock.base_url + "/chat/completions"
    began = time.perf_counter()
    replies = await asyncio.gather(*(post(session, url, chat(f"c{i}")) for i in range(20)))
    assert [r[0] for r in replies] == [200] * 20
    assert 0.2 <= time.perf_counter() - began < 1.5


async def test_malformed_streams_carry_a_non_json_event(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start()
    body = chat("[[mock:fail=malformed]]", stream=True, max_tokens=50)
    for route in ("/chat/completions", "/messages"):
        status, _, raw = await post(session, mock.base_url + route, body)
        assert status == 200 and sse(raw)[-1 if route == "/messages" else -2][1].startswith(
            "<html>"
        )


async def test_unknown_directive_is_a_400(start: Start, session: aiohttp.ClientSession) -> None:
    mock = await start()
    status, _, raw = await post(
        session, mock.base_url + "/chat/completions", chat("[[mock:explode]]")
    )
    assert status == 400 and "explode" in json.loads(raw)["error"]["message"]
    with pytest.raises(ValueError, match="fail"):
        parse_directives("[[mock:fail=nonsense]]")
    assert parse_directives("[[mock:fail=context]]").faults == (("context", None),)


async def outcomes(start: Start, session: aiohttp.ClientSession, seed: int) -> list[str]:
    mock = await start(fail_rate=0.5, seed=seed, slow_ms=1)
    seen = []
    for i in range(40):
        try:
            status, _, raw = await post(session, mock.base_url + "/chat/completions", chat(f"q{i}"))
        except aiohttp.ServerDisconnectedError:
            seen.append("drop")
            continue
        seen.append(f"{status}:{raw[:12]!r}")
    return seen


async def test_fail_rate_injects_failures_reproducibly_by_seed(
    start: Start, session: aiohttp.ClientSession
) -> None:
    first = await outcomes(start, session, seed=7)
    assert first == await outcomes(start, session, seed=7)
    assert first != await outcomes(start, session, seed=8)
    assert 5 < sum(1 for o in first if not o.startswith('200:b\'{"id"')) < 35


async def test_fault_mix_injects_each_kind_at_its_share_whatever_the_limits(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start(faults=(("429", 0.2), ("500", 0.1)), retry_after_s=1.5, seed=4)
    url = mock.base_url + "/chat/completions"
    statuses = [(await post(session, url, chat(f"q{i}")))[0] for i in range(400)]
    assert 0.14 < statuses.count(429) / 400 < 0.26
    assert 0.05 < statuses.count(500) / 400 < 0.15
    assert statuses.count(200) + statuses.count(429) + statuses.count(500) == 400
    assert mock.stats.rate_limited == 0  # none of them came from a limit
    status, headers, _ = await post(session, url, chat("[[mock:fail=429]]"))
    assert status == 429 and headers["Retry-After"] == "2" and headers["retry-after-ms"] == "1500"


async def test_hang_holds_the_request_then_answers(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start(hang_s=0.3)
    started = time.monotonic()
    status, _, _ = await post(session, mock.base_url + "/chat/completions",
                              chat("[[mock:fail=hangx1]]"))
    assert status == 200 and time.monotonic() - started >= 0.3
    assert mock.stats.injected == {"hang": 1}


def test_fault_mix_is_read_from_the_command_line_form() -> None:
    assert parse_fault_mix("429=0.05, 500=0.05,hang=0.01") == (
        ("429", 0.05), ("500", 0.05), ("hang", 0.01))
    assert parse_fault_mix("") == ()
    for bad in ("429", "429=often"):
        with pytest.raises(UsageError, match="KIND=SHARE"):
            parse_fault_mix(bad)
    for faults in ((("boom", 0.1),), (("429", 0.7), ("500", 0.7)), (("429", -0.1),)):
        with pytest.raises(UsageError):
            MockConfig(faults=faults)


# --- stats, auth, lifecycle -----------------------------------------------------------------


async def test_stats_endpoint_counts_requests_answers_and_double_answers(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start()
    url = mock.base_url + "/chat/completions"
    for text in ("a", "a", "b"):
        await post(session, url, chat(text))
    root = mock.base_url.removesuffix("/v1")
    async with session.get(root + "/_mock/stats") as response:
        stats = await response.json()
    assert stats["requests"] == 3 and stats["ok"] == 3 and stats["by_status"] == {"200": 3}
    assert stats["answered_twice"] == 1 and mock.stats.answered_twice() == 1
    assert stats["answered"][request_key(chat("a"))] == 2
    async with session.post(root + "/_mock/reset") as response:
        assert response.status == 200
    assert mock.stats.requests == 0 and mock.stats.answered == {}


async def test_api_key_is_required_when_configured(
    start: Start, session: aiohttp.ClientSession
) -> None:
    mock = await start(api_key="sk-secret")
    url = mock.base_url + "/chat/completions"
    status, _, raw = await post(session, url, chat())
    assert status == 401 and b"sk-secret" not in raw
    assert (await post(session, url, chat(), {"Authorization": "Bearer sk-secret"}))[0] == 200
    messages = mock.base_url + "/messages"
    assert (await post(session, messages, chat(max_tokens=5)))[0] == 401
    assert (await post(session, messages, chat(max_tokens=5), {"x-api-key": "sk-secret"}))[0] == 200


def test_config_refuses_non_loopback_hosts_and_unknown_values() -> None:
    for bad in ({"host": "0.0.0.0"}, {"shape": "nope"}, {"reasoning": "loud"}, {"fail_rate": 2}):
        with pytest.raises(UsageError):
            MockConfig(**bad)


def test_mock_thread_serves_synchronous_callers_and_changes_limits(mock_thread: MockThread) -> None:
    assert mock_thread.base_url.startswith("http://127.0.0.1:")
    mock_thread.set_limits(rpm=1)
    with openai.OpenAI(base_url=mock_thread.base_url, api_key="k", max_retries=0) as client:
        client.chat.completions.create(model="mock-1", messages=chat()["messages"])
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="mock-1", messages=chat("b")["messages"])
    snapshot = mock_thread.stats_snapshot()
    assert snapshot["by_status"] == {"200": 1, "429": 1} and snapshot["rate_limited"] == 1
    mock_thread.reset()
    assert mock_thread.stats_snapshot()["requests"] == 0


def test_serve_prints_the_base_url_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", "from batchrun.mock import MockConfig, serve; serve(MockConfig())"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", url)
        with openai.OpenAI(base_url=url, api_key="k", max_retries=0) as client:
            reply = client.chat.completions.create(model="mock-1", messages=chat()["messages"])
        assert reply.choices[0].message.content == expected_content(chat())
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
