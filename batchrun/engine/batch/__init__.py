"""Provider batch APIs in a run: batch files planned from the input, the per-batch state
machine at the provider, polling, and collecting answers into the run's results."""

from batchrun.engine.batch.driver import BatchDriver, OnlinePass

__all__ = ["BatchDriver", "OnlinePass"]
