"""Benchmark of `--ray`: a stated limit shared by the shards of a run as Ray tasks.

    python3 bench/cluster.py --ray            # 2 shards on a local Ray cluster, 60 s of work
    python3 bench/cluster.py --ray --quick    # 20 s of work
    python3 bench/cluster.py --ray ADDRESS    # on a running cluster (it must reach the mock)

The mock runs in a process of its own and enforces the limit over 10 s windows; each shard
paces at the whole limit, so only the leases of the shared actor keep them under it together.
The achieved rate is read off the results' `finished_at` (first to last answer), so Ray's
start-up and the input scan do not count against it; the busiest 10 s window and the 429s
come from the same run. Needs `pip install -e '.[ray]'`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PY, mock_server, mock_stats, per_window, show, write_job, write_rows

WINDOW_S = 10.0
LATENCY_MS = 20


def scenario(tmp: Path, rpm: int, seconds: int, shards: int, address: str) -> list[list[str]]:
    import batchrun

    n = int(rpm / 60 * seconds)
    rows = write_rows(tmp / "rows.jsonl", n)
    mock = ("--rpm", str(rpm), "--window-s", str(WINDOW_S), "--latency-ms", str(LATENCY_MS))
    with mock_server(*mock) as base_url:
        folder = Path(tempfile.mkdtemp(dir=tmp))
        job = write_job(folder, rows, base_url, concurrency=64, rpm=rpm)
        ray = ["--ray", address] if address else ["--ray"]
        started = time.monotonic()
        done = subprocess.run([PY, "-m", "batchrun", "run", str(job), "--no-progress", *ray,
                               "--shards", str(shards)], capture_output=True, text=True)
        wall = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(f"batchrun failed:\n{done.stderr[-3000:]}")
        stats = mock_stats(base_url)
        finished = sorted(batchrun.read(folder / "out")["finished_at"].astype("int64") / 1e6)
        achieved = (len(finished) - 1) / (finished[-1] - finished[0]) * 60
        busiest = max(count for _, count in per_window(folder, WINDOW_S))
    cap = int(rpm * WINDOW_S / 60)
    return [[str(shards), f"{rpm:,}", f"{achieved:,.0f}", f"{achieved / rpm:.1%}",
             f"{busiest}/{cap}", str(stats["rate_limited"]), f"{len(finished):,}",
             f"{wall:.1f}"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", required=True,
                        help="run the shards on Ray (a local cluster without ADDRESS)")
    parser.add_argument("--quick", action="store_true", help="20 s of work instead of 60")
    parser.add_argument("--rpm", type=int, default=3_000, help="the stated limit")
    parser.add_argument("--shards", type=int, default=2)
    args = parser.parse_args()
    seconds = 20 if args.quick else 60
    with tempfile.TemporaryDirectory() as name:
        show(f"A stated limit shared by {args.shards} Ray tasks (the mock enforces it over "
             f"{WINDOW_S:.0f} s windows, {LATENCY_MS} ms latency, {seconds} s of work)",
             ["shards", "limit rpm", "achieved rpm", "of limit", "busiest window",
              "429s", "requests", "wall s"],
             scenario(Path(name), args.rpm, seconds, args.shards, args.ray))


if __name__ == "__main__":
    main()
