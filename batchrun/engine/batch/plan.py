"""Input rows -> batch files on disk: the pending requests of the batch variants, split by size.

The input is streamed once; each request still to be answered is written to the open batch file
of its variant (one model and one endpoint per file), which is closed and journaled `planned`
once it holds `max_requests` lines or `max_bytes`. Nothing is held in memory but the files'
counters, so a job of millions of rows plans in the memory of one. A request is skipped when it
is already settled, sits in a live batch, or was handed to the online path.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from batchrun import sources
from batchrun.engine.batch.ids import batch_key, custom_id, seq_of
from batchrun.engine.batch.remote import kill_point
from batchrun.store import done_key

if TYPE_CHECKING:
    from batchrun.job import Job, VariantSpec
    from batchrun.providers.batches.base import BatchAPI
    from batchrun.sources import Request, Shard
    from batchrun.store import Previous
    from batchrun.store.batches import BatchJournal, BatchState


@dataclass(slots=True)
class Pending:
    """What the driver knows before a pass: what is settled, taken, or sent online."""

    previous: Previous
    settled: set[int] = field(default_factory=set)  # done_keys answered by this run
    live: set[str] = field(default_factory=set)  # custom_ids in live batches
    online: set[str] = field(default_factory=set)  # custom_ids handed to the online path
    resubmits: Counter[str] = field(default_factory=Counter)  # custom_id -> batches it redid

    def done(self, key: int) -> bool:
        """Whether the request with this done_key has a final result."""
        previous = self.previous
        return key in self.settled or key in previous.done_ok or key in previous.done_error

    def load(self, journal: BatchJournal) -> None:
        """From the journal: requests in live batches, sent online, resubmitted how often."""
        for path in journal.folder.glob("br-*"):
            state = journal.states.get(path.name.split(".", 1)[0])
            # A batch file whose `planned` line a crash cut off, or the files of a batch whose
            # answers are in the results already (a crash cut its clean-up short).
            if state is None or not state.live:
                path.unlink()
        for state in journal.states.values():
            if state.live:
                self.live.update(custom_ids(journal.folder / f"{state.key}.requests.jsonl"))
            else:
                self.resubmits.update(state.resubmit)
                self.online.update(cid for cid, _ in state.online)

    def release(
        self, folder: Path, state: BatchState, resubmit: list[str], online: list[list[str]]
    ) -> None:
        """A committed batch frees its requests; its files are no longer needed."""
        sidecar = folder / f"{state.key}.requests.jsonl"
        again = set(resubmit) | {cid for cid, _ in online}
        with sidecar.open("rb") as lines:
            for raw in lines:
                item = orjson.loads(raw)
                self.live.discard(item["cid"])
                if item["cid"] not in again:
                    self.settled.add(done_key(item["id"], item["hash"]))
        self.resubmits.update(resubmit)
        self.online.update(cid for cid, _ in online)
        for path in [folder / f"{state.key}.jsonl", sidecar,
                     *(folder / name for name in state.files)]:
            path.unlink(missing_ok=True)


def custom_ids(sidecar: Path) -> list[str]:
    """The custom_ids of a batch, from its sidecar (none once it is gone)."""
    try:
        with sidecar.open("rb") as lines:
            return [orjson.loads(line)["cid"] for line in lines]
    except FileNotFoundError:
        return []


@dataclass(slots=True)
class PlanOutcome:
    """What one pass over the input found and wrote."""

    planned: list[str] = field(default_factory=list)  # batch keys journaled `planned`
    previous_ok: int = 0
    previous_error: int = 0
    revive: set[tuple[str, str]] = field(default_factory=set)


class _OpenBatch:
    """One batch file being written, with its sidecar of request details."""

    def __init__(self, folder: Path, key: str, variant: VariantSpec) -> None:
        self.key = key
        self.variant = variant
        # "xb": a key whose files exist belongs to another batch, never to be overwritten.
        self.data: IO[bytes] = (folder / f"{key}.jsonl").open("xb")
        self.meta: IO[bytes] = (folder / f"{key}.requests.jsonl").open("xb")
        self.count = 0
        self.size = 0
        self.worst = 0.0

    def add(self, line: bytes, request: Request, cid: str) -> None:
        self.data.write(line)
        self.meta.write(orjson.dumps({
            "cid": cid, "id": request.row_id, "sample": request.sample, "hash": request.hash,
            "keep": request.keep,
        }, default=str) + b"\n")
        self.count += 1
        self.size += len(line)
        factor = request.price.batch if request.price is not None else 1.0
        self.worst += request.worst_cost * factor

    def close(self) -> None:
        for handle in (self.data, self.meta):
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()


class Planner:
    """One pass over the input, writing the batch variants' pending requests into batch files."""

    def __init__(
        self, job: Job, variants: Sequence[VariantSpec], apis: Mapping[str, BatchAPI],
        journal: BatchJournal, pending: Pending, *, rows: int, shard: Shard | None,
        only_ids: frozenset[str] | None, stopping: Callable[[], bool],
    ) -> None:
        self.job = job
        self.variants = tuple(variants)
        self.apis = apis
        self.journal = journal
        self.pending = pending
        self.rows = rows
        self.shard = shard
        self.only_ids = only_ids
        self.stopping = stopping
        self._open: dict[str, _OpenBatch] = {}
        self._seq = _highest_seq(journal)
        self._limits = {
            name: (min(job.batch.max_requests, api.max_requests),
                   min(job.batch.max_bytes, api.max_bytes))
            for name, api in apis.items()
        }

    def run(self) -> PlanOutcome:
        """Plan every pending request; the batches it journaled."""
        outcome = PlanOutcome()
        families = {p.name: p.api for p in self.job.providers}
        spec = self.job.input
        remaining = self.rows
        try:
            for batch in sources.iter_rows(spec, self.job.base_dir, self.job.output.keep_columns):
                if remaining <= 0 or self.stopping():
                    break
                for row in batch[:remaining]:
                    if self.shard is not None and not self.shard.owns(row.id):
                        continue
                    if self.only_ids is not None and row.id not in self.only_ids:
                        continue
                    for request in sources.requests_for_row(row, self.variants, families):
                        self._place(request, outcome)
                remaining -= len(batch)
        finally:
            for open_batch in list(self._open.values()):
                self._finish(open_batch, outcome)
        return outcome

    def _place(self, request: Request, outcome: PlanOutcome) -> None:
        pending = self.pending
        key = done_key(request.row_id, request.hash)
        previous = pending.previous
        if key in pending.settled:
            return
        if key in previous.done_ok:
            outcome.previous_ok += 1
            if key in previous.superseded:  # asked for again: A -> B -> A
                outcome.revive.add((request.row_id, request.hash))
            return
        if key in previous.done_error:
            outcome.previous_error += 1
            return
        cid = custom_id(self.journal.run_id, request.row_id, request.hash)
        if cid in pending.live:
            return
        if cid in pending.online:  # the online path answers it
            return
        api = self.apis[request.provider]
        line = api.line(cid, request.body)
        max_requests, max_bytes = self._limits[request.provider]
        open_batch = self._open.get(request.variant)
        if open_batch is not None and (open_batch.count >= max_requests
                                       or open_batch.size + len(line) > max_bytes):
            self._finish(open_batch, outcome)
            open_batch = None
        if open_batch is None:
            open_batch = self._new_batch(request.variant)
        open_batch.add(line, request, cid)
        pending.live.add(cid)

    def _new_batch(self, name: str) -> _OpenBatch:
        """A batch file under a key no batch of the run has had (a crash may leave gaps)."""
        self._seq += 1
        key = batch_key(self.journal.run_id, self._seq)
        if key in self.journal.states:
            raise AssertionError(f"batch key {key} is taken")
        variant = next(v for v in self.variants if v.name == name)
        open_batch = _OpenBatch(self.journal.folder, key, variant)
        self._open[name] = open_batch
        return open_batch

    def _finish(self, open_batch: _OpenBatch, outcome: PlanOutcome) -> None:
        del self._open[open_batch.variant.name]
        open_batch.close()
        if not open_batch.count:
            return
        variant = open_batch.variant
        # Written last: a file without its `planned` line is a crash's leftover, planned again.
        self.journal.append(
            open_batch.key, "planned", variant=variant.name, provider=variant.provider,
            model=variant.model, requests=open_batch.count, bytes=open_batch.size,
            worst_usd=open_batch.worst, price=_price(variant),
        )
        outcome.planned.append(open_batch.key)
        kill_point("planned")


def _highest_seq(journal: BatchJournal) -> int:
    """The highest batch number among the journal's keys and the files left in the folder."""
    names = [*journal.states, *(path.name for path in journal.folder.glob("br-*"))]
    return max((seq for seq in map(seq_of, names) if seq is not None), default=0)


def _price(variant: VariantSpec) -> dict[str, Any] | None:
    price = variant.price
    if price is None:
        return None
    return {"input": price.input, "output": price.output, "cached_input": price.cached_input,
            "batch": price.batch}
