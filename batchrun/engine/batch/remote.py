"""One batch's remote steps, each an intent journaled before the call and an outcome after it.

    planned --upload--> uploaded --create--> created --poll...--> ended --download--> downloaded

A crash (or an answer that never came) between `create` and `created` leaves the batch unknown:
it is looked up by listing the provider's batches, by its key in the metadata (OpenAI) or by
the custom_ids of its results (Anthropic, whose batch objects keep no metadata), and created
again only once no batch of the provider can be it. Nothing here decides what a line means;
that is `collect`'s job.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from batchrun.errors import AccountRefused, NotFound, RequestError, RetryableError, TerminalError

if TYPE_CHECKING:
    from tenacity import AsyncRetrying

    from batchrun.providers.batches.base import BatchAPI, BatchInfo
    from batchrun.store.batches import BatchJournal, BatchState

log = logging.getLogger("batchrun")
T = TypeVar("T")

# A batch created this long before its create intent was written cannot be it (clock skew).
LOOKUP_SLACK_S = 600.0
# A batch that ended `completed` with answered lines and no output file is looked at this many
# times more before it is believed: a provider may fill output_file_id in just after.
NO_OUTPUT_CHECKS = 2
KILL_ENV = "BATCHRUN_TEST_KILL_AT"


def kill_point(point: str) -> None:
    """Crash tests: SIGKILL this process right after `point`, if BATCHRUN_TEST_KILL_AT names it."""
    if os.environ.get(KILL_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


class Remote:
    """The remote steps of one provider's batches, journaled as they happen."""

    def __init__(
        self, api: BatchAPI, journal: BatchJournal, policy: AsyncRetrying, *, window: str,
        metadata: Mapping[str, str], create_span_s: float,
    ) -> None:
        self.api = api
        self.journal = journal
        self.policy = policy
        self.window = window
        self.metadata = dict(metadata)
        # How long after its intent a create (with its retries) can still have been carried out.
        self.create_span_s = create_span_s
        self._no_output_seen: dict[str, int] = {}
        self._ruled_out: set[str] = set()  # batches whose results showed they are not ours

    async def record(self, key: str, event: str, **fields: Any) -> BatchState:
        """Journal one event durably (off the event loop), then the crash tests' hook."""
        state = await asyncio.to_thread(self.journal.append, key, event, **fields)
        kill_point(event)
        return state

    def path(self, state: BatchState, suffix: str = ".jsonl") -> Path:
        """A file of the batch under DIR/batches/."""
        return self.journal.folder / f"{state.key}{suffix}"

    async def submit(self, state: BatchState) -> None:
        """planned -> uploaded -> created; a refusal ends the batch `failed`."""
        try:
            if state.state in ("planned", "upload") and self.api.keeps_metadata:
                await self.record(state.key, "upload")
                file_id = await self._retried(lambda: self.api.upload(state.key, self.path(state)))
                await self.record(state.key, "uploaded", file_id=file_id)
            await self.record(state.key, "create")
            info = await self._create(state)
            kill_point("create-sent")  # the batch exists, its id not yet on disk
        except TerminalError as error:
            if isinstance(error, AccountRefused):
                raise
            if refused_for_good(error):
                await self.refused(state, error)
            else:
                await self.ended_without_batch(state, error.message)
            return
        if info is not None:
            await self.created(state, info)

    async def _create(self, state: BatchState) -> BatchInfo | None:
        """Create; None when the answer never came (the batch may exist: looked up later)."""
        metadata = {**self.metadata, "batchrun_key": state.key}
        try:
            return await self._retried(
                lambda: self.api.create(self.path(state), state.file_id, self.window, metadata),
                answered_only=True)
        except (_Unanswered, RetryableError) as error:
            log.warning("%s: no answer to creating batch %s (%s); it is looked up before it is "
                        "created again", state.provider, state.key, error.message)
            return None

    async def created(self, state: BatchState, info: BatchInfo) -> None:
        """Journal a batch the provider has (created now, or found by a lookup)."""
        await self.record(state.key, "created", batch_id=info.id, status=info.status,
                          done=info.done, total=info.total)

    async def ended_without_batch(self, state: BatchState, message: str) -> None:
        """The provider refused the batch as a whole: it ends `failed`, its rows unfinished."""
        log.error("%s: batch %s (%d requests) was refused: %s", state.provider, state.key,
                  state.requests, message)
        await self.record(state.key, "ended", status="failed", message=message, files=[])

    async def refused(self, state: BatchState, error: RequestError) -> None:
        """The provider refused this very batch (a 4xx): sending it again gets the same answer,
        so its rows are recorded as errors with the provider's message."""
        log.error("%s: batch %s (%d requests) was refused: %s; its rows are recorded as errors",
                  state.provider, state.key, state.requests, error.message)
        await self.record(state.key, "ended", status="refused", message=error.message,
                          error_type=error.error_type, files=[])

    async def look_up(self, state: BatchState, known: set[str], *, create: bool = True) -> bool:
        """Resolve a batch whose create had no recorded answer; False while that is unsure.

        Found: journaled `created` (a second batch with the same key is cancelled). Certainly
        absent: created now (or, without `create`, journaled `absent`: back to before the
        create).
        """
        since = (state.create_at or 0.0) - LOOKUP_SLACK_S
        until = (state.create_at or 0.0) + self.create_span_s + LOOKUP_SLACK_S
        unsure = False
        found: list[BatchInfo] = []
        async for info in self.api.listing():
            if info.created_at is not None and info.created_at < since:
                break
            if info.id in known or info.id in self._ruled_out:
                continue
            if info.created_at is not None and info.created_at > until:
                continue  # created after our create could have been carried out
            if self.api.keeps_metadata:
                if info.key == state.key:
                    found.append(info)
                continue
            if info.total != state.requests:
                continue
            if not info.ended:
                unsure = True  # its custom_ids show only once it has ended
                continue
            if await self._holds_ours(state, info):
                found.append(info)
            else:
                self._ruled_out.add(info.id)
        if found:
            await self._keep_one(state, found)
            return True
        if unsure:
            return False
        if create:
            await self.submit(state)
        else:
            await self.record(state.key, "absent")
        return True

    async def _keep_one(self, state: BatchState, found: list[BatchInfo]) -> None:
        """Journal the batch to keep of those found with this key; cancel the others."""
        keep, *extras = sorted(found, key=_preference)
        log.info("%s: batch %s found at the provider as %s", state.provider, state.key, keep.id)
        await self.created(state, keep)
        for extra in extras:
            log.warning("%s: batch %s was created twice; cancelling the copy %s",
                        state.provider, state.key, extra.id)
            if extra.ended:
                continue
            try:
                await self._cancel_call(extra.id)
            except RetryableError as error:  # the batch found is kept whatever becomes of this
                log.warning("%s: cancelling %s failed: %s; cancel it by hand", state.provider,
                            extra.id, error.message)

    async def _holds_ours(self, state: BatchState, info: BatchInfo) -> bool:
        """Whether an ended batch is this one: its first custom_id is one of ours."""
        first = await self._retried(lambda: self.api.first_custom_id(
            info, self.journal.folder, f"{state.key}.probe"))
        if first is None:
            return False
        return first in await asyncio.to_thread(custom_ids_of, self.path(state, ".requests.jsonl"))

    async def poll(self, state: BatchState) -> bool:
        """Look at a created batch; journal what changed. True when something did."""
        assert state.batch_id is not None
        try:
            info = await self._retried(lambda: self.api.get(state.batch_id or ""))
        except NotFound as error:
            log.error("%s: batch %s (%s) is gone from the provider: %s", state.provider,
                      state.key, state.batch_id, error.message)
            await self.record(state.key, "ended", status="lost", message=error.message, files=[])
            return True
        except RetryableError as error:
            log.warning("%s: polling batch %s failed (%s); trying again later", state.provider,
                        state.batch_id, error.message)
            return False
        if info.ended:
            if self._output_missing(state, info):
                return False
            message = self._message(info)
            if message is not None:
                log.error("%s: %s; its %d requests are handled as [batch] unfinished says",
                          state.provider, message, state.requests)
            await self.record(state.key, "ended", status=info.status, done=info.done,
                              total=info.total, counts=dict(info.counts), message=message,
                              output_file_id=info.output_file_id,
                              error_file_id=info.error_file_id, results_url=info.results_url)
            return True
        if (info.status, info.done, info.total) == (state.status, state.done, state.total):
            return False
        await self.record(state.key, "polled", status=info.status, done=info.done,
                          total=info.total, counts=dict(info.counts))
        return True

    def _output_missing(self, state: BatchState, info: BatchInfo) -> bool:
        """Whether to wait for an output file that a completed batch should have."""
        answered = info.counts.get("completed", 0)
        if info.status != "completed" or info.output_file_id or not answered:
            return False
        seen = self._no_output_seen.get(state.key, 0) + 1
        self._no_output_seen[state.key] = seen
        return seen <= NO_OUTPUT_CHECKS

    @staticmethod
    def _message(info: BatchInfo) -> str | None:
        if info.status == "completed" and not info.output_file_id and info.counts.get(
                "completed", 0):
            return (f"batch {info.id} ended completed with {info.counts['completed']} answered "
                    "lines but no output file: their answers cannot be read")
        if info.status == "failed":
            return f"batch {info.id} failed: {info.message or 'the provider gave no reason'}"
        return None

    async def download(self, state: BatchState) -> None:
        """ended -> downloaded: the result files on disk (none for a batch that failed)."""
        if state.status in ("failed", "lost", "refused") or state.batch_id is None:
            await self.record(state.key, "downloaded", files=[])
            return
        from batchrun.providers.batches.base import BatchInfo

        info = BatchInfo(id=state.batch_id, status=state.status or "", phase="ended",
                         done=state.done, total=state.total,
                         output_file_id=state.output_file_id, error_file_id=state.error_file_id,
                         results_url=state.results_url)
        kill_point("download")
        try:
            paths = await self._retried(lambda: self.api.download(info, self.journal.folder,
                                                                  state.key))
        except NotFound as error:
            message = f"a result file of batch {state.batch_id} is not found: {error.message}"
            log.error("%s: %s", state.provider, message)
            await self.record(state.key, "downloaded", files=[], message=message)
            return
        await self.record(state.key, "downloaded", files=[path.name for path in paths])

    async def cancel(self, state: BatchState) -> None:
        """Ask the provider to cancel a created batch (it ends by itself, with what it did)."""
        assert state.batch_id is not None
        await self.record(state.key, "cancel")
        await self._cancel_call(state.batch_id)

    async def _cancel_call(self, batch_id: str) -> None:
        try:
            await self._retried(lambda: _final_refusal(self.api.cancel(batch_id)))
        except TerminalError as error:  # already ended: nothing to cancel
            if isinstance(error, AccountRefused):
                raise
            log.info("%s: batch %s: %s", self.api.http.spec.name, batch_id, error.message)

    async def _retried(
        self, call: Callable[[], Awaitable[T]], *, answered_only: bool = False
    ) -> T:
        """`call` under the [retry] policy; `answered_only`: retry only what the server refused.

        A create that timed out, lost its connection or met a gateway's 5xx may have been
        carried out, so it is not sent again blindly: the lookup decides.
        """
        async for attempt in self.policy.copy():
            with attempt:
                try:
                    return await call()
                except RequestError as error:
                    if answered_only and may_have_happened(error):
                        raise _Unanswered(error) from None
                    raise
        raise AssertionError("unreachable: the policy re-raises")


