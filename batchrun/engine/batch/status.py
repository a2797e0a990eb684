"""The progress line of a run's batches: their states, line counts and time since submission."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from batchrun.store.batches import BatchState

# The provider's own words, in the order a batch goes through them.
_ORDER = ("planned", "submitting", "validating", "in_progress", "finalizing", "cancelling",
          "canceling", "ended", "committed")


def phase_of(state: BatchState) -> str:
    """What to call a batch's state in the progress line."""
    if state.state in ("planned", "upload", "uploaded", "create"):
        return "planned" if state.state == "planned" else "submitting"
    if state.state == "created":
        return state.status or "submitted"
    if state.state == "committed":
        return "committed"
    return "collecting"


def describe(states: Iterable[BatchState], now: float) -> str:
    """`batches: 2 in_progress (340/1,000 lines), 1 finalizing, 1 committed; 3m12s since ...`."""
    groups: dict[str, list[BatchState]] = {}
    for state in states:
        groups.setdefault(phase_of(state), []).append(state)
    if not groups:
        return ""
    parts = []
    for phase in sorted(groups, key=lambda p: _ORDER.index(p) if p in _ORDER else 99):
        members = groups[phase]
        text = f"{len(members)} {phase}"
        if phase not in ("planned", "committed"):
            done = sum(s.done for s in members)
            total = sum(s.total or s.requests for s in members)
            text += f" ({done:,}/{total:,} lines)"
        parts.append(text)
    submitted = [s.submitted_at for s in states_open(groups) if s.submitted_at]
    since = f"; {_duration(now - min(submitted))} since submission" if submitted else ""
    return "batches: " + ", ".join(parts) + since


def states_open(groups: dict[str, list[BatchState]]) -> list[BatchState]:
    """The batches still at the provider."""
    return [s for phase, members in groups.items() if phase not in ("planned", "committed")
            for s in members]


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _still_open(states: Iterable[BatchState]) -> tuple[int, int]:
    """Batches at the provider not yet seen ended, and their requests."""
    open_now = [s for s in states if s.open_remote]
    return len(open_now), sum(s.requests for s in open_now)


def _batches(count: int) -> str:
    return f"{count} batch{'' if count == 1 else 'es'}"


def detached_line(states: Iterable[BatchState], job: str, root: Path) -> str:
    """What --detach says on its way out: what runs where, and how to collect or cancel it."""
    count, requests = _still_open(states)
    if not count:
        return ""
    return (f"detached: {_batches(count)} ({requests} requests) running at the provider; run "
            f"`batchrun run {job}` again to collect them, or `batchrun cancel {root}` to cancel "
            "them")


def interrupted_line(states: Iterable[BatchState], root: Path) -> str:
    """What Ctrl-C says: the batches go on at the provider, and the way back to them."""
    count, _ = _still_open(states)
    if not count:
        return ""
    return (f"interrupted: {_batches(count)} still running at the provider (they go on there); "
            "run the same command again to collect them (nothing is submitted twice), or "
            f"`batchrun cancel {root}` to cancel them")
