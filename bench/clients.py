"""The clients the benchmark compares, each run in its own process: `python clients.py NAME ...`.

Each prints one JSON line: wall seconds, CPU seconds (process_time, imports excluded), peak RSS,
and what it got back. The bodies are the same for every client: the rows of the input file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


def bodies(path: Path, model: str, max_tokens: int) -> list[dict[str, Any]]:
    out = []
    with path.open() as handle:
        for line in handle:
            row = json.loads(line)
            out.append({"model": model, "max_tokens": max_tokens,
                        "messages": [{"role": "user", "content": row["text"]}]})
    return out


async def bare_aiohttp(base_url: str, items: list[dict[str, Any]], concurrency: int) -> int:
    """The floor: a semaphore, a session, orjson, nothing else."""
    import aiohttp
    import orjson

    ok = 0
    semaphore = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(body: dict[str, Any]) -> None:
            nonlocal ok
            async with semaphore, session.post(
                base_url + "/chat/completions", data=orjson.dumps(body),
                headers={"Content-Type": "application/json"},
            ) as response:
                data = orjson.loads(await response.read())
                if response.status == 200 and data["choices"][0]["message"]["content"]:
                    ok += 1

        await asyncio.gather(*(one(b) for b in items))
    return ok


async def openai_sdk(base_url: str, items: list[dict[str, Any]], concurrency: int, *,
                     request_timeout_s: float | None = None, retry_all: bool = False) -> int:
    """What users write instead: AsyncOpenAI + a semaphore + tenacity.

    `retry_all` also retries 5xx, timeouts and bodies that are not JSON (what a careful user
    adds after meeting them), so a run against a faulty provider can end with every row ok.
    """
    import json

    from openai import (
        NOT_GIVEN,
        APIConnectionError,
        AsyncOpenAI,
        InternalServerError,
        RateLimitError,
    )
    from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random

    client = AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0,
                         timeout=NOT_GIVEN if request_timeout_s is None else request_timeout_s)
    semaphore = asyncio.Semaphore(concurrency)
    retried: tuple[type[Exception], ...] = (RateLimitError, APIConnectionError)
    if retry_all:
        retried += (InternalServerError, json.JSONDecodeError)
    ok = 0

    async def one(body: dict[str, Any]) -> None:
        nonlocal ok
        async with semaphore:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(6), wait=wait_random(0.1, 1),
                retry=retry_if_exception_type(retried), reraise=True,
            ):
                with attempt:
                    answer = await client.chat.completions.create(**body)
                    if answer.choices[0].message.content:
                        ok += 1

    await asyncio.gather(*(one(b) for b in items), return_exceptions=True)
    await client.close()
    return ok


async def litellm_loop(base_url: str, items: list[dict[str, Any]], concurrency: int) -> int:
    """LiteLLM's acompletion with a semaphore (only when litellm is installed)."""
    import litellm

    semaphore = asyncio.Semaphore(concurrency)
    ok = 0

    async def one(body: dict[str, Any]) -> None:
        nonlocal ok
        async with semaphore:
            answer = await litellm.acompletion(
                model="openai/" + body["model"], messages=body["messages"],
                max_tokens=body["max_tokens"], api_base=base_url, api_key="unused",
                num_retries=5,
            )
            if answer.choices[0].message.content:
                ok += 1

    await asyncio.gather(*(one(b) for b in items), return_exceptions=True)
    return ok


def batchrun_job(job: str) -> int:
    import batchrun

    summary = batchrun.run(job, progress=False)
    return int(summary.ok)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("client", choices=["batchrun", "bare", "openai", "litellm"])
    parser.add_argument("--job", help="batchrun: the job file")
    parser.add_argument("--rows", help="the others: the input JSONL")
    parser.add_argument("--base-url")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--model", default="mock-1")
    parser.add_argument("--max-tokens", type=int, default=20)
    parser.add_argument("--timeout", type=float, help="openai: the client's timeout (s)")
    parser.add_argument("--retry-all", action="store_true",
                        help="openai: retry 5xx, timeouts and malformed bodies too")
    args = parser.parse_args()

    if args.client == "batchrun":
        import batchrun  # noqa: F401 - imports are not what is measured

        cpu, wall = time.process_time(), time.perf_counter()
        ok = batchrun_job(args.job)
    else:
        items = bodies(Path(args.rows), args.model, args.max_tokens)
        run = {"bare": bare_aiohttp, "openai": openai_sdk, "litellm": litellm_loop}[args.client]
        options: dict[str, Any] = {}
        if args.client == "openai":
            import openai  # noqa: F401

            options = {"request_timeout_s": args.timeout, "retry_all": args.retry_all}
        cpu, wall = time.process_time(), time.perf_counter()
        ok = asyncio.run(run(args.base_url, items, args.concurrency, **options))
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    json.dump({"ok": ok, "wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak_mb}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
