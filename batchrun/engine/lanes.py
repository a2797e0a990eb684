"""One lane per provider in use: its HTTP client and its limiter (and the in-process mock)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from batchrun.job import Job, ProviderSpec
from batchrun.limits import ProviderLimiter
from batchrun.limits.shared import SharedLimit
from batchrun.providers import get_format
from batchrun.providers.http import ProviderClient


@dataclass(frozen=True, slots=True)
class Lane:
    """What one provider's workers share: its HTTP client and its limiter."""

    client: ProviderClient
    limiter: ProviderLimiter


@asynccontextmanager
async def open_lanes(
    job: Job, keys: dict[str, str | None], shared: Mapping[str, SharedLimit] | None = None
) -> AsyncIterator[dict[str, Lane]]:
    """A client and a limiter per provider in use (and the in-process mock where asked for).

    `shared` gives a provider's limit that other processes spend too (shards on Ray).
    """
    async with AsyncExitStack() as stack:
        lanes: dict[str, Lane] = {}
        mock_url: str | None = None
        for name, api_key in keys.items():
            spec = job.provider(name)
            if spec.base_url == "mock":
                if mock_url is None:
                    mock_url = await stack.enter_async_context(_in_process_mock())
                spec = dataclasses.replace(spec, base_url=mock_url)
            limiter = _limiter(spec, job.retry.retry_after_max_s,
                               None if shared is None else shared.get(name))
            client = ProviderClient(
                spec, get_format(spec.api), api_key=api_key, reasoning=job.parse.reasoning,
                keep_raw=job.output.keep_raw, on_headers=limiter.observe,
            )
            await stack.enter_async_context(client)
            lanes[name] = Lane(client=client, limiter=limiter)
        yield lanes


def _limiter(
    spec: ProviderSpec, max_pause_s: float, shared: SharedLimit | None
) -> ProviderLimiter:
    return ProviderLimiter(
        requests_per_minute=spec.requests_per_minute,
        tokens_per_minute=spec.tokens_per_minute,
        input_tokens_per_minute=spec.input_tokens_per_minute,
        output_tokens_per_minute=spec.output_tokens_per_minute,
        max_concurrency=spec.max_concurrency,
        max_pause_s=max_pause_s,
        shared=shared,
    )


@asynccontextmanager
async def _in_process_mock() -> AsyncIterator[str]:
    from batchrun.mock import MockProvider

    mock = MockProvider()
    url = await mock.start()
    try:
        yield url
    finally:
        await mock.stop()
