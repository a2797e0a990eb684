"""The Ray side of a shared limit: one actor per provider holds its schedule, shards lease it.

The actor's body is `LeaseGranter`, a `LeaseLedger` behind remote calls; a shard reaches it
through `ray_granter`, which `LeaseBlocks` calls once per block. Nothing here imports Ray: the
handle is whatever `ray.remote(LeaseGranter)` made, and awaiting its calls is Ray's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from batchrun.limits.shared import Amounts, Granter, LeaseLedger, StatedLimits


class LeaseGranter:
    """The body of one provider's lease actor: its schedule, asked for blocks by every shard."""

    def __init__(self, limits: StatedLimits) -> None:
        self._ledger = LeaseLedger(limits)

    def grant(self, wanted: Sequence[float], returned: Sequence[float]) -> tuple[float, ...]:
        """Reserve `wanted`, take back `returned`: per resource, seconds until the block is due."""
        return self._ledger.grant(wanted, returned)

    def granted(self) -> tuple[float, int]:
        """Requests leased so far, and how many asks it took (for progress and the benchmark)."""
        return self._ledger.granted[0], self._ledger.asks


def ray_granter(actor: Any) -> Granter:
    """A `Granter` that asks the lease actor `actor` (a Ray actor handle of a `LeaseGranter`)."""

    async def grant(wanted: Amounts, returned: Amounts) -> Sequence[float]:
        delays: Sequence[float] = await actor.grant.remote(tuple(wanted), tuple(returned))
        return delays

    return grant
