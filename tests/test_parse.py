"""The pure parsing layer: every conformance case, then the reasoning, usage and error rules."""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from batchrun.errors import (
    AuthenticationFailed,
    BadRequest,
    ContextTooLong,
    IncompleteStream,
    MalformedResponse,
    NotFound,
    Overloaded,
    ProviderError,
    RateLimited,
    RequestError,
    RetryableError,
    ServerError,
    TerminalError,
)
from batchrun.parse import (
    Answer,
    AnthropicStream,
    OpenAIStream,
    SSEDecoder,
    SSEEvent,
    Usage,
    anthropic_usage,
    error_from_body,
    openai_usage,
    parse_anthropic,
    parse_openai,
    split_think,
)
from batchrun.providers import get_format

CASES_DIR = Path(__file__).parent / "conformance" / "cases"
CASE_FILES = sorted(CASES_DIR.glob("*.json"))
Result = Answer | RequestError


def load_case(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return case


def chunkings(raw: bytes) -> Iterator[list[bytes]]:
    """The same bytes cut whole, byte by byte, and at random (fixed seeds) places."""
    yield [raw]
    yield [raw[i : i + 1] for i in range(len(raw))]
    for seed in range(4):
        rng = random.Random(seed)
        pieces, at = [], 0
        while at < len(raw):
            size = rng.randint(1, 64)
            pieces.append(raw[at : at + size])
            at += size
        yield pieces


def run_stream(api: str, pieces: list[bytes], reasoning: str = "auto") -> Result:
    decoder = SSEDecoder()
    stream = get_format(api).stream_parser(reasoning=reasoning)
    try:
        done = False
        for piece in pieces:
            for event in decoder.feed(piece):
                done = stream.feed(event) or done
        if not done:
            for event in decoder.close():
                stream.feed(event)
        return stream.finish()
    except RequestError as error:
        return error


def parse_body(api: str, body: object) -> Result:
    try:
        return get_format(api).parse_body(body, reasoning="auto")
    except RequestError as error:
        return error


def http_layer_error(status: int, body: object) -> RequestError:
    """What the HTTP layer makes of a non-200 status (see providers/http.py)."""
    refined = error_from_body(status, body)
    if status == 429:
        return RateLimited("")
    if status == 529:
        return Overloaded("")
    if status in (408, 409, 425) or status >= 500:
        return ServerError("")
    if status in (401, 403):
        return AuthenticationFailed("")
    if status == 404:
        return NotFound("")
    if isinstance(refined, TerminalError):
        return refined
    return BadRequest("")


def results_of(case: dict[str, Any]) -> Iterator[Result]:
    api = case["api"]
    if case["status"] != 200:
        body = case["body"] if "body" in case else case["body_text"]
        yield http_layer_error(case["status"], body)
        found = error_from_body(case["status"], body)
        assert found is not None, "error_from_body found no error object"
        yield found
    elif case["stream"]:
        for pieces in chunkings(case["sse"].encode()):
            yield run_stream(api, pieces)
    elif "body" in case:
        yield parse_body(api, case["body"])
    else:
        try:
            body = orjson.loads(case["body_text"])
        except orjson.JSONDecodeError:
            yield MalformedResponse("not JSON")
        else:
            yield parse_body(api, body)


def check(result: Result, expect: dict[str, Any]) -> None:
    if expect["outcome"] == "ok":
        assert isinstance(result, Answer), f"expected an answer, got {result!r}"
        for key in ("content", "reasoning", "refusal", "finish_reason", "tool_calls",
                    "response_id", "model"):
            if key in expect:
                assert getattr(result, key) == expect[key], key
        if "usage" in expect:
            assert dataclasses.asdict(result.usage) == expect["usage"]
        return
    assert isinstance(result, RequestError), f"expected {expect['error_type']}, got {result!r}"
    assert type(result).__name__ == expect["error_type"]
    kind = RetryableError if expect["outcome"] == "retry" else TerminalError
    assert isinstance(result, kind)
    if "error_contains" in expect and result.message:
        assert expect["error_contains"] in result.message


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_conformance_case(path: Path) -> None:
    case = load_case(path)
    for result in results_of(case):
        check(result, case["expect"])


@pytest.mark.parametrize("path", CASE_FILES, ids=[p.stem for p in CASE_FILES])
def test_case_file_follows_the_format(path: Path) -> None:
    case = load_case(path)
    assert case["name"] == path.stem
    assert case["source"].strip()
    assert case["api"] in ("openai", "anthropic", "responses")
    assert isinstance(case["status"], int) and isinstance(case["headers"], dict)
    payloads = [key for key in ("body", "body_text", "sse") if key in case]
    assert len(payloads) == 1
    assert case["stream"] == (payloads == ["sse"])
    expect = case["expect"]
    assert expect["outcome"] in ("ok", "retry", "error")
    if expect["outcome"] == "ok":
        assert set(expect["usage"]) == {f.name for f in dataclasses.fields(Usage)}
    else:
        assert expect["error_type"]


def test_the_suite_covers_at_least_45_cases_from_every_source() -> None:
    names = [p.stem for p in CASE_FILES]
    assert len(names) >= 45
    for prefix in (
        "liandanxia",
        "relay",
        "jiekou",
        "openai",
        "anthropic",
        "deepseek",
        "vllm",
        "sglang",
        "openrouter",
        "edge",
    ):
        assert any(name.startswith(prefix + "_") for name in names), prefix


# ------------------------------------------------------------------------------ reasoning


def openai_body(content: Any, **message: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **message},
                "finish_reason": "stop",
            }
        ],
    }


