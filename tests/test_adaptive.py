"""Limits the job does not state, learned while running against the mock (counted at the mock)."""

from __future__ import annotations

from pathlib import Path

import pytest

import batchrun
from batchrun.mock import MockConfig, MockThread
from tests.conftest import write_job, write_rows

pytestmark = pytest.mark.slow

RPM, WINDOW_S = 6000, 0.5  # 50 requests per half-second window
ROWS = 250


@pytest.mark.parametrize("headers", [True, False], ids=["rate-headers", "429s-only"])
def test_hidden_limit_is_learned_every_row_ends_ok_and_429s_stay_far_below_naive(
    tmp_path: Path, headers: bool
) -> None:
    config = MockConfig(rpm=RPM, window_s=WINDOW_S, rate_headers=headers)
    write_rows(tmp_path / "rows.jsonl", [{"id": f"r{i}", "text": f"t{i}"} for i in range(ROWS)])
    with MockThread(config) as server:
        job = write_job(tmp_path, base_url=server.base_url,
                        provider={"max_concurrency": 32, "limits": "auto"},
                        retry={"max_attempts": 8, "retry_after_max_s": 1.0})
        summary = batchrun.run(job)
        stats = server.stats_snapshot()
    assert (summary.ok, summary.error) == (ROWS, 0)
    # Unpaced, 32 workers at zero latency would see most requests refused in every window.
    if headers:
        assert stats["rate_limited"] <= 0.05 * ROWS
    else:
        assert stats["rate_limited"] <= 0.5 * ROWS
    assert len(stats["answered"]) == ROWS


def test_stated_limit_equal_to_the_mocks_draws_no_429(tmp_path: Path) -> None:
    config = MockConfig(rpm=RPM, window_s=WINDOW_S)
    write_rows(tmp_path / "rows.jsonl", [{"id": f"r{i}", "text": f"t{i}"} for i in range(200)])
    with MockThread(config) as server:
        job = write_job(tmp_path, base_url=server.base_url,
                        provider={"max_concurrency": 32, "requests_per_minute": RPM})
        summary = batchrun.run(job)
        stats = server.stats_snapshot()
    assert summary.ok == 200
    assert stats["rate_limited"] == 0


def test_tokens_per_minute_limit_is_kept_with_generous_max_tokens(tmp_path: Path) -> None:
    tpm = 60_000  # 500 tokens per half-second window
    config = MockConfig(tpm=tpm, window_s=WINDOW_S)
    write_rows(tmp_path / "rows.jsonl", [{"id": f"r{i}", "text": f"t{i}"} for i in range(120)])
    with MockThread(config) as server:
        job = write_job(tmp_path, base_url=server.base_url,
                        provider={"max_concurrency": 16, "tokens_per_minute": tpm},
                        variants=[{"name": "v", "model": "mock-1",
                                   "params": {"max_tokens": 200}}])
        summary = batchrun.run(job)
        stats = server.stats_snapshot()
    assert summary.ok == 120
    assert stats["rate_limited"] <= 3
