"""Per-provider pacing: requests/min, tokens/min, concurrency, learned limits, 429 handling."""

from batchrun.limits.limiter import ProviderLimiter, Ticket

__all__ = ["ProviderLimiter", "Ticket"]
