"""Opening a provider's batch API: its wire format, its batch calls, a session of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from batchrun.providers import get_format
from batchrun.providers.batches import KINDS
from batchrun.providers.batches.anthropic import AnthropicBatches
from batchrun.providers.batches.base import BatchAPI
from batchrun.providers.batches.openai import OpenAIBatches
from batchrun.providers.batches.transport import BatchHTTP
from batchrun.providers.http import Endpoint


@asynccontextmanager
async def batch_api(spec: Endpoint, api: str, api_key: str | None) -> AsyncIterator[BatchAPI]:
    """The batch API of a provider whose wire format is `api`, open for calls."""
    wire = get_format(api)
    kind = AnthropicBatches if KINDS[api] == "anthropic" else OpenAIBatches
    async with BatchHTTP(spec, wire.auth_headers(api_key), api_key=api_key) as http:
        yield kind(http, wire)
