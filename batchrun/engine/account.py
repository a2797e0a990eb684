"""Account refusals: a provider that refuses the account (no quota, no balance, a revoked key)
is stopped after a few in a row, and its rows are left pending for a rerun after the fix.

Sending the rest of a million rows to an empty account only fills the output with errors and
the log with retries; every such request would fail alike. A refused request is never recorded
as an error: it stays pending, so the same command, rerun once the account is fixed, sends it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from batchrun.errors import AccountRefused, AuthenticationFailed


@dataclass(frozen=True, slots=True)
class Stop:
    """Why sending to one provider stopped, and what to do about it."""

    provider: str
    error_type: str
    message: str
    stopped: bool  # False: refused now and then, answering in between; nothing was stopped

    @property
    def advice(self) -> str:
        """What the user should do next."""
        if self.error_type == AuthenticationFailed.__name__:
            return "fix the key (or its permissions), then run the same command again"
        return "top up the account or fix its billing, then run the same command again"


@dataclass(slots=True)
class AccountGuard:
    """Counts each provider's account refusals in a row and says when to stop it.

    `stop_after` is each provider's `stop_after_account_errors`: refusals in a row, with no
    answer between them, that stop it.
    """

    stop_after: dict[str, int] = field(default_factory=dict)
    in_a_row: dict[str, int] = field(default_factory=dict)
    refused: int = 0  # requests left pending by a refusal, over the whole run
    # Per provider, its last refusal (and whether it stopped the provider).
    stops: dict[str, Stop] = field(default_factory=dict)

    def refusal(self, provider: str, error: AccountRefused) -> bool:
        """Count one refusal; True when this one stops the provider."""
        self.refused += 1
        count = self.in_a_row.get(provider, 0) + 1
        self.in_a_row[provider] = count
        if self.stopped(provider):
            return False
        stops = count >= self.stop_after[provider]
        self.stops[provider] = Stop(provider, error.error_type, error.message, stops)
        return stops

    def answered(self, provider: str) -> None:
        """An answer (or any other outcome) came: the refusals were not in a row after all."""
        self.in_a_row[provider] = 0

    def stopped(self, provider: str) -> bool:
        """Whether sending to `provider` has stopped."""
        stop = self.stops.get(provider)
        return stop is not None and stop.stopped
