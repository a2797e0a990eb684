"""Per-provider pacing: rpm, tpm, concurrency, learned limits, and a limit told from noise."""

from batchrun.limits.limiter import ProviderLimiter, Ticket

__all__ = ["ProviderLimiter", "Ticket"]
