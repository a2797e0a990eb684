"""The mock serves the Responses API well enough for the official SDK, and for batchrun runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

import batchrun
from batchrun.mock import MockThread, expected_content
from tests.conftest import write_job, write_rows


@pytest.fixture
def client(mock: MockThread) -> Iterator[openai.OpenAI]:
    """The official SDK pointed at the mock (closed after the test: no socket left open)."""
    with openai.OpenAI(base_url=mock.base_url, api_key="unused", max_retries=0) as sdk:
        yield sdk


def test_the_official_sdk_reads_a_mock_response(client: openai.OpenAI) -> None:
    reply = client.responses.create(model="mock-1", input="Label: it works well",
                                    max_output_tokens=64)
    assert reply.status == "completed"
    body = {"model": "mock-1", "messages": [{"role": "user", "content": "Label: it works well"}],
            "max_tokens": 64}
    assert reply.output_text == expected_content(body)
    assert reply.usage is not None and reply.usage.total_tokens > 0


def test_the_official_sdk_reads_a_mock_stream_with_reasoning(client: openai.OpenAI) -> None:
    kinds, text, summary = [], [], []
    with client.responses.stream(model="mock-reasoner-1",
                                 input=[{"role": "user", "content": "[[mock:think]] hello"}],
                                 max_output_tokens=256) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                text.append(event.delta)
            elif event.type == "response.reasoning_summary_text.delta":
                summary.append(event.delta)
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "".join(text) == final.output_text and summary
    assert [item.type for item in final.output] == ["reasoning", "message"]


def test_a_max_output_tokens_cut_is_an_incomplete_response(client: openai.OpenAI) -> None:
    reply = client.responses.create(model="mock-1", input="a long answer please",
                                    max_output_tokens=1)
    assert reply.status == "incomplete"
    assert reply.incomplete_details is not None
    assert reply.incomplete_details.reason == "max_output_tokens"


def test_batchrun_runs_a_responses_job_against_the_mock(tmp_path: Path, mock: MockThread) -> None:
    write_rows(tmp_path / "rows.jsonl", [{"id": f"r{i}", "text": f"review {i}"} for i in range(6)])
    job = write_job(tmp_path, base_url=mock.base_url, provider={"api": "responses"}, variants=[
        {"name": "plain", "model": "mock-1", "params": {"max_tokens": 64}},
        {"name": "streamed", "model": "mock-1", "stream": True, "params": {"max_tokens": 64}}])
    summary = batchrun.run(job)
    assert (summary.ok, summary.error) == (12, 0)
    frame = batchrun.read(tmp_path / "out")
    for row in frame.itertuples():
        body = {"model": "mock-1", "max_tokens": 64,
                "messages": [{"role": "user", "content": f"review {row.id[1:]}"}]}
        assert row.content == expected_content(body), row.variant
        assert row.finish_reason == "stop" and row.total_tokens > 0


def test_the_official_sdk_reads_a_mock_tool_call_streamed_and_not(client: openai.OpenAI) -> None:
    tools = [{"type": "function", "name": "get_weather", "description": "weather",
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    reply = client.responses.create(model="mock-1", input="Paris", tools=tools)
    (call,) = [item for item in reply.output if item.type == "function_call"]
    with client.responses.stream(model="mock-1", input="Paris",
                                 tools=tools) as stream:
        final = stream.get_final_response()
    (streamed,) = [item for item in final.output if item.type == "function_call"]
    assert (streamed.name, streamed.arguments) == (call.name, call.arguments)
