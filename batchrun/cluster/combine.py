"""The shards' summaries as one: what the whole run did."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from batchrun.engine import RunSummary

# When shards stopped for different reasons, the one the user must act on first is shown.
_STOP_ORDER = ("interrupted", "budget")


def combine(summaries: Sequence[RunSummary], output: Path) -> RunSummary:
    """Sum the shards' counts, tokens and cost; `output` is the run's directory (not a shard's).

    Elapsed is the longest shard's, since they ran side by side.
    """
    if not summaries:
        raise ValueError("no shard summaries to combine")
    first = summaries[0]
    tokens: dict[str, int] = {}
    for summary in summaries:
        for kind, count in summary.tokens.items():
            tokens[kind] = tokens.get(kind, 0) + count
    costs = [s.cost_usd for s in summaries if s.cost_usd is not None]
    stops = {s.stopped for s in summaries}
    return RunSummary(
        name=first.name,
        output=output,
        total=sum(s.total for s in summaries),
        ok=sum(s.ok for s in summaries),
        error=sum(s.error for s in summaries),
        skipped=sum(s.skipped for s in summaries),
        pending=sum(s.pending for s in summaries),
        tokens=tokens,
        cost_usd=sum(costs) if costs else None,
        elapsed_s=max(s.elapsed_s for s in summaries),
        stopped=next((reason for reason in _STOP_ORDER if reason in stops), None),
        # Every shard hears the same refusal of a shared key: say it once.
        refused=tuple(dict.fromkeys(stop for s in summaries for stop in s.refused)),
        refused_requests=sum(s.refused_requests for s in summaries),
        unsettled=sum(s.unsettled for s in summaries),
    )