def test_think_block_is_split_out_of_the_content() -> None:
    answer = parse_openai(openai_body("<think>\nStep one.\nStep two.\n</think>\n\nThe answer."))
    assert (answer.content, answer.reasoning) == ("The answer.", "Step one.\nStep two.")


def test_only_a_closing_tag_makes_everything_before_it_reasoning() -> None:
    assert split_think("thinking here\n</think>\n\nanswer") == ("answer", "thinking here")


def test_only_an_opening_tag_means_the_answer_was_cut_off_while_thinking() -> None:
    assert split_think("<think>\nstill thinking when max_tokens hit") == (
        None,
        "still thinking when max_tokens hit",
    )


def test_empty_think_block_gives_no_reasoning() -> None:
    assert split_think("<think>\n\n</think>\n\nParis.") == ("Paris.", None)


def test_text_before_a_think_block_is_kept() -> None:
    assert split_think("Note: <think>why</think> done") == ("Note:\n\ndone", "why")


def test_text_without_tags_is_untouched() -> None:
    assert split_think("  plain\n") == ("  plain\n", None)


def test_reasoning_field_wins_and_tags_are_still_removed() -> None:
    answer = parse_openai(
        openai_body("<think>tagged</think>\n\nAnswer.", reasoning_content="from the field")
    )
    assert (answer.content, answer.reasoning) == ("Answer.", "from the field")


def test_reasoning_field_named_reasoning_is_read_too() -> None:
    answer = parse_openai(openai_body("Answer.", reasoning="\nthe why\n"))
    assert (answer.content, answer.reasoning) == ("Answer.", "the why")


def test_whitespace_separating_a_reasoning_field_from_the_answer_is_stripped() -> None:
    answer = parse_openai(openai_body("\n\nAnswer.\n", reasoning_content="why"))
    assert answer.content == "Answer.\n"


def test_an_answer_without_reasoning_keeps_its_whitespace() -> None:
    answer = parse_openai(openai_body("\n\nHello there.", reasoning_content=None))
    assert (answer.content, answer.reasoning) == ("\n\nHello there.", None)


def test_blank_reasoning_field_counts_as_none() -> None:
    answer = parse_openai(openai_body("\n\nHello.", reasoning_content="  \n"))
    assert (answer.content, answer.reasoning) == ("\n\nHello.", None)


def test_empty_content_becomes_none() -> None:
    assert parse_openai(openai_body("")).content is None
    assert parse_openai(openai_body("<think>only thoughts</think>\n")).content is None


def test_reasoning_none_extracts_nothing_and_leaves_content_untouched() -> None:
    raw = "<think>\nwhy\n</think>\n\nAnswer."
    answer = parse_openai(openai_body(raw, reasoning_content="field"), reasoning="none")
    assert (answer.content, answer.reasoning) == (raw, None)
    body = {"content": [{"type": "thinking", "thinking": "why"}, {"type": "text", "text": "A"}]}
    assert parse_anthropic(body, reasoning="none").reasoning is None


def test_content_given_as_a_list_of_parts_is_joined() -> None:
    parts = [{"type": "text", "text": "Hello"}, {"type": "text", "text": " world"}]
    assert parse_openai(openai_body(parts)).content == "Hello world"


def test_anthropic_thinking_blocks_are_the_reasoning() -> None:
    body = {
        "content": [
            {"type": "thinking", "thinking": "first", "signature": "s"},
            {"type": "redacted_thinking", "data": "xyz"},
            {"type": "thinking", "thinking": "second", "signature": "s"},
            {"type": "text", "text": "An"},
            {"type": "text", "text": "swer"},
        ]
    }
    answer = parse_anthropic(body)
    assert (answer.content, answer.reasoning) == ("Answer", "first\n\nsecond")


