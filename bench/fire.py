"""Scenarios under fire: noise that is not a limit, a faulty provider, and a limit never stated.

  noise429  5% of attempts answered 429 (Retry-After 1), no limit at all; 50 ms, concurrency 100
  faults    5% 500s, 5% 429s, 2% resets, 1% hangs of 60 s (20 s timeout), 1% malformed bodies
  hidden10  a 20/s limit enforced over 10 s windows, no rate-limit headers, never stated; at
            50 ms latency and at none (where requests queue at the mock, the harder case)
  hidden60  the same over 60 s windows

The first two run batchrun beside the `openai` SDK loop on the same mock, one after the other
with the mock's counters and random draws reset between them, once per seed of the draws
(`--repeat` seeds); the table shows the median and every run.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from common import (
    mock_server,
    mock_stats,
    per_window,
    reset_mock,
    run_client,
    write_job,
    write_rows,
)

NOISE_MOCK = ("--latency-ms", "50", "--faults", "429=0.05", "--retry-after", "1")
FAULT_MIX = "500=0.05,429=0.05,drop=0.02,hang=0.01,malformed=0.01"
FAULT_MOCK = ("--latency-ms", "50", "--faults", FAULT_MIX, "--hang-s", "60", "--retry-after", "1")
CONCURRENCY = 100
TIMEOUT_S = 20.0
HIDDEN_RPM = 1200
HIDDEN_CONCURRENCY = 64


def _side_by_side(tmp: Path, name: str, n: int, mock_args: tuple[str, ...],
                  clients: list[str], timeout_s: float | None, repeat: int) -> list[list[str]]:
    """Each client on the same mock, once per seed of the mock's random failures."""
    rows = write_rows(tmp / f"rows-{name}.jsonl", n)
    runs: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for seed in range(1, repeat + 1):
        with mock_server(*mock_args, "--seed", str(seed)) as base_url:
            for client in (c for c in ("batchrun", "openai") if c in clients):
                reset_mock(base_url)  # the same draws, in the order requests arrive
                folder = Path(tempfile.mkdtemp(dir=tmp))
                if client == "batchrun":
                    job = write_job(folder, rows, base_url, concurrency=CONCURRENCY,
                                    timeout_s=timeout_s)
                    result = run_client("batchrun", "--job", str(job))
                else:
                    extra = ["--timeout", str(timeout_s), "--retry-all"] if timeout_s else []
                    result = run_client("openai", "--rows", str(rows), "--base-url", base_url,
                                        "--concurrency", str(CONCURRENCY), *extra)
                runs.setdefault(client, []).append((result, mock_stats(base_url)))
    return [_row(client, n, results) for client, results in runs.items()]


def _row(client: str, n: int, runs: list[tuple[dict[str, Any], dict[str, Any]]]) -> list[str]:
    walls = [result["wall_s"] for result, _ in runs]
    ok = min(result["ok"] for result, _ in runs)
    wall = statistics.median(walls)
    injected: dict[str, int] = {}
    for _, stats in runs:
        for kind, count in stats["injected"].items():
            injected[kind] = injected.get(kind, 0) + count
    faults = ", ".join(f"{k} {v / len(runs):.0f}" for k, v in sorted(injected.items()))
    return [
        "batchrun" if client == "batchrun" else "`openai` SDK + tenacity",
        f"{ok:,} / {n:,}", f"{wall:.1f}", ", ".join(f"{w:.1f}" for w in walls),
        f"{n / wall:,.0f}", f"{statistics.median(s['requests'] for _, s in runs):,.0f}",
        faults or "-",
    ]


def scenario_noise429(tmp: Path, clients: list[str], n: int, repeat: int) -> list[list[str]]:
    """Sporadic 429s with no limit behind them: nothing should slow down but their retries."""
    return _side_by_side(tmp, "noise", n, NOISE_MOCK, clients, None, repeat)


def scenario_faults(tmp: Path, clients: list[str], n: int, repeat: int) -> list[list[str]]:
    """A provider that fails in every way at once, none of them a limit."""
    return _side_by_side(tmp, "faults", n, FAULT_MOCK, clients, TIMEOUT_S, repeat)


def scenario_hidden(tmp: Path, window_s: float, n: int, latency_ms: int) -> list[list[str]]:
    """A 20/s limit the job does not state and the provider's headers do not show."""
    rows = write_rows(tmp / f"rows-hidden-{window_s:g}.jsonl", n)
    mock_args = ("--rpm", str(HIDDEN_RPM), "--window-s", str(window_s), "--no-rate-headers",
                 "--latency-ms", str(latency_ms))
    with mock_server(*mock_args) as base_url:
        folder = Path(tempfile.mkdtemp(dir=tmp))
        job = write_job(folder, rows, base_url, concurrency=HIDDEN_CONCURRENCY)
        result = run_client("batchrun", "--job", str(job))
        stats = mock_stats(base_url)
    limit = HIDDEN_RPM / 60
    achieved = result["ok"] / result["wall_s"]
    # Whole windows after the first (which the mock started before the run did) and before the
    # last (cut short by the end of the input).
    whole = [c for _, c in per_window(folder, window_s)[1:-1]]
    steady = f"{statistics.mean(whole) / (limit * window_s):.0%}" if whole else "-"
    return [[
        f"{window_s:g} s", f"{latency_ms} ms", f"{result['ok']:,} / {n:,}", f"{limit:.0f}/s",
        f"{achieved:.1f}/s",
        f"{achieved / limit:.0%}", steady, f"{stats['rate_limited']}",
        f"{stats['rate_limited'] / stats['requests']:.1%}",
    ]]


SIDE_HEADER = ["client", "ok (worst run)", "wall s (median)", "each run", "rows/s",
               "attempts", "injected per run"]
HIDDEN_HEADER = ["window", "latency", "ok", "limit", "achieved", "of limit", "whole windows",
                 "429s", "429s of requests"]
