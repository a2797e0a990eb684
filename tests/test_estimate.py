"""`batchrun estimate`: offline figures computed by hand, and `--sample` against the mock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import batchrun
from batchrun.estimate import (
    estimate_offline,
    estimate_sampled,
    format_estimate,
    format_sampled,
    t95,
)
from batchrun.mock import MockThread
from tests.conftest import write_job, write_rows

UNSET_KEY = "BATCHRUN_SURELY_UNSET_KEY"
# 8 ASCII characters: int(8 / 4) + 1 = 3 tokens, + 4 for the message = 7 by the heuristic;
# the mock counts 8 // 4 + 4 = 6.
TEXT = "abcdefgh"
PRICED = {"name": "priced", "model": "mock-1", "params": {"temperature": 0, "max_tokens": 100},
          "price": {"input": 2.0, "output": 10.0}}
SWEEP = {"name": "sweep", "model": "mock-2", "samples": 3,
         "params": {"temperature": 0.7, "seed": 1, "max_tokens": 50}}


def rows(n: int, text: str = TEXT) -> list[dict[str, Any]]:
    # Distinct ids; the text is the same length in every row so the figures stay hand-computable.
    return [{"id": f"r{i:02d}", "text": f"{text[:-2]}{i:02d}"} for i in range(n)]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != UNSET_KEY}
    return subprocess.run([sys.executable, "-m", "batchrun", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_offline_estimate_sends_nothing_and_matches_hand_computed_figures(
    tmp_path: Path, mock: MockThread
) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(4))
    job = write_job(tmp_path, base_url=mock.base_url, variants=[PRICED, SWEEP])
    est = estimate_offline(job)
    assert mock.stats_snapshot()["requests"] == 0
    assert not (tmp_path / "out").exists()
    assert est.rows == 4
    priced, sweep = est.variants
    assert (priced.requests, sweep.requests, est.requests) == (4, 12, 16)
    assert (priced.prompt_tokens, sweep.prompt_tokens) == (4 * 7, 12 * 7)
    assert (priced.completion_max, sweep.completion_max) == (4 * 100, 12 * 50)
    # min: prompt x 0.75 at $2/M, no completion; max: prompt x 1.25 at $2/M + max_tokens at $10/M.
    assert priced.cost_min == pytest.approx(28 * 0.75 * 2.0 / 1e6)
    assert priced.cost_max == pytest.approx((28 * 1.25 * 2.0 + 400 * 10.0) / 1e6)
    assert (sweep.cost_min, sweep.cost_max) == (None, None)
    assert (est.cost_min, est.cost_max) == (priced.cost_min, priced.cost_max)
    assert est.unpriced == ("sweep",)
    assert est.completion_max == 1000


def test_unpriced_variant_is_shown_as_unpriced_never_as_zero(
    tmp_path: Path, mock: MockThread
) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(3))
    job = write_job(tmp_path, base_url=mock.base_url, variants=[PRICED, SWEEP])
    text = format_estimate(estimate_offline(job))
    sweep_line = next(line for line in text.splitlines() if line.startswith("sweep "))
    assert sweep_line.rstrip().endswith("unpriced")
    assert "$0 " not in text and "$0.00 " not in text
    assert "+ unpriced (sweep)" in text


def test_variant_without_max_tokens_has_an_unbounded_completion_and_cost(
    tmp_path: Path, mock: MockThread
) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(2))
    job = write_job(tmp_path, base_url=mock.base_url, variants=[
        {"name": "open", "model": "mock-1", "price": {"input": 1.0, "output": 1.0}}])
    est = estimate_offline(job)
    (variant,) = est.variants
    assert variant.completion_max is None and variant.cost_max is None
    assert variant.cost_min == pytest.approx(14 * 0.75 / 1e6)
    assert est.cost_max is None
    assert "unbounded" in format_estimate(est)


def test_cjk_text_counts_one_token_a_character_and_latin_one_per_four(
    tmp_path: Path, mock: MockThread
) -> None:
    write_rows(tmp_path / "rows.jsonl", [{"id": "latin", "text": "a" * 400}])
    job = write_job(tmp_path, base_url=mock.base_url)
    latin = estimate_offline(job).prompt_tokens
    write_rows(tmp_path / "rows.jsonl", [{"id": "cjk", "text": "好" * 400}])
    cjk = estimate_offline(job).prompt_tokens
    assert latin == 400 // 4 + 1 + 4
    assert cjk == 400 + 1 + 4


def test_time_follows_the_configured_ceilings_and_is_unlimited_without(
    tmp_path: Path, mock: MockThread
) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(4))
    job = write_job(tmp_path, base_url=mock.base_url, variants=[PRICED, SWEEP],
                    provider={"requests_per_minute": 60})
    (limited,) = estimate_offline(job).providers
    assert limited.variants == ("priced", "sweep")
    assert (limited.seconds_min, limited.seconds_max) == (16.0, 16.0)  # 16 requests at 1/s
    job = write_job(tmp_path, base_url=mock.base_url, variants=[PRICED],
                    provider={"tokens_per_minute": 600})
    (tokens,) = estimate_offline(job).providers
    # 4 requests: 28 prompt tokens x 0.75 .. 28 x 1.25 + 400 completion, at 10 tokens a second.
    assert tokens.seconds_min == pytest.approx(2.1)
    assert tokens.seconds_max == pytest.approx(43.5)
    job = write_job(tmp_path, base_url=mock.base_url)
    est = estimate_offline(job)
    assert est.providers[0].seconds_min is None
    assert "unlimited" in format_estimate(est)


def test_openai_batch_input_is_estimated_from_each_lines_body(
    tmp_path: Path, mock: MockThread
) -> None:
    lines = [{"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "x", "max_tokens": 10 * (i + 1),
                       "messages": [{"role": "user", "content": TEXT}]}} for i in range(3)]
    write_rows(tmp_path / "batch.jsonl", lines)
    job = write_job(tmp_path, base_url=mock.base_url, input={"path": "batch.jsonl"})
    est = estimate_offline(job)
    assert (est.rows, est.requests, est.prompt_tokens, est.completion_max) == (3, 3, 21, 60)


def test_estimate_needs_no_key_and_the_cli_prints_the_table(
    tmp_path: Path, mock: MockThread
) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(5))
    job = write_job(tmp_path, base_url=mock.base_url, variants=[PRICED, SWEEP],
                    provider={"api_key_env": UNSET_KEY})
    result = cli("estimate", str(job))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "nothing sent" in out
    assert "5 rows x 2 variants" in out and "20 requests" in out
    assert "variant" in out and "prompt tokens" in out and "completion max" in out
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert "$0.0000525 - $0.00509" in total  # 35 x 0.75 x 2 / 1e6 .. (35 x 1.25 x 2 + 5000) / 1e6
    assert mock.stats_snapshot()["requests"] == 0


def test_sample_needs_the_key_like_a_run(tmp_path: Path, mock: MockThread) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(5))
    job = write_job(tmp_path, base_url=mock.base_url, provider={"api_key_env": UNSET_KEY})
    result = cli("estimate", str(job), "--sample", "2")
    assert result.returncode == 2
    assert UNSET_KEY in result.stderr
    assert mock.stats_snapshot()["requests"] == 0


def test_sample_sends_n_rows_for_every_variant_and_sample_and_a_full_run_skips_them(
    tmp_path: Path, mock: MockThread
) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(20))
    job = write_job(tmp_path, base_url=mock.base_url, variants=[PRICED, SWEEP])
    result = estimate_sampled(job, 4)
    assert result.exit_code == 0
    assert mock.stats_snapshot()["requests"] == 4 * (1 + 3)
    assert len(result.ids) == 4 and result.total.answered == 16
    frame = batchrun.read(tmp_path / "out")
    assert {v: set(g.id) for v, g in frame.groupby("variant")} == {
        "priced": set(result.ids), "sweep": set(result.ids)}
    summary = batchrun.run(job)
    assert (summary.ok, summary.skipped) == (80, 16)
    stats = mock.stats_snapshot()
    assert stats["requests"] == 80 and stats["answered_twice"] == 0


def test_repeating_a_sample_picks_the_same_rows_and_sends_nothing_new(
    tmp_path: Path, mock: MockThread
) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(30))
    job = write_job(tmp_path, base_url=mock.base_url, variants=[PRICED])
    first = estimate_sampled(job, 5)
    second = estimate_sampled(job, 5)
    assert first.ids == second.ids
    assert mock.stats_snapshot()["requests"] == 5
    assert second.total == first.total
    assert "already in the output: 5 of 30 requests" in format_estimate(estimate_offline(job))


def test_sampling_every_row_extrapolates_to_the_exact_totals(
    tmp_path: Path, mock: MockThread
) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(6))
    job = write_job(tmp_path, base_url=mock.base_url, variants=[PRICED, SWEEP])
    result = estimate_sampled(job, 10)
    frame = batchrun.read(tmp_path / "out")
    priced = frame[frame.variant == "priced"]
    exact_cost = float(priced.cost_usd.sum())
    assert result.total.prompt_tokens is not None and result.total.cost_usd is not None
    assert result.total.prompt_tokens.value == frame.prompt_tokens.sum() == 24 * 6
    assert result.total.prompt_tokens.low == result.total.prompt_tokens.high == 24 * 6
    assert result.total.cost_usd.value == pytest.approx(exact_cost)
    assert result.sample_cost_usd == pytest.approx(exact_cost)
    assert result.variants[1].cost_usd is None  # the unpriced sweep
    assert result.total.prompt_ratio == pytest.approx(6 / 7)  # the mock's count / the heuristic


def test_partial_sample_gives_an_interval_around_the_extrapolated_total(
    tmp_path: Path, mock: MockThread
) -> None:
    data = [{"id": f"r{i:02d}", "text": "word " * (1 + i % 7)} for i in range(40)]
    write_rows(tmp_path / "rows.jsonl", data)
    job = write_job(tmp_path, base_url=mock.base_url, variants=[PRICED])
    result = estimate_sampled(job, 8)
    interval = result.total.prompt_tokens
    assert interval is not None and interval.low is not None and interval.high is not None
    assert interval.low < interval.value < interval.high
    sampled = batchrun.read(tmp_path / "out")
    assert interval.value == pytest.approx(40 * sampled.prompt_tokens.mean())
    text = format_sampled(result)
    assert "sampled 8 of 40 rows" in text and "extrapolated" in text and "95%" in text


def test_cli_sample_prints_the_extrapolation_and_exits_0(tmp_path: Path, mock: MockThread) -> None:
    write_rows(tmp_path / "rows.jsonl", rows(6))
    job = write_job(tmp_path, base_url=mock.base_url, variants=[PRICED, SWEEP])
    result = cli("estimate", str(job), "--sample", "2")
    assert result.returncode == 0, result.stderr
    assert "sampled 2 of 6 rows" in result.stdout and "prompt actual/est." in result.stdout
    assert mock.stats_snapshot()["requests"] == 2 * 4
    assert json.loads((tmp_path / "out" / "batchrun.json").read_text())["name"] == "test-job"


def test_t_quantiles_match_the_tables() -> None:
    assert t95(1) == 12.706 and t95(30) == 2.042
    assert t95(60) == pytest.approx(2.000, abs=2e-3)
    assert t95(1000) == pytest.approx(1.962, abs=2e-3)


def test_a_sampled_estimate_sends_batch_variants_online_and_prices_them_at_the_batch_price(
    tmp_path: Path,
) -> None:
    from batchrun.estimate.sampled import estimate_sampled
    from batchrun.mock import MockConfig, MockThread
    from tests.test_batch_jobs import batch_job

    variants = [
        {"name": "b", "model": "mock-1", "mode": "batch", "params": {"max_tokens": 32},
         "price": {"input": 1.0, "output": 2.0}},
        {"name": "o", "model": "mock-1", "params": {"max_tokens": 32},
         "price": {"input": 1.0, "output": 2.0}},
    ]
    with MockThread(MockConfig(batch_seconds=600)) as server:  # a batch would never end here
        job = batch_job(tmp_path, server.base_url, rows=40, variants=variants)
        result = estimate_sampled(job, 5)
        assert server.stats.batches_created == 0
    by_name = {v.name: v for v in result.variants}
    # The same requests, answered alike: the batch variant costs half the online one.
    batch_cost, online_cost = by_name["b"].cost_usd, by_name["o"].cost_usd
    assert batch_cost is not None and online_cost is not None
    assert batch_cost.value == pytest.approx(online_cost.value * 0.5)
    assert result.exit_code == 0
