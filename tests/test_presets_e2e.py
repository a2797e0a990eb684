"""Each seed provider's preset, end to end against the mock switched to that provider's shape.

The job names the preset and overrides only `base_url`, so the preset's wire format is what is
spoken; the mock answers in the provider's quirks (`batchrun.mock.shapes`), and every row must
come out with the mock's answer, its reasoning separated, and its usage.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import batchrun
from batchrun.errors import JobError
from batchrun.mock import MockConfig, MockThread, expected_answer
from batchrun.providers import get_format
from tests.conftest import toml_value, write_rows

TEXTS = ["你好", "The food was cold and late.", "Great service, would come back!", "It was fine."]


@dataclass(frozen=True)
class Seed:
    """A seed provider: its preset, the mock's shape of it, and what its usage reports."""

    preset: str
    model: str
    mock: MockConfig
    reasoning_tokens: int | None  # what the shape reports (SGLang: a top-level 0, always)
    cached_tokens: int | None


SEEDS = [
    # <think> inside content, reasoning_content null, usage.reasoning_tokens 0 at the top
    Seed("liandanxia", "Qwen3.5-35B-A3B", MockConfig(shape="liandanxia", reasoning="field"), 0,
         None),
    # the plain OpenAI shape, no "model" in the response
    Seed("relay", "gpt-4o-mini", MockConfig(shape="relay"), None, None),
    # reasoning_content, max_tokens required, usage in the last chunk only with include_usage
    Seed("jiekou", "qwen/qwen3-32b", MockConfig(shape="jiekou", reasoning="field"), None, None),
    # the Anthropic format: thinking blocks, cache counts reported as 0
    Seed("liandanxia-anthropic", "claude-sonnet-4-20250514", MockConfig(reasoning="field"), None,
         0),
]


def _value(value: Any) -> Any:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def write_preset_job(folder: Path, base_url: str, preset: str, variant: dict[str, Any]) -> Path:
    """A job whose provider is `preset` with only base_url overridden (no `api`: the preset's)."""
    lines = [
        'name = "preset-e2e"',
        "[input]", 'path = "rows.jsonl"', 'id = "id"', 'prompt = "text"',
        "[output]", 'path = "out"', "keep_raw = true",
        "[retry]", "max_attempts = 2", "backoff_initial_s = 0.01", "backoff_max_s = 0.02",
        "[[provider]]", 'name = "p"', f"preset = {toml_value(preset)}",
        f"base_url = {toml_value(base_url)}",
        "[[variant]]", 'name = "v"', 'provider = "p"',
        *(f"{k} = {toml_value(v)}" for k, v in variant.items()),
    ]
    path = folder / "job.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_rows(
    folder: Path, base_url: str, preset: str, variant: dict[str, Any]
) -> list[dict[str, Any]]:
    """Run TEXTS through one preset (base_url overridden) and return the result rows in order."""
    write_rows(folder / "rows.jsonl", [{"id": f"r{i}", "text": t} for i, t in enumerate(TEXTS)])
    job = write_preset_job(folder, base_url, preset, variant)
    summary = batchrun.run(job)
    frame = batchrun.read(folder / "out").sort_values("id")
    rows = [{k: _value(v) for k, v in r.items()} for r in frame.to_dict("records")]
    assert summary.ok == len(TEXTS), [r["error_message"] for r in rows]
    assert {r["provider"] for r in rows} == {"p"}
    return rows


def body_of(model: str, text: str, params: dict[str, Any]) -> dict[str, Any]:
    """The body as the mock sees it, which decides its answer."""
    return {"model": model, "messages": [{"role": "user", "content": text}], **params}


