"""What the user sees while a run goes: a tqdm bar on a terminal, else a log line now and then."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

import orjson
from tqdm import tqdm

from batchrun.engine.tally import Tally

log = logging.getLogger("batchrun")

LOG_EVERY_S = 10.0
EVENT_EVERY_S = 0.5  # progress events for a parent process (--processes): its bar's pace


class Progress:
    """Reads the tally on a timer; the hot path never touches the display."""

    def __init__(
        self,
        *,
        total: int,
        already_done: Callable[[], int],
        tally: Tally,
        enabled: bool,
        waiting: Callable[[], str] = lambda: "",
        events: bool = False,
    ) -> None:
        self._tally = tally
        self._waiting = waiting
        self._started = time.monotonic()
        self._last_log = self._started
        self._shown = 0
        self._bar: tqdm[None] | None = None
        self._total = total
        self._already = already_done
        self._events = events
        self._last_event = 0.0
        self._log_lines = enabled and not events and not sys.stderr.isatty()
        if enabled and not events and sys.stderr.isatty():
            self._bar = tqdm(
                total=total, unit="req", dynamic_ncols=True,
                smoothing=0.1, file=sys.stderr,
            )

    def refresh(self) -> None:
        """Bring the display up to date with the tally."""
        tally = self._tally
        done = tally.ok + tally.error + self._already()
        if self._events:
            self._event(done)
            return
        elapsed = max(time.monotonic() - self._started, 1e-9)
        text = self.describe(elapsed)
        if self._bar is not None:
            self._bar.update(done - self._shown)
            self._shown = done
            self._bar.set_postfix_str(text, refresh=True)
        elif self._log_lines and time.monotonic() - self._last_log >= LOG_EVERY_S:
            self._last_log = time.monotonic()
            log.info("%d/%d requests; %s", done, self._total, text)

    def describe(self, elapsed: float) -> str:
        """ok/error counts, rates and cost so far, and what the runner waits on."""
        tally = self._tally
        parts = [
            f"ok={tally.ok}",
            f"err={tally.error}",
            f"{(tally.ok + tally.error) / elapsed:.1f} req/s",
            f"{tally.total_tokens / elapsed:.0f} tok/s",
        ]
        if tally.priced_rows:
            parts.append(f"${tally.cost_usd:.4f}")
        if tally.rate_limited:
            parts.append(f"429s={tally.rate_limited}")
        waiting = self._waiting()
        if waiting:
            parts.append(waiting)
        return " ".join(parts)

    def _event(self, done: int, *, final: bool = False) -> None:
        """One JSON line on stdout, which the parent of a shard process reads."""
        now = time.monotonic()
        if not final and now - self._last_event < EVENT_EVERY_S:
            return
        self._last_event = now
        tally = self._tally
        event = {"event": "progress", "done": done, "total": self._total, "ok": tally.ok,
                 "error": tally.error, "tokens": tally.total_tokens,
                 "cost_usd": tally.cost_usd if tally.priced_rows else None,
                 "rate_limited": tally.rate_limited}
        sys.stdout.write(orjson.dumps(event).decode() + "\n")
        sys.stdout.flush()

    def close(self) -> None:
        """Final refresh and tear-down of the bar."""
        if self._events:
            tally = self._tally
            self._event(tally.ok + tally.error + self._already(), final=True)
        if self._bar is not None:
            self.refresh()
            self._bar.close()