# Answers that say the request was not carried out, whatever else went wrong (a 408, 409 or
# 425 may come from a gateway after the upstream took the request).
_REFUSED_UNDONE = frozenset({400, 401, 402, 403, 404, 405, 411, 413, 414, 415, 422, 429})


def refused_for_good(error: RequestError) -> bool:
    """A 4xx to an upload or create that the same request would get again (not the account's
    401/403 nor a 429 limit, which change with time)."""
    status = error.status
    return status is not None and 400 <= status < 500 and status not in (401, 403, 408, 409,
                                                                         425, 429)


def may_have_happened(error: RequestError) -> bool:
    """Whether a failed call may still have been carried out by the provider."""
    return error.status is None or error.status not in _REFUSED_UNDONE


class _AlreadyFinal(TerminalError):
    """A cancel refused because the batch has ended (409 at OpenAI, 400 at Anthropic)."""


async def _final_refusal(call: Awaitable[T]) -> T:
    """`call`, its 409 or 400 answer as final: asking again cannot cancel an ended batch."""
    try:
        return await call
    except RequestError as error:
        if error.status in (400, 409):
            raise _AlreadyFinal(error.message, status=error.status) from None
        raise


class _Unanswered(TerminalError):
    """A create whose answer never came: stops the retries, looked up instead."""

    def __init__(self, error: RequestError) -> None:
        super().__init__(error.message)
        self.cause = error


def _preference(info: BatchInfo) -> tuple[bool, float]:
    """Of two copies of a batch, the one going on (or done) before the refused, then the older."""
    return (info.status in ("failed", "cancelled", "cancelling", "canceling"),
            info.created_at or 0.0)


def custom_ids_of(sidecar: Path) -> set[str]:
    """The custom_ids of a batch, from its sidecar."""
    with sidecar.open("rb") as lines:
        return {orjson.loads(line)["cid"] for line in lines}