def test_anthropic_redacted_thinking_alone_gives_no_reasoning() -> None:
    blocks = [{"type": "redacted_thinking", "data": "xyz"}, {"type": "text", "text": "A"}]
    answer = parse_anthropic({"content": blocks})
    assert (answer.content, answer.reasoning) == ("A", None)


def test_anthropic_text_with_think_tags_follows_the_same_rule() -> None:
    body = {"content": [{"type": "text", "text": "<think>why</think>\n\nAnswer"}]}
    answer = parse_anthropic(body)
    assert (answer.content, answer.reasoning) == ("Answer", "why")


def stream_of(*deltas: dict[str, Any], finish: str = "stop") -> list[SSEEvent]:
    chunks = [
        {"id": "c", "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas
    ]
    chunks.append({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    return [SSEEvent(None, orjson.dumps(c).decode()) for c in chunks] + [SSEEvent(None, "[DONE]")]


def feed_all(stream: OpenAIStream | AnthropicStream, events: list[SSEEvent]) -> Answer:
    for event in events:
        stream.feed(event)
    return stream.finish()


def test_stream_finds_tags_split_at_every_position() -> None:
    text = "<think>\nA short thought.\n</think>\n\nThe answer."
    expected = parse_openai(openai_body(text))
    for cut in range(len(text) + 1):
        events = stream_of({"content": text[:cut]}, {"content": text[cut:]})
        answer = feed_all(OpenAIStream(), events)
        assert (answer.content, answer.reasoning) == (expected.content, expected.reasoning), cut


def test_stream_reasoning_deltas_are_joined_and_the_answer_stripped() -> None:
    events = stream_of(
        {"reasoning_content": "a"}, {"reasoning_content": "b\n"}, {"content": "\n\nAnswer"}
    )
    answer = feed_all(OpenAIStream(), events)
    assert (answer.content, answer.reasoning) == ("Answer", "ab")


def test_stream_with_reasoning_none_keeps_tags_in_content() -> None:
    events = stream_of({"content": "<think>x</think>"}, {"content": "y"})
    answer = feed_all(OpenAIStream(reasoning="none"), events)
    assert (answer.content, answer.reasoning) == ("<think>x</think>y", None)


# ---------------------------------------------------------------------------------- usage


def test_missing_usage_stays_none_never_zero() -> None:
    assert parse_openai(openai_body("x")).usage == Usage()
    assert openai_usage(None) == Usage()
    assert anthropic_usage({}) == Usage()


def test_total_is_as_reported_and_computed_only_when_absent() -> None:
    assert openai_usage({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 10}) == Usage(
        3, 4, None, None, 10
    )
    assert openai_usage({"prompt_tokens": 3, "completion_tokens": 4}).total_tokens == 7
    assert openai_usage({"prompt_tokens": 3}).total_tokens is None


def test_prompt_tokens_details_null_does_not_break_usage() -> None:
    usage = openai_usage(
        {
            "prompt_tokens": 11,
            "completion_tokens": 178,
            "total_tokens": 189,
            "prompt_tokens_details": None,
            "reasoning_tokens": 0,
        }
    )
    assert usage == Usage(11, 178, 0, None, 189)


def test_reasoning_tokens_from_details_win_over_the_top_level_field() -> None:
    usage = openai_usage(
        {"completion_tokens_details": {"reasoning_tokens": 5}, "reasoning_tokens": 0}
    )
    assert usage.reasoning_tokens == 5
    usage = openai_usage({"completion_tokens_details": None, "reasoning_tokens": 7})
    assert usage.reasoning_tokens == 7


def test_cached_tokens_from_details_or_deepseek_cache_hits() -> None:
    assert openai_usage({"prompt_tokens_details": {"cached_tokens": 64}}).cached_tokens == 64
    assert openai_usage({"prompt_cache_hit_tokens": 32}).cached_tokens == 32
    assert (
        openai_usage(
            {"prompt_tokens_details": {"cached_tokens": 0}, "prompt_cache_hit_tokens": 0}
        ).cached_tokens
        == 0
    )


def test_anthropic_prompt_counts_cache_creation_and_reads() -> None:
    usage = anthropic_usage(
        {
            "input_tokens": 50,
            "cache_creation_input_tokens": 1000,
            "cache_read_input_tokens": 2000,
            "output_tokens": 10,
        }
    )
    assert usage == Usage(3050, 10, None, 2000, 3060)


def test_anthropic_usage_without_input_counts_has_no_prompt_or_total() -> None:
    assert anthropic_usage({"output_tokens": 9}) == Usage(None, 9, None, None, None)


def test_stream_usage_ignores_null_usage_and_keeps_the_last_report() -> None:
    events = [
        SSEEvent(None, '{"id":"c","choices":[{"index":0,"delta":{"content":"a"}}],"usage":null}'),
        SSEEvent(None, '{"id":"c","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}'),
        SSEEvent(None, '{"id":"c","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}'),
        SSEEvent(None, "[DONE]"),
    ]
    assert feed_all(OpenAIStream(), events).usage == Usage(1, 2, None, None, 3)


# --------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (400, {"code": "context_length_exceeded", "message": "m"}, ContextTooLong),
        (None, {"type": "overloaded_error", "message": "Overloaded"}, Overloaded),
        (None, {"type": "rate_limit_error", "message": "slow down"}, RateLimited),
        (None, {"code": "rate_limit_exceeded", "message": "slow down"}, RateLimited),
        (200, {"code": 429, "message": "slow down"}, RateLimited),
        (None, {"type": "invalid_request_error", "message": "bad"}, BadRequest),
        (None, {"type": "authentication_error", "message": "key"}, AuthenticationFailed),
        (None, {"type": "permission_error", "message": "no"}, AuthenticationFailed),
        (None, {"type": "api_error", "message": "oops"}, ProviderError),
        (None, {"code": 502, "message": "upstream"}, ProviderError),
        (500, {"type": "api_error", "message": "oops"}, ServerError),
        (422, {"message": "unprocessable"}, BadRequest),
        (
            400,
            {"type": "invalid_request_error", "message": "prompt is too long: 9 > 8"},
            ContextTooLong,
        ),
    ],
)
def test_error_class_is_decided_by_code_type_then_status(
    status: int | None, error: dict[str, Any], expected: type[RequestError]
) -> None:
    found = error_from_body(status, {"error": error})
    assert type(found) is expected


def test_context_phrase_in_a_rate_limit_message_stays_a_rate_limit() -> None:
    body = {"error": {"type": "rate_limit_error", "message": "context length quota exceeded"}}
    assert type(error_from_body(429, body)) is RateLimited


def test_error_message_keeps_the_providers_own_message() -> None:
    body = {
        "error": {
            "message": "This model's maximum context length is 8192 tokens.",
            "code": "context_length_exceeded",
        }
    }
    found = error_from_body(400, body)
    assert found is not None
    assert "This model's maximum context length is 8192 tokens." in found.message
    assert found.status == 400


def test_error_from_body_reads_vllm_top_level_errors_and_raw_bytes() -> None:
    raw = b'{"object":"error","message":"The model `x` does not exist.","type":"NotFoundError"}'
    assert type(error_from_body(404, raw)) is NotFound
    assert type(error_from_body(None, {"error": "Unauthorized"})) is ProviderError
    assert type(error_from_body(503, {"detail": "Service Unavailable"})) is ServerError


def test_error_from_body_finds_nothing_in_normal_or_unreadable_bodies() -> None:
    assert error_from_body(200, openai_body("hi")) is None
    assert error_from_body(None, {"error": None, "choices": []}) is None
    assert error_from_body(502, b"<html>Bad Gateway</html>") is None
    assert error_from_body(500, None) is None
    assert error_from_body(200, {"detail": "not an error in a 200"}) is None


def test_error_object_in_a_200_body_raises_its_class() -> None:
    with pytest.raises(ContextTooLong):
        parse_openai({"error": {"code": "context_length_exceeded", "message": "too long"}})
    with pytest.raises(Overloaded):
        parse_anthropic({"type": "error", "error": {"type": "overloaded_error", "message": "O"}})


@pytest.mark.parametrize(
    "body",
    [None, [], "text", 3, {"choices": []}, {"choices": [{}]}, {"choices": ["x"]}, {"choices": "x"}],
)
def test_body_without_a_usable_choice_is_malformed(body: object) -> None:
    with pytest.raises(MalformedResponse):
        parse_openai(body)


@pytest.mark.parametrize("body", [None, [], {"content": "text"}, {"id": "msg"}])
def test_anthropic_body_without_a_content_list_is_malformed(body: object) -> None:
    with pytest.raises(MalformedResponse):
        parse_anthropic(body)


def test_finish_reason_error_in_a_body_is_a_provider_error() -> None:
    body = openai_body("partial")
    body["choices"][0]["finish_reason"] = "error"
    with pytest.raises(ProviderError):
        parse_openai(body)


# -------------------------------------------------------------------------------- streams


def test_openai_stream_without_done_is_incomplete() -> None:
    stream = OpenAIStream()
    for event in stream_of({"content": "hi"})[:-1]:
        assert stream.feed(event) is False
    with pytest.raises(IncompleteStream):
        stream.finish()


def test_feed_reports_completion_and_ignores_what_follows() -> None:
    stream = OpenAIStream()
    results = [stream.feed(event) for event in stream_of({"content": "hi"})]
    assert results == [False, False, True]
    assert stream.feed(SSEEvent(None, "garbage that would not parse")) is True
    assert stream.finish().content == "hi"


def test_anthropic_stream_completes_at_message_stop_only() -> None:
    stream = AnthropicStream()
    assert stream.feed(SSEEvent("ping", '{"type":"ping"}')) is False
    with pytest.raises(IncompleteStream):
        stream.finish()
    assert stream.feed(SSEEvent("message_stop", '{"type":"message_stop"}')) is True
    assert stream.finish() == Answer(content=None)


def test_anthropic_stream_tolerates_a_delta_without_its_block_start() -> None:
    stream = AnthropicStream()
    stream.feed(
        SSEEvent(
            None,
            '{"type":"content_block_delta","index":0,'
            '"delta":{"type":"thinking_delta","thinking":"hm"}}',
        )
    )
    stream.feed(
        SSEEvent(
            None,
            '{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"ok"}}',
        )
    )
    stream.feed(SSEEvent(None, '{"type":"message_stop"}'))
    answer = stream.finish()
    assert (answer.content, answer.reasoning) == ("ok", "hm")


def test_stream_event_with_an_unexpected_shape_is_malformed() -> None:
    with pytest.raises(MalformedResponse):
        OpenAIStream().feed(SSEEvent(None, '{"choices":["not an object"]}'))
    with pytest.raises(MalformedResponse):
        OpenAIStream().feed(SSEEvent(None, "[1, 2]"))
    with pytest.raises(MalformedResponse):
        AnthropicStream().feed(SSEEvent(None, '{"type":"content_block_delta","delta":"x"}'))


def test_openai_stream_error_event_raises_by_its_type() -> None:
    stream = OpenAIStream()
    event = SSEEvent(None, '{"error":{"type":"rate_limit_error","message":"slow"}}')
    with pytest.raises(RateLimited):
        stream.feed(event)


def test_tool_call_deltas_without_index_are_assembled_by_id() -> None:
    events = stream_of(
        {"tool_calls": [{"id": "a", "function": {"name": "f", "arguments": '{"x":'}}]},
        {"tool_calls": [{"function": {"arguments": "1}"}}]},
        {"tool_calls": [{"id": "b", "function": {"name": "g", "arguments": ""}}]},
        finish="tool_calls",
    )
    calls = feed_all(OpenAIStream(), events).tool_calls
    assert calls == [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}},
        {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]


