"""The write side: queues, workers, retries, budget, typed result records, sink, progress."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchrun.engine.options import RunOptions
    from batchrun.engine.runner import arun
    from batchrun.engine.summary import RunSummary

__all__ = ["RunOptions", "RunSummary", "arun"]

_HOMES = {"RunOptions": "options", "RunSummary": "summary", "arun": "runner"}


def __getattr__(name: str) -> Any:
    # Loaded on first use: the parent of shard processes needs the summary, not the HTTP stack.
    if name in _HOMES:
        from importlib import import_module

        return getattr(import_module(f"batchrun.engine.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'batchrun.engine' has no attribute {name!r}")
