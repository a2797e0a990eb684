"""The write side: queues, workers, retries, budget, typed result records, sink, progress."""

from batchrun.run.options import RunOptions
from batchrun.run.runner import arun
from batchrun.run.summary import RunSummary

__all__ = ["RunOptions", "RunSummary", "arun"]
