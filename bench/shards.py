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


def scenario_overhead(tmp: Path, sizes: list[int], repeat: int) -> list[list[str]]:
    """CPU per 1,000 requests at two sizes, and the slope between them: what each further
    request costs, once the fixed start-up of the processes is paid."""
    table: list[list[str]] = []
    with mock_server() as base_url:
        cpu: dict[tuple[int, int], float] = {}
        for n in sizes:
            rows = write_rows(tmp / f"rows-overhead-{n}.jsonl", n)
            job = write_job(Path(tempfile.mkdtemp(dir=tmp)), rows, base_url, concurrency=200)
            for p in (1, 2):
                extra = () if p == 1 else ("--processes", str(p))
                runs = []
                for _ in range(repeat):
                    runs.append(run_batchrun(job, *extra))
                    reset_mock(base_url)
                cpu[p, n] = statistics.median(c for c, _ in runs)
                wall = statistics.median(w for _, w in runs)
                table.append([str(p), f"{n:,}", f"{cpu[p, n]:.2f}",
                              f"{cpu[p, n] / n * 1e6:.0f} ms",
                              f"{cpu[p, n] / cpu[1, n]:.2f}x", f"{n / wall:,.0f}"])
        small, large = sizes
        slopes = {p: (cpu[p, large] - cpu[p, small]) / (large - small) * 1e6 for p in (1, 2)}
        fixed = {p: cpu[p, small] - slopes[p] * small / 1e6 for p in (1, 2)}
        table += [[str(p), "marginal", f"fixed {fixed[p]:.2f}", f"{slopes[p]:.0f} ms",
                   f"{slopes[p] / slopes[1]:.2f}x", ""] for p in (1, 2)]
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
        sizes = [5_000, 15_000] if args.quick else [20_000, 60_000]
        show(f"Overhead of sharding: zero latency, concurrency 200 in all (median of {repeat}); "
             "'marginal' is the slope between the two sizes, 'fixed' the start-up it leaves",
             ["processes", "requests", "CPU s", "CPU per 1,000 requests", "vs 1 process",
              "req/s"],
             scenario_overhead(tmp, sizes, repeat))
        seconds = 20 if args.quick else 60
        show(f"A stated limit shared by 2 processes (mock enforces it over 10 s windows, "
             f"{seconds} s of work)",
             ["processes", "limit rpm", "achieved rpm", "of limit", "429s"],
             scenario_shared_limit(tmp, 3_000, seconds, 2))


if __name__ == "__main__":
    main()
