"""One canonical body, translated: one sweep sent to OpenAI, Anthropic and Responses formats."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

import batchrun
from batchrun.errors import JobError
from batchrun.job import Job
from batchrun.providers import get_format
from tests.conftest import toml_value, write_rows
from tests.replay import CASES_DIR, ReplayServer

APIS = ("openai", "anthropic", "responses")
SCHEMA = {"type": "object", "properties": {"label": {"enum": ["cat", "dog"]}},
          "required": ["label"], "additionalProperties": False}
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "description": "The weather in a city.", "strict": True,
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                "required": ["city"], "additionalProperties": False}},
}
# Where the mapped shapes come from: the Messages API reference (tools, tool_choice,
# stop_sequences, image sources) and its structured-outputs guide (output_config.format).
ANTHROPIC_WEATHER = {
    "name": "get_weather", "description": "The weather in a city.", "strict": True,
    "input_schema": WEATHER["function"]["parameters"],
}


def wire(api: str, body: dict[str, Any]) -> dict[str, Any]:
    return get_format(api).wire_body(body)


def canonical(**params: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **params}


@pytest.mark.parametrize(("chat", "anthropic"), [
    ("auto", {"type": "auto"}),
    ("required", {"type": "any"}),
    ("none", {"type": "none"}),
    ({"type": "function", "function": {"name": "get_weather"}},
     {"type": "tool", "name": "get_weather"}),
])
def test_each_chat_tool_choice_has_its_anthropic_form(chat: Any, anthropic: Any) -> None:
    sent = wire("anthropic", canonical(tools=[WEATHER], tool_choice=chat))
    assert sent["tools"] == [ANTHROPIC_WEATHER]
    assert sent["tool_choice"] == anthropic


def test_stop_becomes_stop_sequences_and_parallel_tool_calls_moves_into_tool_choice() -> None:
    assert wire("anthropic", canonical(stop="\n\n"))["stop_sequences"] == ["\n\n"]
    sent = wire("anthropic", canonical(stop=["END", "###"], parallel_tool_calls=False,
                                       tools=[WEATHER], tool_choice="required"))
    assert "stop" not in sent and "parallel_tool_calls" not in sent
    assert sent["stop_sequences"] == ["END", "###"]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    allowed = wire("anthropic", canonical(parallel_tool_calls=True))
    assert "parallel_tool_calls" not in allowed and "tool_choice" not in allowed


def test_a_json_schema_response_format_becomes_anthropic_output_config() -> None:
    response_format = {"type": "json_schema",
                       "json_schema": {"name": "label", "strict": True, "schema": SCHEMA}}
    sent = wire("anthropic", canonical(response_format=response_format,
                                       output_config={"effort": "low"}))
    assert "response_format" not in sent
    assert sent["output_config"] == {"effort": "low",
                                     "format": {"type": "json_schema", "schema": SCHEMA}}
    assert "response_format" not in wire("anthropic", canonical(response_format={"type": "text"}))


def test_bodies_already_in_anthropics_shapes_and_other_params_pass_through_unchanged() -> None:
    native = canonical(
        tools=[ANTHROPIC_WEATHER, {"type": "web_search_20250305", "name": "web_search"}],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        stop_sequences=["END"],
        output_config={"format": {"type": "json_schema", "schema": SCHEMA}},
        temperature=0.2, top_k=5, metadata={"user_id": "u1"}, thinking={"type": "disabled"},
        max_tokens=10,
    )
    native["messages"] = [{"role": "user", "content": [
        {"type": "text", "text": "hi"},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
    ]}]
    assert wire("anthropic", native) == native


def test_responses_keep_native_shapes_and_other_params_too() -> None:
    native = canonical(tools=[{"type": "function", "name": "f", "parameters": {}}],
                       tool_choice={"type": "function", "name": "f"},
                       text={"format": {"type": "json_schema", "name": "x", "schema": SCHEMA}},
                       temperature=0.5, top_p=0.9, store=True)
    sent = wire("responses", native)
    for key in ("tools", "tool_choice", "text", "temperature", "top_p", "store"):
        assert sent[key] == native[key]


def write_job(folder: Path, base_url: str, params: dict[str, dict[str, Any]],
              parse: dict[str, Any] | None = None) -> Path:
    """A job sweeping rows.jsonl (with an image column) over one provider per wire format."""
    lines = ['name = "translation"', "", "[input]", 'path = "rows.jsonl"', 'id = "id"',
             'prompt = "text"', 'images = "img"', "", "[output]", 'path = "out"',
             "", "[retry]", "max_attempts = 2", "backoff_initial_s = 0.01",
             "backoff_max_s = 0.05"]
    if parse:
        lines += ["", "[parse]", *(f"{k} = {toml_value(v)}" for k, v in parse.items())]
    for api in APIS:
        lines += ["", "[[provider]]", f'name = "{api}"', f'api = "{api}"',
                  f'base_url = "{base_url}"']
    for api, extra in params.items():
        lines += ["", "[[variant]]", f'name = "{api}"', f'provider = "{api}"', 'model = "m"',
                  f"params = {toml_value({'max_tokens': 64, **extra})}"]
    path = folder / "job.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def text_answer(path: str, text: str) -> dict[str, Any]:
    """A plain answer holding `text`, shaped as each API documents its response."""
    usage = {"input_tokens": 5, "output_tokens": 3}
    if path.endswith("/messages"):
        return {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                "usage": usage}
    if path.endswith("/responses"):
        return {"id": "resp_1", "object": "response", "status": "completed", "model": "m",
                "output": [{"type": "message", "role": "assistant", "status": "completed",
                            "content": [{"type": "output_text", "text": text,
                                         "annotations": []}]}],
                "usage": {**usage, "total_tokens": 8}}
    return {"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}


async def json_label(request: web.Request, attempt: int) -> web.Response:
    return web.json_response(text_answer(request.path, '{"label": "cat"}'))


TOOL_CASES = {"openai": "relay_tool_calls", "anthropic": "anthropic_tool_use",
              "responses": "responses_function_call"}
PATHS = {"openai": "/v1/chat/completions", "anthropic": "/v1/messages",
         "responses": "/v1/responses"}


def case(name: str) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads((CASES_DIR / f"{name}.json").read_bytes())
    return data


async def tool_call(request: web.Request, attempt: int) -> web.Response:
    """Each format's documented tool-call answer (the conformance cases)."""
    api = next(api for api, path in PATHS.items() if path == request.path)
    return web.json_response(case(TOOL_CASES[api])["body"])


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer() as replay:
        yield replay