def test_tool_name_repeated_in_every_delta_is_not_doubled() -> None:
    events = stream_of(
        {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "get", "arguments": "{"}}]},
        {"tool_calls": [{"index": 0, "id": "a", "function": {"name": "get", "arguments": "}"}}]},
    )
    calls = feed_all(OpenAIStream(), events).tool_calls
    expected = {"id": "a", "type": "function", "function": {"name": "get", "arguments": "{}"}}
    assert calls == [expected]


def test_tool_arguments_given_as_an_object_become_json_text() -> None:
    body = openai_body(
        None, tool_calls=[{"id": "t", "function": {"name": "f", "arguments": {"a": 1}}}]
    )
    calls = parse_openai(body).tool_calls
    assert calls == [
        {"id": "t", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
    ]


def test_only_the_first_choice_is_read_with_the_whole_usage() -> None:
    body = {
        "id": "r",
        "choices": [
            {"index": 0, "message": {"content": "A"}, "finish_reason": "stop"},
            {"index": 1, "message": {"content": "B"}, "finish_reason": "length"},
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 6},
    }
    answer = parse_openai(body)
    assert (answer.content, answer.finish_reason, answer.usage.total_tokens) == ("A", "stop", 11)
    events = [
        SSEEvent(None, '{"id":"r","choices":[{"index":1,"delta":{"content":"B"}}]}'),
        SSEEvent(None, '{"id":"r","choices":[{"index":0,"delta":{"content":"A"}}]}'),
        SSEEvent(None, "[DONE]"),
    ]
    stream = OpenAIStream()
    for event in events:
        stream.feed(event)
    assert stream.finish().content == "A"
