"""DIR/batches/: the provider batches of a run, as an append-only journal of their states.

    DIR/batches/journal.jsonl        one JSON object per line, fsynced one by one
    DIR/batches/<key>.jsonl          the batch file as uploaded (one request body a line)
    DIR/batches/<key>.requests.jsonl what maps each custom_id back to its request
    DIR/batches/<key>.*.jsonl        result files, once downloaded

Every line has `at` (Unix time), `key` (batchrun's batch key) and `event`. A batch goes
planned -> upload -> uploaded -> create -> created -> (polled ...) -> ended -> downloaded ->
commit -> committed (`absent`: a lookup found that the create never happened, so the batch is
back where it was before it). `upload`, `create`, `cancel` and `commit` are intents, written
before the remote call (or the result writes) they announce, so a crash between an intent and
its outcome is resumed by looking the batch up, never by doing it again blindly. The first
line, with key "", names the run (`run_id`), which every batch's key and custom_ids carry.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from batchrun.store.layout import BATCHES_DIR

JOURNAL_NAME = "journal.jsonl"
# What each event says of the batch's state; "polled", "cancel" and others leave it as it is.
STATES = ("planned", "upload", "uploaded", "create", "created", "ended", "downloaded",
          "commit", "committed")
# The fields an event line may set; the others come from the event itself.
_FIELDS = ("variant", "provider", "model", "requests", "bytes", "worst_usd", "price", "file_id",
           "batch_id", "status", "done", "total", "counts", "message", "files", "ok", "error",
           "output_file_id", "error_file_id", "results_url", "resubmit", "online", "cost_usd",
           "error_type")


@dataclass(slots=True)
class BatchState:
    """One batch, folded from its journal lines."""

    key: str
    state: str = "planned"
    variant: str = ""
    provider: str = ""
    model: str = ""
    requests: int = 0
    bytes: int = 0
    worst_usd: float = 0.0
    price: dict[str, Any] | None = None
    planned_at: float = 0.0
    file_id: str | None = None
    batch_id: str | None = None
    create_at: float | None = None  # when the create intent was written
    submitted_at: float | None = None
    status: str | None = None  # the provider's word, as last seen
    done: int = 0
    total: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    message: str | None = None
    error_type: str | None = None  # the provider refused the batch itself: its rows' error
    cancel_requested: bool = False
    output_file_id: str | None = None
    error_file_id: str | None = None
    results_url: str | None = None
    files: list[str] = field(default_factory=list)
    ended_at: float | None = None
    ok: int = 0
    error: int = 0
    resubmit: list[str] = field(default_factory=list)  # custom_ids to send again
    online: list[list[str]] = field(default_factory=list)  # [custom_id, row id] to send online
    cost_usd: float | None = None

    @property
    def live(self) -> bool:
        """Planned or at the provider, its answers not yet written: its requests are taken."""
        return self.state != "committed"

    @property
    def open_remote(self) -> bool:
        """Created at the provider and not yet seen in a final state."""
        return self.state in ("create", "created")

    def apply(self, line: dict[str, Any]) -> None:
        """Fold one journal line into this state."""
        event = line.get("event")
        for name in _FIELDS:
            if name in line:
                setattr(self, name, line[name])
        if event == "planned":
            self.planned_at = float(line.get("at", 0.0))
        elif event == "create":
            self.create_at = float(line.get("at", 0.0))
        elif event == "created":
            self.submitted_at = float(line.get("at", 0.0))
        elif event == "cancel":
            self.cancel_requested = True
        elif event == "ended":
            self.ended_at = float(line.get("at", 0.0))
        if event in STATES:
            self.state = str(event)
        elif event == "absent":  # a lookup found no such batch: it was never created
            self.state = "uploaded" if self.file_id else "planned"

    def to_dict(self) -> dict[str, Any]:
        """What `report` shows of the batch."""
        return {"key": self.key, "state": self.state, "variant": self.variant,
                "provider": self.provider, "batch_id": self.batch_id, "status": self.status,
                "requests": self.requests, "done": self.done, "total": self.total,
                "counts": dict(self.counts), "ok": self.ok, "error": self.error,
                "resubmitted": len(self.resubmit), "online": len(self.online),
                "message": self.message, "submitted_at": self.submitted_at,
                "ended_at": self.ended_at, "cost_usd": self.cost_usd}


def batches_folder(root: Path) -> Path:
    """Where a run's batch files and journal live."""
    return root / BATCHES_DIR


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The journal's lines, skipping any a crash cut short.

    A line is fsynced before the call it announces is made, so a torn line stands for a step
    that never happened. The next run ends it with a newline and appends after it, which is why
    a torn line may sit anywhere, not only at the end.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(line, dict):
            yield line


def read_batches(root: Path) -> tuple[str | None, dict[str, BatchState]]:
    """The run id and every batch's state, in the order they were planned."""
    run_id: str | None = None
    states: dict[str, BatchState] = {}
    for line in read_lines(batches_folder(root) / JOURNAL_NAME):
        key = str(line.get("key", ""))
        if not key:
            run_id = line.get("run_id") or run_id
            continue
        states.setdefault(key, BatchState(key)).apply(line)
    return run_id, states


class BatchJournal:
    """The run's batch journal, open for appending; each line is fsynced before it returns."""

    def __init__(self, root: Path) -> None:
        self.folder = batches_folder(root)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / JOURNAL_NAME
        run_id, self.states = read_batches(root)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if _ends_torn(self.path):
            os.write(self._fd, b"\n")  # a torn last line stays alone on its line
        if run_id is None:
            run_id = secrets.token_hex(4)
            self._write({"at": time.time(), "key": "", "event": "run", "run_id": run_id})
        self.run_id: str = run_id

    def append(self, key: str, event: str, **fields: Any) -> BatchState:
        """Write one event of batch `key` durably and fold it in; the batch's new state."""
        line = {"at": time.time(), "key": key, "event": event, **fields}
        self._write(line)
        state = self.states.setdefault(key, BatchState(key))
        state.apply(line)
        return state

    def _write(self, line: dict[str, Any]) -> None:
        os.write(self._fd, orjson.dumps(line) + b"\n")
        os.fsync(self._fd)

    def close(self) -> None:
        """Close the file."""
        os.close(self._fd)


def _ends_torn(path: Path) -> bool:
    size = path.stat().st_size
    if size == 0:
        return False
    with path.open("rb") as file:
        file.seek(size - 1)
        return file.read(1) != b"\n"
