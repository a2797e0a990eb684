"""What the benchmark's scenarios share: the mock in its own process, rows, jobs, clients."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def mock_server(*args: str) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [PY, "-m", "batchrun", "mock", "--port", str(port), *args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        yield base_url
    finally:
        process.terminate()
        process.communicate(timeout=10)


def mock_stats(base_url: str) -> dict[str, Any]:
    root = base_url.rsplit("/v1", 1)[0]
    with urllib.request.urlopen(root + "/_mock/stats") as response:
        return dict(json.load(response))


def reset_mock(base_url: str) -> None:
    root = base_url.rsplit("/v1", 1)[0]
    request = urllib.request.Request(root + "/_mock/reset", method="POST")
    urllib.request.urlopen(request).close()


def write_rows(path: Path, n: int) -> Path:
    with path.open("w") as handle:
        for i in range(n):
            handle.write(json.dumps({"id": f"r{i}", "text": f"review {i}: it works well"}) + "\n")
    return path


def write_job(folder: Path, rows: Path, base_url: str, *, concurrency: int,
              rpm: float | None = None, tpm: float | None = None, max_tokens: int = 20,
              flush_rows: int = 5000, timeout_s: float | None = None) -> Path:
    limit = f"requests_per_minute = {rpm}\n" if rpm else ""
    limit += f"tokens_per_minute = {tpm}\n" if tpm else ""
    limit += f"timeout_seconds = {timeout_s}\n" if timeout_s else ""
    job = folder / "job.toml"
    job.write_text(f"""name = "bench"
[input]
path = "{rows}"
id = "id"
prompt = "text"
[output]
path = "{folder / 'out'}"
flush_rows = {flush_rows}
[[provider]]
name = "mock"
api = "openai"
base_url = "{base_url}"
max_concurrency = {concurrency}
{limit}
[[variant]]
name = "v"
provider = "mock"
model = "mock-1"
params = {{ max_tokens = {max_tokens} }}
""")
    return job


def run_client(client: str, *args: str) -> dict[str, Any]:
    # LiteLLM fetches a price list from the network at import unless told not to.
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run([PY, str(HERE / "clients.py"), client, *args],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{client} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def post_limits(base_url: str, **limits: float) -> None:
    root = base_url.rsplit("/v1", 1)[0]
    request = urllib.request.Request(
        root + "/_mock/limits", data=json.dumps(limits).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request).close()


def per_window(folder: Path, window: float) -> list[tuple[float, int]]:
    """(window start, answers) over the run, from the results' finished_at."""
    import batchrun

    times = sorted(batchrun.read(folder / "out")["finished_at"].astype("int64") / 1e6)
    start = times[0]
    counts: dict[int, int] = {}
    for t in times:
        counts[int((t - start) // window)] = counts.get(int((t - start) // window), 0) + 1
    return [(k * window, counts.get(k, 0)) for k in range(max(counts) + 1)]


def show(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)) + " |")


