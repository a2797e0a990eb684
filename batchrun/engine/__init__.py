"""The write side: queues, workers, retries, budget, typed result records, sink, progress."""

from batchrun.engine.options import RunOptions
from batchrun.engine.runner import arun
from batchrun.engine.summary import RunSummary

__all__ = ["RunOptions", "RunSummary", "arun"]
