"""Provider batch APIs: OpenAI's Files + Batches (and clones), Anthropic's Message Batches.

`batch_api_names()` says which wire formats have one (the job loader asks, cheaply: nothing
here imports the transport); `batchrun.providers.batches.session.batch_api` opens one.
"""

from __future__ import annotations

# Wire format name -> the batch API that carries its bodies.
KINDS = {"openai": "openai", "responses": "openai", "anthropic": "anthropic"}


def batch_api_names() -> tuple[str, ...]:
    """The wire formats (`api = ...`) whose providers have a batch API here."""
    return tuple(sorted(KINDS))


__all__ = ["KINDS", "batch_api_names"]