@pytest.fixture(params=SEEDS, ids=[s.preset for s in SEEDS])
def seed(request: pytest.FixtureRequest) -> Iterator[tuple[Seed, MockThread]]:
    with MockThread(request.param.mock) as server:
        yield request.param, server


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_seed_preset_gives_answer_reasoning_and_usage(
    tmp_path: Path, seed: tuple[Seed, MockThread], stream: bool
) -> None:
    spec, server = seed
    params = {"temperature": 0, "max_tokens": 1024}
    rows = run_rows(tmp_path, server.base_url, spec.preset,
                    {"model": spec.model, "stream": stream, "params": params})
    for row, text in zip(rows, TEXTS, strict=True):
        expected = expected_answer(body_of(spec.model, text, params), spec.mock)
        assert (row["content"], row["reasoning"]) == (expected.content, expected.reasoning)
        assert expected.reasoning is not None or spec.preset == "relay"
        assert row["finish_reason"] == ("end_turn" if "anthropic" in spec.preset else "stop")
        # Usage in a stream needs stream_options.include_usage, which batchrun always sets.
        assert (row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (
            expected.prompt_tokens, expected.completion_tokens, expected.total_tokens)
        assert row["reasoning_tokens"] == spec.reasoning_tokens
        assert row["cached_tokens"] == spec.cached_tokens
        assert row["response_id"]
        assert (row["attempts"], row["tool_calls"]) == (1, None)
    assert server.stats_snapshot()["requests"] == len(TEXTS)


def test_liandanxia_answers_carry_think_tags_that_the_rows_do_not(tmp_path: Path) -> None:
    spec = SEEDS[0]
    with MockThread(spec.mock) as server:
        rows = run_rows(tmp_path, server.base_url, spec.preset,
                        {"model": spec.model, "params": {"max_tokens": 1024}})
    for row in rows:
        message = json.loads(row["raw"])["choices"][0]["message"]
        assert message["content"].startswith("<think>") and message["reasoning_content"] is None
        assert "<think>" not in row["content"] and "</think>" not in row["content"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_relay_answers_without_a_model_field_are_parsed(tmp_path: Path, stream: bool) -> None:
    spec = SEEDS[1]
    with MockThread(spec.mock) as server:
        rows = run_rows(tmp_path, server.base_url, spec.preset,
                        {"model": spec.model, "stream": stream, "params": {"max_tokens": 64}})
    for row in rows:
        assert '"model"' not in row["raw"]
        assert row["content"] and row["model"] == spec.model


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_anthropic_thinking_and_tool_use_become_reasoning_and_openai_tool_calls(
    tmp_path: Path, stream: bool
) -> None:
    model = "claude-sonnet-4-20250514"
    params = {
        "max_tokens": 2048,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "tools": [
            {
                "name": "record_label",
                "description": "Record the sentiment label of a review.",
                "input_schema": {
                    "type": "object",
                    "properties": {"label": {"type": "string"}, "confidence": {"type": "number"}},
                    "required": ["label"],
                },
            }
        ],
    }
    # reasoning="none": the thinking comes from the request's `thinking`, not the mock's mode.
    with MockThread(MockConfig(reasoning="none")) as server:
        rows = run_rows(tmp_path, server.base_url, "liandanxia-anthropic",
                        {"model": model, "stream": stream, "params": params})
    for row, text in zip(rows, TEXTS, strict=True):
        expected = expected_answer(body_of(model, text, params))
        assert expected.reasoning is not None and expected.tool_arguments is not None
        assert (row["content"], row["reasoning"]) == (None, expected.reasoning)
        assert row["finish_reason"] == "tool_use"
        (call,) = json.loads(row["tool_calls"])
        assert call["id"] == f"toolu_{expected.digest[:24]}"
        assert (call["type"], call["function"]["name"]) == ("function", "record_label")
        assert isinstance(call["function"]["arguments"], str)
        assert json.loads(call["function"]["arguments"]) == json.loads(expected.tool_arguments)
        assert (row["prompt_tokens"], row["completion_tokens"]) == (
            expected.prompt_tokens, expected.completion_tokens)


@pytest.mark.parametrize(
    ("preset", "api", "url"),
    [
        ("liandanxia", "openai", "https://api.liandanxia.com/v1/chat/completions"),
        ("liandanxia-anthropic", "anthropic", "https://api.liandanxia.com/v1/messages"),
        ("jiekou", "openai", "https://api.jiekou.ai/openai/v1/chat/completions"),
    ],
)
def test_preset_fills_api_and_the_url_called(
    tmp_path: Path, preset: str, api: str, url: str
) -> None:
    path = write_preset_job(tmp_path, "https://example.invalid/v1", preset,
                            {"model": "m", "params": {"max_tokens": 8}})
    text = path.read_text().replace('base_url = "https://example.invalid/v1"\n', "")
    path.write_text(text)
    spec = batchrun.Job.from_toml(path).provider("p")
    assert (spec.api, get_format(spec.api).url(spec.base_url)) == (api, url)


def test_relay_preset_without_base_url_is_a_job_error_saying_so(tmp_path: Path) -> None:
    path = write_preset_job(tmp_path, "https://example.invalid/v1", "relay", {"model": "m"})
    path.write_text(path.read_text().replace('base_url = "https://example.invalid/v1"\n', ""))
    with pytest.raises(JobError, match="base_url"):
        batchrun.Job.from_toml(path)
