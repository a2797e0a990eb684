"""batchrun's benchmark: `python bench/run.py [--quick] [--only NAME ...]`, a table of medians.

Every client runs in its own process against the same mock (`batchrun mock`, also its own
process) on loopback, with the same rows. Figures are medians of `--repeat` runs made now, on
this machine, side by side; ratios between clients matter more than absolute numbers.

Scenarios:
  overhead  20,000 requests at zero latency: requests/s, CPU s per 1,000 requests, peak RSS
  import    CPU of `import batchrun`, and whether pandas is loaded by it
  latency   5,000 requests at 200 ms latency, concurrency 100
  limit     mock and job at the same requests/min over 10 s windows: achieved % and 429s
  auto      a limit the job does not state, halved half-way through (headers, then 429s only)
  tokens    a tokens/min limit with generous max_tokens
  memory    peak RSS at 20,000 and at 500,000 (1,000,000 without --quick) input rows
  noise429, faults, hidden10, hidden60: under fire (see bench/fire.py)
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import fire
from common import (
    HERE,
    PY,
    median_of,
    mock_server,
    mock_stats,
    per_window,
    post_limits,
    reset_mock,
    run_client,
    show,
    write_job,
    write_rows,
)


def scenario_overhead(tmp: Path, repeat: int, clients: list[str], n: int) -> list[list[str]]:
    rows = write_rows(tmp / "rows.jsonl", n)
    table = []
    with mock_server() as base_url:
        results: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
        for _ in range(repeat):
            for client in clients:
                folder = Path(tempfile.mkdtemp(dir=tmp))
                if client == "batchrun":
                    job = write_job(folder, rows, base_url, concurrency=OVERHEAD_CONCURRENCY)
                    result = run_client("batchrun", "--job", str(job))
                else:
                    result = run_client(client, "--rows", str(rows), "--base-url", base_url,
                                        "--concurrency", str(OVERHEAD_CONCURRENCY))
                assert result["ok"] == n, (client, result)
                results[client].append(result)
    floor = median_of(results["bare"], "cpu_s") if "bare" in results else None
    for client, runs in results.items():
        cpu = median_of(runs, "cpu_s")
        table.append([
            client, f"{n / median_of(runs, 'wall_s'):,.0f}", f"{cpu / n * 1000:.3f}",
            f"{cpu / floor:.2f}x" if floor else "-", f"{median_of(runs, 'peak_rss_mb'):.0f}",
        ])
    return table


def scenario_import(repeat: int) -> list[list[str]]:
    """CPU of `import batchrun` in a fresh interpreter, and whether pandas came along."""
    code = ("import time; t = time.process_time(); import batchrun, sys; "
            "print(time.process_time() - t, 'pandas' in sys.modules)")
    runs = []
    for _ in range(max(repeat, 5)):
        out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True)
        cpu, pandas = out.stdout.split()
        runs.append((float(cpu), pandas == "True"))
    return [[f"{statistics.median(c for c, _ in runs):.3f}", str(any(p for _, p in runs))]]


OVERHEAD_CONCURRENCY = 200


def scenario_latency(tmp: Path, repeat: int, clients: list[str], n: int) -> list[list[str]]:
    rows = write_rows(tmp / "rows-lat.jsonl", n)
    table = []
    with mock_server("--latency-ms", "200") as base_url:
        for client in clients:
            runs = []
            for _ in range(repeat):
                folder = Path(tempfile.mkdtemp(dir=tmp))
                if client == "batchrun":
                    job = write_job(folder, rows, base_url, concurrency=100)
                    runs.append(run_client("batchrun", "--job", str(job)))
                else:
                    runs.append(run_client(client, "--rows", str(rows), "--base-url", base_url,
                                           "--concurrency", "100"))
            ideal = n / 100 * 0.2
            wall = median_of(runs, "wall_s")
            table.append([client, f"{n / wall:,.0f}", f"{wall:.1f}", f"{ideal / wall:.0%}"])
    return table


def scenario_limit(tmp: Path, rpm: int, seconds: int) -> list[list[str]]:
    n = int(rpm / 60 * seconds)
    rows = write_rows(tmp / "rows-limit.jsonl", n)
    with mock_server("--rpm", str(rpm), "--window-s", "10") as base_url:
        job = write_job(Path(tempfile.mkdtemp(dir=tmp)), rows, base_url, concurrency=64, rpm=rpm)
        result = run_client("batchrun", "--job", str(job))
        stats = mock_stats(base_url)
    achieved = n / result["wall_s"] * 60
    return [["batchrun", f"{rpm}", f"{achieved:,.0f}", f"{achieved / rpm:.1%}",
             str(stats["rate_limited"])]]


def scenario_auto(tmp: Path, seconds: int, headers: bool) -> list[list[str]]:
    """A limit the job does not state; the mock halves it half-way through."""
    rpm, window = 1200, 10.0
    n = int(rpm / 60 * seconds * 0.75)  # full rate for half the time, half rate for the rest
    rows = write_rows(tmp / f"rows-auto-{headers}.jsonl", n)
    extra = [] if headers else ["--no-rate-headers"]
    with mock_server("--rpm", str(rpm), "--window-s", str(window), *extra) as base_url:
        folder = Path(tempfile.mkdtemp(dir=tmp))
        job = write_job(folder, rows, base_url, concurrency=64)
        process = subprocess.Popen([PY, str(HERE / "clients.py"), "batchrun", "--job", str(job)],
                                   stdout=subprocess.PIPE, text=True)
        time.sleep(seconds / 2)
        post_limits(base_url, rpm=rpm / 2)
        halved_at = seconds / 2
        process.communicate()
        stats = mock_stats(base_url)
    windows = per_window(folder, window)
    limit_per_window = rpm / 60 * window
    before = [c for t, c in windows[1:] if t + window <= halved_at]
    after = [(t, c) for t, c in windows if t >= halved_at]
    recovered = next((t - halved_at for t, c in after if c >= 0.9 * limit_per_window / 2), None)
    steady = [c for t, c in after if recovered is not None and t - halved_at > recovered]
    return [[
        "headers" if headers else "429s only",
        f"{statistics.mean(before) / limit_per_window:.0%}" if before else "-",
        f"{statistics.mean(steady[:-1]) / (limit_per_window / 2):.0%}" if steady[:-1] else "-",
        f"{stats['rate_limited'] / stats['requests']:.1%}",
        "-" if recovered is None else f"{recovered + window:.0f} s",
    ]]


def scenario_tokens(tmp: Path, seconds: int) -> list[list[str]]:
    """tokens/min-bound, max_tokens ten times the real answer."""
    tpm = 24_000
    rows = write_rows(tmp / "rows-tpm.jsonl", int(tpm / 16 / 60 * seconds))
    with mock_server("--tpm", str(tpm), "--window-s", "10") as base_url:
        folder = Path(tempfile.mkdtemp(dir=tmp))
        job = write_job(folder, rows, base_url, concurrency=64, tpm=tpm, max_tokens=80)
        result = run_client("batchrun", "--job", str(job))
        stats = mock_stats(base_url)
    import batchrun

    frame = batchrun.read(folder / "out")
    completion = frame["completion_tokens"].mean()
    achieved = frame["total_tokens"].sum() / result["wall_s"] * 60
    return [[f"{tpm:,}", f"80 (answers ~{completion:.0f})", f"{achieved:,.0f}",
             f"{achieved / tpm:.0%}", str(stats["rate_limited"])]]


def scenario_memory(tmp: Path, sizes: list[int]) -> list[list[str]]:
    table = []
    with mock_server() as base_url:
        base = None
        for n in sizes:
            rows = write_rows(tmp / f"rows-{n}.jsonl", n)
            job = write_job(Path(tempfile.mkdtemp(dir=tmp)), rows, base_url, concurrency=64)
            result = run_client("batchrun", "--job", str(job))
            assert result["ok"] == n
            base = base or result["peak_rss_mb"]
            table.append([f"{n:,}", f"{result['peak_rss_mb']:.0f}",
                          f"{result['peak_rss_mb'] / base:.2f}x", f"{n / result['wall_s']:,.0f}"])
            reset_mock(base_url)
    return table


def available_clients() -> list[str]:
    clients = ["batchrun", "bare"]
    for name in ("openai", "litellm"):
        if importlib.util.find_spec(name) is not None:
            clients.append(name)
        else:
            print(f"({name} is not installed: left out of the comparison)")
    return clients


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one repeat")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=["overhead", "import", "latency", "limit",
                                                      "auto", "tokens", "memory"])
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    clients = available_clients()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if "overhead" in args.only:
            n = 5_000 if args.quick else 20_000
            show(f"(a) overhead: {n:,} requests, zero latency, concurrency "
                 f"{OVERHEAD_CONCURRENCY}, median of {repeat}",
                 ["client", "req/s", "CPU s / 1k req", "CPU vs bare", "peak RSS MB"],
                 scenario_overhead(tmp, repeat, clients, n))
        if "import" in args.only:
            show("(import) `import batchrun` in a fresh interpreter, median",
                 ["CPU s", "pandas imported"], scenario_import(repeat))
        if "latency" in args.only:
            n = 1_000 if args.quick else 5_000
            show(f"(b) latency: {n:,} requests, 200 ms each, concurrency 100, median of {repeat}",
                 ["client", "req/s", "wall s", "of ideal"],
                 scenario_latency(tmp, repeat, clients, n))
        if "limit" in args.only:
            seconds = 20 if args.quick else 60
            show(f"(limit) job and mock both at 1,200 requests/min, 10 s windows, {seconds} s",
                 ["client", "limit rpm", "achieved rpm", "of limit", "429s"],
                 scenario_limit(tmp, 1200, seconds))
        if "auto" in args.only:
            seconds = 40 if args.quick else 80
            show(f"(c) limit the job does not state: mock at 1,200 rpm over 10 s windows, halved "
                 f"to 600 at {seconds // 2} s",
                 ["pacing from", "before halving", "after recovery", "429s of requests",
                  "back to 90% in"],
                 scenario_auto(tmp, seconds, headers=True) + scenario_auto(tmp, seconds, False))
        if "tokens" in args.only:
            seconds = 20 if args.quick else 60
            show(f"(d) tokens/min-bound: job and mock at 24,000 tpm, {seconds} s",
                 ["tpm limit", "max_tokens", "achieved tpm", "of limit", "429s"],
                 scenario_tokens(tmp, seconds))
        if "noise429" in args.only:
            n = 1_000
            show(f"(f) sporadic 429s: {n:,} rows, 5% of attempts answered 429 (Retry-After 1), "
                 f"no limit, 50 ms, concurrency 100, {repeat} seeds", fire.SIDE_HEADER,
                 fire.scenario_noise429(tmp, clients, n, repeat))
        if "faults" in args.only:
            n = 1_000 if args.quick else 2_000
            show(f"(g) faults: {n:,} rows; 5% 500s, 5% 429s, 2% resets, 1% hangs of 60 s "
                 f"(20 s timeout), 1% malformed bodies; 50 ms, concurrency 100, {repeat} seeds",
                 fire.SIDE_HEADER,
                 fire.scenario_faults(tmp, clients, n, repeat))
        hidden = [(w, n) for name, w, n in (("hidden10", 10.0, 1_000), ("hidden60", 60.0, 2_000))
                  if name in args.only]
        if hidden:
            latencies = [50] if args.quick else [50, 0]
            show("(h) a hidden limit: 20/s, no rate-limit headers, not in the job; "
                 "concurrency 64", fire.HIDDEN_HEADER,
                 [row for w, n in hidden for ms in latencies
                  for row in fire.scenario_hidden(tmp, w, n, ms)])
        if "memory" in args.only:
            sizes = [20_000, 200_000] if args.quick else [20_000, 500_000, 1_000_000]
            show("(e) memory: peak RSS of the batchrun process, zero latency",
                 ["input rows", "peak RSS MB", "vs 20k", "req/s"], scenario_memory(tmp, sizes))
    print(f"\nbenchmark took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
