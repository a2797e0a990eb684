"""Every conformance case through a real `batchrun run`, replayed by a loopback server.

One run per wire format and stream mode; each input row is a case name, which the replay server
reads from the prompt to pick the recorded answer. The per-case tests then check that case's
result row against its `expect` (see `tests/conformance/README.md`).

A case that speaks to the rate limiter (a 429, rate-limit headers, Retry-After) gets a run of its
own: the limiter rightly obeys what one provider says, and in a shared run that would pace every
other case by a limit recorded from some other provider.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

import batchrun
from batchrun import errors
from tests.conftest import write_job, write_rows
from tests.replay import ReplayServer, load_cases

CASES = load_cases()
MAX_ATTEMPTS = 2
KEY_ENV, KEY = "BATCHRUN_REPLAY_KEY", "sk-replay-0123456789abcdef"
RATE_HEADERS = ("x-ratelimit-", "anthropic-ratelimit-", "retry-after")
USAGE_COLUMNS = (
    "prompt_tokens", "completion_tokens", "reasoning_tokens", "cached_tokens", "total_tokens"
)


def _value(value: Any) -> Any:
    """A cell as a plain Python value: missing (None, NaN, NA) becomes None."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value


def _refuses_the_account(name: str) -> bool:
    """Whether a case is an account refusal: such a request is left pending, not recorded."""
    expect = CASES[name]["expect"]
    kind = getattr(errors, expect.get("error_type", ""), None)
    return isinstance(kind, type) and issubclass(kind, errors.AccountRefused)


def _run_of(name: str) -> str:
    """The run of a case: its own when it speaks to the rate limiter or refuses the account
    (a few refusals in a row stop the provider), else the shared one."""
    case = CASES[name]
    limiting = case["status"] == 429 or any(
        header.lower().startswith(RATE_HEADERS) for header in case["headers"]
    )
    return name if limiting or _refuses_the_account(name) else ""


class Replayed:
    """The outcome of the runs: each case's result row, and what the replay server saw."""

    def __init__(self, rows: dict[str, dict[str, Any]], server: ReplayServer) -> None:
        self.rows = rows
        self.requests = dict(server.requests)
        self.received = dict(server.received)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replayed]:
    groups: dict[tuple[str, bool, str], list[str]] = {}
    for name, case in CASES.items():
        groups.setdefault((case["api"], case["stream"], _run_of(name)), []).append(name)
    rows: dict[str, dict[str, Any]] = {}
    with ReplayServer(CASES) as server, pytest.MonkeyPatch.context() as env:
        env.setenv(KEY_ENV, KEY)
        for (api, streamed, _), names in sorted(groups.items()):
            folder = tmp_path_factory.mktemp(f"{api}-{'stream' if streamed else 'plain'}")
            write_rows(folder / "rows.jsonl", [{"id": name, "text": name} for name in names])
            job = write_job(
                folder,
                base_url=server.base_url,
                provider={"api": api, "max_concurrency": 16, "api_key_env": KEY_ENV},
                retry={"max_attempts": MAX_ATTEMPTS, "backoff_initial_s": 0.01,
                       "backoff_max_s": 0.02, "retry_after_max_s": 0.05},
                variants=[{"name": "replay", "model": "replay-1", "stream": streamed,
                           "params": {"max_tokens": 256}}],
            )
            summary = batchrun.run(job)
            assert summary.pending == summary.refused_requests
            frame = batchrun.read(folder / "out")
            for record in frame.to_dict("records"):
                rows[record["id"]] = {k: _value(v) for k, v in record.items()}
        yield Replayed(rows, server)


def test_every_case_was_run_once_per_row(replayed: Replayed) -> None:
    recorded = sorted(name for name in CASES if not _refuses_the_account(name))
    assert sorted(replayed.rows) == recorded
    assert len(CASES) >= 45


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_through_a_real_run(replayed: Replayed, name: str) -> None:
    case = CASES[name]
    expect = case["expect"]
    seen = replayed.requests[name]
    if _refuses_the_account(name):
        # Sent once, never retried, and left pending: the same command sends it again later.
        assert (name in replayed.rows, seen) == (False, 1)
        return
    row = replayed.rows[name]
    if expect["outcome"] == "ok":
        assert (row["status"], row["error_message"]) == ("ok", None)
        assert (row["attempts"], seen) == (1, 1)
        for key in ("content", "reasoning", "finish_reason", "response_id"):
            assert row[key] == expect[key], key
        assert row["refusal"] == expect.get("refusal"), "refusal"
        calls = json.loads(row["tool_calls"]) if row["tool_calls"] is not None else None
        assert calls == expect["tool_calls"]
        assert {k: row[k] for k in USAGE_COLUMNS} == expect["usage"]
        return
    assert row["status"] == "error"
    assert row["error_type"] == expect["error_type"], row["error_message"]
    assert row["content"] is None and row["prompt_tokens"] is None
    attempts = MAX_ATTEMPTS if expect["outcome"] == "retry" else 1
    assert (row["attempts"], seen) == (attempts, attempts)
    if "error_contains" in expect:
        assert expect["error_contains"] in row["error_message"]


@pytest.mark.parametrize("name", sorted(CASES))
def test_case_request_speaks_its_wire_format(replayed: Replayed, name: str) -> None:
    case = CASES[name]
    for seen in replayed.received[name]:
        body, headers = seen.body, seen.headers
        assert body["model"] == "replay-1"
        if case["api"] == "responses":
            assert seen.path == "/v1/responses"
            assert headers["Authorization"] == f"Bearer {KEY}"
            assert (body["max_output_tokens"], body["store"]) == (256, False)
            assert body["input"] == [{"role": "user", "content": name}]
            assert "messages" not in body and "max_tokens" not in body
            assert body.get("stream") is (True if case["stream"] else None)
            continue
        assert body["max_tokens"] == 256
        assert body["messages"] == [{"role": "user", "content": name}]
        if case["api"] == "openai":
            assert seen.path == "/v1/chat/completions"
            assert headers["Authorization"] == f"Bearer {KEY}"
        else:
            assert seen.path == "/v1/messages"
            assert (headers["x-api-key"], headers["anthropic-version"]) == (KEY, "2023-06-01")
            assert "Authorization" not in headers
        if case["stream"]:
            assert body["stream"] is True
            if case["api"] == "openai":
                assert body["stream_options"] == {"include_usage": True}
        else:
            assert "stream" not in body and "stream_options" not in body


def test_the_key_is_written_nowhere_in_the_results(replayed: Replayed) -> None:
    for row in replayed.rows.values():
        assert not any(KEY in str(value) for value in row.values())
