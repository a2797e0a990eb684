"""End to end against the mock provider on loopback: answers, retries, resume, keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import batchrun
from batchrun.mock import MockConfig, MockThread, expected_content
from tests.conftest import write_job, write_rows


def rows(n: int, suffix: str = "") -> list[dict[str, Any]]:
    return [{"id": f"r{i}", "text": f"review number {i} {suffix}".strip()} for i in range(n)]


def test_every_row_gets_the_mocks_answer_streamed_or_not(tmp_path: Path, mock: MockThread) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(30))
    params = {"temperature": 0, "max_tokens": 50}
    job = write_job(tmp_path, base_url=mock.base_url, variants=[
        {"name": "plain", "model": "mock-1", "params": params},
        {"name": "streamed", "model": "mock-1", "stream": True, "params": params},
    ])
    summary = batchrun.run(job)
    assert (summary.ok, summary.error, summary.pending) == (60, 0, 0)
    frame = batchrun.read(tmp_path / "out")
    assert len(frame) == 60
    for row in frame.itertuples():
        body = {"model": "mock-1", "messages": [{"role": "user", "content": f"review number "
                f"{row.id[1:]}"}], **params}
        assert row.content == expected_content(body)
        assert row.status == "ok"
        assert row.prompt_tokens > 0 and row.completion_tokens > 0
        assert row.total_tokens == row.prompt_tokens + row.completion_tokens
        assert row.attempts == 1
    assert mock.stats_snapshot()["requests"] == 60


RETRIED = ["503x2", "500x1", "502x1", "504x1", "408x1", "409x1", "425x1", "529x1", "429x2",
           "dropx1", "truncatex1", "malformedx1", "error200x1", "overloadedx1"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_retryable_failures_are_retried_until_ok(
    tmp_path: Path, mock: MockThread, stream: bool
) -> None:
    data = [{"id": f, "text": f"hello [[mock:fail={f}]]"} for f in RETRIED]
    write_rows(tmp_path / "rows.jsonl", data)
    job = write_job(tmp_path, base_url=mock.base_url, retry={"max_attempts": 4},
                    variants=[{"name": "v", "model": "mock-1", "stream": stream,
                               "params": {"max_tokens": 40}}])
    summary = batchrun.run(job)
    frame = batchrun.read(tmp_path / "out").set_index("id")
    assert summary.error == 0, frame[frame.status != "ok"][["error_type", "error_message"]]
    for fault in RETRIED:
        expected_attempts = int(fault.rsplit("x", 1)[1]) + 1
        assert frame.loc[fault, "attempts"] == expected_attempts, fault


TERMINAL = {"404": "NotFound", "400": "BadRequest", "422": "BadRequest",
            "context": "ContextTooLong"}
# A refused key is the account's fault, not the row's: sent once and left pending.
ACCOUNT = ("401", "403")


def test_terminal_failures_are_recorded_at_once(tmp_path: Path, mock: MockThread) -> None:
    data = [{"id": f, "text": f"hello [[mock:fail={f}]]"} for f in (*TERMINAL, *ACCOUNT)]
    write_rows(tmp_path / "rows.jsonl", data)
    job = write_job(tmp_path, base_url=mock.base_url, retry={"max_attempts": 5})
    summary = batchrun.run(job)
    assert (summary.exit_code, summary.refused_requests, summary.pending) == (1, 2, 2)
    frame = batchrun.read(tmp_path / "out").set_index("id")
    assert not set(ACCOUNT) & set(frame.index)
    for fault, error_type in TERMINAL.items():
        assert frame.loc[fault, "status"] == "error"
        assert frame.loc[fault, "error_type"] == error_type, fault
        assert frame.loc[fault, "attempts"] == 1, fault
        assert frame.loc[fault, "error_message"]
    assert "POST " + mock.base_url + "/chat/completions" in frame.loc["404", "error_message"]
    assert "mock-1" in frame.loc["404", "error_message"]


def test_persistent_failure_ends_as_error_after_max_attempts(
    tmp_path: Path, mock: MockThread
) -> None:
    write_rows(tmp_path / "rows.jsonl", [{"id": "a", "text": "x [[mock:fail=503]]"}])
    job = write_job(tmp_path, base_url=mock.base_url, retry={"max_attempts": 3})
    batchrun.run(job)
    row = batchrun.read(tmp_path / "out").iloc[0]
    assert (row.status, row.error_type, row.attempts) == ("error", "ServerError", 3)
    assert "503" in row.error_message


def test_rerun_sends_nothing_that_was_already_answered(tmp_path: Path, mock: MockThread) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(25))
    job = write_job(tmp_path, base_url=mock.base_url)
    first = batchrun.run(job)
    assert first.ok == 25
    before = mock.stats_snapshot()["requests"]
    second = batchrun.run(job)
    assert mock.stats_snapshot()["requests"] == before
    assert (second.ok, second.skipped, second.pending) == (25, 25, 0)
    assert len(batchrun.read(tmp_path / "out")) == 25


def test_retry_errors_sends_only_the_errors_again(tmp_path: Path, mock: MockThread) -> None:
    data = [*rows(5), {"id": "bad", "text": "x [[mock:fail=503x3]]"}]
    write_rows(tmp_path / "rows.jsonl", data)
    job = write_job(tmp_path, base_url=mock.base_url, retry={"max_attempts": 2})
    assert batchrun.run(job).error == 1
    again = batchrun.run(job)  # without --retry-errors: errors are settled too
    assert again.error == 1 and again.skipped == 6
    before = mock.stats_snapshot()["requests"]
    fixed = batchrun.run(job, retry_errors=True)
    assert mock.stats_snapshot()["requests"] == before + 2  # attempts 3 (503) and 4 (ok)
    assert (fixed.ok, fixed.error) == (6, 0)
    frame = batchrun.read(tmp_path / "out")
    assert len(frame) == 6 and set(frame.status) == {"ok"}


def test_changed_template_is_a_new_request(tmp_path: Path, mock: MockThread) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(4))
    job = write_job(tmp_path, base_url=mock.base_url)
    batchrun.run(job)
    job = write_job(tmp_path, base_url=mock.base_url, input={"template": "Rate: {text}"})
    before = mock.stats_snapshot()["requests"]
    batchrun.run(job)
    assert mock.stats_snapshot()["requests"] == before + 4
    frame = batchrun.read(tmp_path / "out")
    assert len(frame) == 4
    body = {"model": "mock-1", "messages": [{"role": "user", "content": "Rate: review number 0"}]}
    assert frame.set_index("id").loc["r0", "content"] == expected_content(body)


def test_fresh_starts_over(tmp_path: Path, mock: MockThread) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(3))
    job = write_job(tmp_path, base_url=mock.base_url)
    batchrun.run(job)
    again = batchrun.run(job, fresh=True)
    assert (again.ok, again.skipped) == (3, 0)
    assert mock.stats_snapshot()["requests"] == 6


def test_keep_columns_and_system_prompt_reach_the_output(tmp_path: Path, mock: MockThread) -> None:
    write_rows(tmp_path / "rows.jsonl", [{"id": "a", "text": "hi", "gold": "positive", "n": 3}])
    job = write_job(tmp_path, base_url=mock.base_url, input={"system": "Be brief."},
                    output={"keep_columns": ["gold", "n"]})
    batchrun.run(job)
    row = batchrun.read(tmp_path / "out").iloc[0]
    assert (row.gold, row.n) == ("positive", 3)


def test_limit_runs_only_the_first_rows(tmp_path: Path, mock: MockThread) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(10))
    job = write_job(tmp_path, base_url=mock.base_url)
    summary = batchrun.run(job, limit=4)
    assert (summary.ok, summary.total) == (4, 4)
    assert sorted(batchrun.read(tmp_path / "out").id) == ["r0", "r1", "r2", "r3"]


def test_api_key_is_sent_but_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-test-DO-NOT-LEAK-4242424242"
    monkeypatch.setenv("BATCHRUN_TEST_KEY", key)
    with MockThread(MockConfig(api_key=key)) as server:
        write_rows(tmp_path / "rows.jsonl", [*rows(3), {"id": "e", "text": "[[mock:fail=401]]"}])
        job = write_job(tmp_path, base_url=server.base_url,
                        provider={"api_key_env": "BATCHRUN_TEST_KEY"})
        summary = batchrun.run(job, output=str(tmp_path / "out"))
    assert (summary.ok, summary.error, summary.refused_requests) == (3, 0, 1)
    assert key not in "\n".join(summary.account_lines())
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert key.encode() not in path.read_bytes(), path
            assert b"DO-NOT-LEAK" not in path.read_bytes(), path


def test_a_wrong_key_is_an_error_naming_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCHRUN_TEST_KEY", "wrong")
    with MockThread(MockConfig(api_key="right")) as server:
        write_rows(tmp_path / "rows.jsonl", rows(1))
        job = write_job(tmp_path, base_url=server.base_url,
                        provider={"api_key_env": "BATCHRUN_TEST_KEY"})
        summary = batchrun.run(job)
    assert (summary.pending, len(batchrun.read(tmp_path / "out"))) == (1, 0)
    (line,) = summary.account_lines()
    assert "AuthenticationFailed" in line and "$BATCHRUN_TEST_KEY" in line and "mock" in line


def test_rows_with_equal_prompts_are_each_answered_across_a_resume(
    tmp_path: Path, mock: MockThread
) -> None:
    data = [{"id": f"r{i}", "text": "the same words"} for i in range(6)]
    write_rows(tmp_path / "rows.jsonl", data)
    job = write_job(tmp_path, base_url=mock.base_url)
    assert batchrun.run(job, limit=2).ok == 2
    summary = batchrun.run(job)
    assert (summary.ok, summary.pending) == (6, 0)
    assert sorted(batchrun.read(tmp_path / "out").id) == [f"r{i}" for i in range(6)]


def test_run_works_when_called_inside_a_running_event_loop(
    tmp_path: Path, mock: MockThread
) -> None:
    import asyncio

    write_rows(tmp_path / "rows.jsonl", rows(3))
    job = write_job(tmp_path, base_url=mock.base_url)

    async def notebook_cell() -> int:
        return batchrun.run(job).ok

    assert asyncio.run(notebook_cell()) == 3
