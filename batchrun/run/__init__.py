"""The write side: queues, workers, retries, budget, typed result records, sink, progress."""

from batchrun.run.runner import RunOptions, arun
from batchrun.run.summary import RunSummary

__all__ = ["RunOptions", "RunSummary", "arun"]
