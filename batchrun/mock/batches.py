"""Batch jobs of the mock provider: each line's answer, when it is done, and who gets billed.

Shared by both batch APIs (`mock.batch_openai` serves /v1/files and /v1/batches,
`mock.batch_anthropic` serves /v1/messages/batches). A job follows the clock: created at t0, it
ends at t0 + `batch_seconds`. Each line's answer is decided when the job is created, by the same
wire code that answers the online routes, and the line counts as done at its own moment inside
the processing phase, so counts grow while a client polls. The ledger settles a job once its end
has passed (from a timer, or from the first request that sees it), and only then bills the lines
done in time and frees their custom_ids from the live-batch count.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from batchrun.mock.answer import (
    MockAnswer,
    last_user_text,
    make_answer,
    parse_directives,
    prompt_tokens,
    request_key,
    wants_reasoning,
)
from batchrun.mock.config import BatchTally, MockConfig, MockStats

CANCEL_SHARE = 0.1  # of batch_seconds: how long cancelling/canceling lasts
_TRANSPORT_FAULTS = frozenset({"drop", "truncate", "malformed", "error200"})
_SLOW_FAULTS = frozenset({"slow", "hang"})  # they delay an online answer; a batch is slow anyway


class LineWire(Protocol):
    """What a batch line needs of an online wire format (`OpenAIWire`, `AnthropicWire`, ...)."""

    def authorized(self, headers: Mapping[str, str], key: str) -> bool: ...
    def validate(self, body: dict[str, Any]) -> str | None: ...
    def choices(self, body: dict[str, Any]) -> int: ...
    def body(self, answers: list[MockAnswer], *, rid: str, model: str) -> bytes: ...
    def error(self, status: int, message: str) -> bytes: ...
    def overloaded(self) -> bytes: ...
    def context_error(self, tokens: int) -> bytes: ...


def invalid_body(body: Any) -> str | None:
    """What makes a completion body unacceptable to every format, or None."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    if not isinstance(body.get("model"), str):
        return "model: a string is required"
    messages = body.get("messages", body.get("input"))
    if not messages or not isinstance(messages, list | str):
        return "messages (or input): a non-empty list is required"
    return None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one line answers: the status and body the online route would have sent."""

    status: int  # 200, or the HTTP status of the line's error
    payload: bytes
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def ok(self) -> bool:
        """Whether the line succeeded (and is billed once done)."""
        return self.status == 200


UNPLANNED = Outcome(0, b"")  # the lines of a job that fails validation are never answered


@dataclass(slots=True)
class Line:
    """One request of a job."""

    custom_id: str
    key: str  # request_key(body), as the online counters use it
    outcome: Outcome
    done_at: float = math.inf  # monotonic time it is done; inf for a line the window closes on


@dataclass(slots=True)
class Job:
    """One batch, in either API; the API module keeps its own fields beside it."""

    id: str
    api: str  # "openai" | "anthropic"
    seq: int  # creation order, for newest-first lists
    lines: list[Line]
    created: float  # monotonic
    wall: float  # time.time() at creation
    starts: float  # processing starts (validating ends)
    ends: float  # the job ends here unless cancelled
    failed: bool = False  # validation fails at `starts`
    expiring: bool = False  # the window closes on some lines
    cancel_at: float | None = None
    cancel_ends: float = math.inf
    settled: bool = False
    status: str = ""  # the final status, once settled
    seed: str = ""  # of the job's own random draws (line errors, shuffled output)
    on_end: Callable[[Job], str] | None = None  # the API's finishing step; returns the status

    @property
    def end(self) -> float:
        """When the job reaches its final state."""
        return self.cancel_ends if self.cancel_at is not None else self.ends

    @property
    def cutoff(self) -> float:
        """Lines done by this moment are answered; the rest are cancelled or expired."""
        return self.cancel_at if self.cancel_at is not None else self.ends

    def wall_at(self, moment: float) -> float:
        """A monotonic moment of this job as a Unix time."""
        return self.wall + (moment - self.created)

    def done(self, now: float) -> list[Line]:
        """The lines answered by `now`."""
        limit = min(now, self.cutoff)
        return [line for line in self.lines if line.done_at <= limit]


def rfc3339(epoch_s: float) -> str:
    """A UTC timestamp with microseconds, as Anthropic's batch objects give it."""
    moment = datetime.fromtimestamp(epoch_s, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def schedule(lines: list[Line], starts: float, work_ends: float, expire_share: float) -> bool:
    """Spread the lines' done times over [starts, work_ends]; the last share never finishes.

    Returns whether any line expires.
    """
    expiring = 0
    if expire_share > 0 and lines:
        expiring = min(len(lines), max(1, round(expire_share * len(lines))))
    working = lines[: len(lines) - expiring]
    span = work_ends - starts
    for index, line in enumerate(working):
        line.done_at = starts + span * (index + 1) / len(working)
    for line in lines[len(working):]:
        line.done_at = math.inf
    return expiring > 0


class LinePlanner:
    """Decides each line's outcome, as the online route answers the same body."""

    def __init__(self, config: MockConfig, next_rid: Callable[[], str]) -> None:
        self.config = config
        self._next_rid = next_rid

    def plan(
        self, stats: MockStats, wire: LineWire, body: dict[str, Any], rng: random.Random
    ) -> Outcome:
        """The outcome of one line; counts an attempt of its body, as the online routes do."""
        draw = rng.random()  # drawn for every line, so a line's draw does not depend on others
        problem = invalid_body(body) or wire.validate(body)
        if problem is None and body.get("stream") is True:
            problem = "stream: streaming is not supported in batch requests"
        if problem is not None:
            return Outcome(400, wire.error(400, problem))
        key = request_key(body)
        attempt = stats.attempts[key] = stats.attempts.get(key, 0) + 1
        text = last_user_text(body)
        try:
            directives = parse_directives(text)
        except ValueError as exc:
            return Outcome(400, wire.error(400, str(exc)))
        fault = directives.fault_for(attempt) if directives.faults else None
        if fault is None:
            fault = self._drawn_fault(draw)
        if fault is not None and fault not in _SLOW_FAULTS:
            stats.injected[fault] = stats.injected.get(fault, 0) + 1
            return _fault_outcome(wire, body, fault)
        return self._answer(wire, body, text)

    def _drawn_fault(self, draw: float) -> str | None:
        cfg = self.config
        if draw < cfg.batch_500_share:
            return "500"
        if draw < cfg.batch_500_share + cfg.batch_429_share:
            return "429"
        return None

    def _answer(self, wire: LineWire, body: dict[str, Any], text: str) -> Outcome:
        reasoning = wants_reasoning(body, text, self.config.reasoning)
        answers = [
            make_answer(body, text, reasoning=reasoning, index=i) for i in range(wire.choices(body))
        ]
        payload = wire.body(answers, rid=self._next_rid(), model=body["model"])
        return Outcome(
            200,
            payload,
            prompt_tokens=answers[0].prompt_tokens,
            completion_tokens=sum(a.completion_tokens for a in answers),
            reasoning_tokens=sum(a.reasoning_tokens for a in answers),
        )


def _fault_outcome(wire: LineWire, body: dict[str, Any], fault: str) -> Outcome:
    """A directive's or a share's fault as a line error (transport faults become a 500)."""
    if fault == "overloaded":
        return Outcome(529, wire.overloaded())
    if fault == "context":
        return Outcome(400, wire.context_error(prompt_tokens(body) + 8192))
    status = 500 if fault in _TRANSPORT_FAULTS else int(fault)
    return Outcome(status, wire.error(status, f"mock failure: HTTP {status}"))


@dataclass(slots=True)
class BatchLedger:
    """Every job of both APIs: settles them on time, tracks live custom_ids, bills lines."""

    stats: MockStats
    jobs: dict[str, Job] = field(default_factory=dict)
    _timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    _seq: int = 0

    def next_seq(self) -> int:
        """The next creation number."""
        self._seq += 1
        return self._seq

    def add(self, job: Job) -> None:
        """Register a new job: settle what has ended first, so live counts are exact."""
        self.sweep(time.monotonic())
        self.jobs[job.id] = job
        stats = self.stats
        stats.batches_created += 1
        stats.batch_lines += len(job.lines)
        stats.batch_jobs[job.id] = BatchTally(job.api, len(job.lines))
        for line in job.lines:
            self._hold(line.custom_id)
        self._arm(job)

    def observe(self, job: Job, now: float) -> None:
        """Settle `job` if its end has passed; every read of a job goes through here."""
        if not job.settled and now >= job.end:
            self.settle(job)

    def sweep(self, now: float) -> None:
        """Settle every job whose end has passed."""
        for job in list(self.jobs.values()):
            self.observe(job, now)

    def cancel(self, job: Job, now: float, linger_s: float) -> None:
        """Start cancelling: lines not done by `now` are never answered."""
        job.cancel_at = now
        job.cancel_ends = now + linger_s
        self._arm(job)

    def settle(self, job: Job) -> None:
        """The job has ended: bill the lines done in time, free its custom_ids, finish it."""
        job.settled = True
        timer = self._timers.pop(job.id, None)
        if timer is not None:
            timer.cancel()
        stats = self.stats
        billed = [line for line in job.done(job.end) if line.outcome.ok]
        for line in job.lines:
            self._release(line.custom_id)
        for line in billed:
            stats.batch_billed[line.custom_id] = stats.batch_billed.get(line.custom_id, 0) + 1
            stats.batch_answered[line.key] = stats.batch_answered.get(line.key, 0) + 1
            stats.batch_tokens += line.outcome.prompt_tokens + line.outcome.completion_tokens
        stats.batch_lines_billed += len(billed)
        job.status = job.on_end(job) if job.on_end is not None else "ended"
        tally = stats.batch_jobs.setdefault(job.id, BatchTally(job.api, len(job.lines)))
        tally.billed, tally.status = len(billed), job.status
        stats.batches_ended[job.status] = stats.batches_ended.get(job.status, 0) + 1

    def restart(self, stats: MockStats) -> None:
        """New counters (a reset): jobs still live keep holding their custom_ids."""
        self.stats = stats
        for job in self.jobs.values():
            if not job.settled:
                for line in job.lines:
                    self._hold(line.custom_id)

    def close(self) -> None:
        """Cancel the timers (the server stops)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _hold(self, custom_id: str) -> None:
        live = self.stats.batch_live
        held = live[custom_id] = live.get(custom_id, 0) + 1
        peak = self.stats.batch_live_max
        peak[custom_id] = max(peak.get(custom_id, 0), held)

    def _release(self, custom_id: str) -> None:
        live = self.stats.batch_live
        held = live.get(custom_id, 0) - 1
        if held > 0:
            live[custom_id] = held
        else:
            live.pop(custom_id, None)

    def _arm(self, job: Job) -> None:
        """A timer that settles the job at its end, whether or not anyone polls."""
        old = self._timers.pop(job.id, None)
        if old is not None:
            old.cancel()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a unit test): reads settle the job instead
            return
        delay = max(0.0, job.end - time.monotonic())
        self._timers[job.id] = loop.call_later(delay, self._due, job)

    def _due(self, job: Job) -> None:
        self._timers.pop(job.id, None)
        if job.settled:
            return
        if time.monotonic() >= job.end:
            self.settle(job)
        else:  # the loop may fire a timer up to its clock resolution early
            self._arm(job)