def sent(server: ReplayServer, name: str) -> dict[str, dict[str, Any]]:
    return {seen.path.rsplit("/", 1)[-1]: seen.body for seen in server.received[name]}


def test_one_sweep_sends_tools_tool_choice_stop_and_images_in_each_formats_shape(
    tmp_path: Path, server: ReplayServer
) -> None:
    gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"  # the header is all batchrun reads
    (tmp_path / "cat.gif").write_bytes(gif)
    encoded = base64.b64encode(gif).decode()
    write_rows(tmp_path / "rows.jsonl", [{"id": "a", "text": "weather?", "img": "cat.gif"}])
    server.add("weather?", tool_call)
    shared = {"tools": [WEATHER], "tool_choice": {"type": "function",
                                                  "function": {"name": "get_weather"}},
              "temperature": 0.3}
    job = write_job(tmp_path, server.base_url, {
        "openai": {**shared, "stop": ["END"]},
        "anthropic": {**shared, "stop": ["END"]},
        "responses": shared,  # the Responses API has no stop sequences (refused at load)
    })

    summary = batchrun.run(job)

    assert (summary.total, summary.ok) == (3, 3)
    bodies = sent(server, "weather?")
    chat = bodies["completions"]
    assert chat["tools"] == [WEATHER] and chat["stop"] == ["END"]
    assert chat["tool_choice"] == shared["tool_choice"]
    anthropic = bodies["messages"]
    assert anthropic["tools"] == [ANTHROPIC_WEATHER]
    assert anthropic["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert anthropic["stop_sequences"] == ["END"] and "stop" not in anthropic
    assert anthropic["messages"][0]["content"][1] == {"type": "image", "source": {
        "type": "base64", "media_type": "image/gif", "data": encoded}}
    responses = bodies["responses"]
    assert responses["tools"] == [{"type": "function", **WEATHER["function"]}]
    assert responses["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert responses["input"][0]["content"][1] == {
        "type": "input_image", "image_url": f"data:image/gif;base64,{encoded}"}
    assert {body["temperature"] for body in bodies.values()} == {0.3}
    # And back: every format's tool call lands in the one chat-shaped tool_calls column.
    frame = batchrun.read(tmp_path / "out").set_index("variant")
    for api in APIS:
        calls = json.loads(frame.loc[api, "tool_calls"])
        assert calls == case(TOOL_CASES[api])["expect"]["tool_calls"]


def test_a_json_schema_goes_to_each_format_and_every_answer_parses_the_same(
    tmp_path: Path, server: ReplayServer
) -> None:
    write_rows(tmp_path / "rows.jsonl", [{"id": "a", "text": "label it", "img": None}])
    server.add("label it", json_label)
    response_format = {"type": "json_schema",
                       "json_schema": {"name": "label", "strict": True, "schema": SCHEMA}}
    job = write_job(tmp_path, server.base_url,
                    {api: {"response_format": response_format} for api in APIS},
                    parse={"json": True, "fields": ["label"]})

    summary = batchrun.run(job)

    assert (summary.total, summary.ok) == (3, 3)
    bodies = sent(server, "label it")
    assert bodies["completions"]["response_format"] == response_format
    assert bodies["messages"]["output_config"] == {
        "format": {"type": "json_schema", "schema": SCHEMA}}
    assert "response_format" not in bodies["messages"]
    assert bodies["responses"]["text"] == {"format": {"type": "json_schema", "name": "label",
                                                      "strict": True, "schema": SCHEMA}}
    frame = batchrun.read(tmp_path / "out")
    assert sorted(frame.variant) == sorted(APIS)
    assert set(frame.label) == {"cat"}


def test_what_a_format_cannot_send_is_refused_when_the_job_loads(tmp_path: Path) -> None:
    write_rows(tmp_path / "rows.jsonl", [{"id": "a", "text": "t", "img": None}])
    with pytest.raises(JobError, match=r'provider "responses" \(api = "responses"\): '
                                       r"params.stop cannot be sent.*no stop sequences"):
        Job.from_toml(write_job(tmp_path, "http://127.0.0.1:9/v1",
                                {"responses": {"stop": "\n"}}))
    with pytest.raises(JobError, match=r'provider "anthropic" \(api = "anthropic"\): '
                                       r'.*"json_object" \} has no Anthropic equivalent'):
        Job.from_toml(write_job(tmp_path, "http://127.0.0.1:9/v1",
                                {"anthropic": {"response_format": {"type": "json_object"}}}))
    # The same params are fine where they translate.
    Job.from_toml(write_job(tmp_path, "http://127.0.0.1:9/v1", {
        "openai": {"stop": "\n", "response_format": {"type": "json_object"}},
        "anthropic": {"stop": "\n"},
    }))
