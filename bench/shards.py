"""Benchmark of sharding: the CPU cost of `--processes P`, and a stated limit shared by P processes.

    python3 bench/shards.py            # both scenarios, 3 repeats, medians
    python3 bench/shards.py --quick    # smaller, one repeat

CPU is user + system time of the whole process tree (parent and shard processes), read from
`getrusage(RUSAGE_CHILDREN)` around each run, per 1,000 requests; the mock runs in a process of
its own and is not counted. The limit scenario reads the achieved rate off the results'
`finished_at` (first to last answer), so start-up and the input scan do not count against it.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PY, mock_server, mock_stats, reset_mock, show, write_job, write_rows


def run_batchrun(job: Path, *extra: str) -> tuple[float, float]:
    """(CPU seconds of the whole tree, wall seconds) of one `batchrun run`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run([PY, "-m", "batchrun", "run", str(job), "--no-progress", "--fresh",
                           *extra], capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"batchrun failed:\n{done.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def scenario_overhead(tmp: Path, n: int, repeat: int, processes: list[int]) -> list[list[str]]:
    rows = write_rows(tmp / "rows-overhead.jsonl", n)
    table: list[list[str]] = []
    with mock_server() as base_url:
        job = write_job(Path(tempfile.mkdtemp(dir=tmp)), rows, base_url, concurrency=200)
        baseline = None
        for p in processes:
            extra = () if p == 1 else ("--processes", str(p))
            runs = [run_batchrun(job, *extra) for _ in range(repeat)]
            cpu = statistics.median(c for c, _ in runs) / n * 1000
            wall = statistics.median(w for _, w in runs)
            baseline = baseline or cpu
            table.append([str(p), f"{cpu * 1000:.0f} ms", f"{cpu / baseline:.2f}x",
                          f"{n / wall:,.0f}", f"{wall:.1f}"])
            reset_mock(base_url)
    return table


def scenario_shared_limit(tmp: Path, rpm: int, seconds: int, processes: int) -> list[list[str]]:
    import batchrun

    n = int(rpm / 60 * seconds)
    rows = write_rows(tmp / "rows-limit.jsonl", n)
    table: list[list[str]] = []
    with mock_server("--rpm", str(rpm), "--window-s", "10") as base_url:
        folder = Path(tempfile.mkdtemp(dir=tmp))
        job = write_job(folder, rows, base_url, concurrency=64, rpm=rpm)
        for p in (1, processes):
            extra = () if p == 1 else ("--processes", str(p))
            run_batchrun(job, *extra)
            stats = mock_stats(base_url)
            finished = sorted(batchrun.read(folder / "out")["finished_at"].astype("int64") / 1e6)
            achieved = (len(finished) - 1) / (finished[-1] - finished[0]) * 60
            table.append([str(p), f"{rpm:,}", f"{achieved:,.0f}", f"{achieved / rpm:.1%}",
                          str(stats["rate_limited"])])
            reset_mock(base_url)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one repeat")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    repeat = 1 if args.quick else args.repeat
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        n = 5_000 if args.quick else 20_000
        show(f"Overhead of sharding: {n:,} requests, zero latency, concurrency 200 in all "
             f"(median of {repeat})",
             ["processes", "CPU per 1,000 requests", "vs 1 process", "req/s", "wall s"],
             scenario_overhead(tmp, n, repeat, [1, 2]))
        seconds = 20 if args.quick else 60
        show(f"A stated limit shared by 2 processes (mock enforces it over 10 s windows, "
             f"{seconds} s of work)",
             ["processes", "limit rpm", "achieved rpm", "of limit", "429s"],
             scenario_shared_limit(tmp, 3_000, seconds, 2))


if __name__ == "__main__":
    main()
