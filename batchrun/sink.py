"""Results -> journal lines as they arrive -> Parquet parts at each checkpoint.

An answer counts as received once it is in the journal: one plain `write` per result, so a killed
process loses nothing the kernel already has. At a checkpoint the journal moves on to a new
segment and the finished one becomes a Parquet part (temporary name, fsync, rename, fsync of the
folder), written in a thread so the event loop keeps sending; then the segment is deleted.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import time
from pathlib import Path
from typing import IO, Any

import orjson

from batchrun import store
from batchrun.errors import OutputDirError


class OutputLock:
    """An exclusive flock on DIR/.lock; the kernel drops it when its holder dies."""

    def __init__(self, root: Path) -> None:
        self.path = root / store.LOCK
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or refuse with who holds it."""
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise OutputDirError(
                f"{self.path.parent}: another batchrun run (pid {holder}) is using this "
                "output directory; wait for it to finish or stop it first"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        """Drop the lock."""
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None


def prepare_output(root: Path, *, fresh: bool) -> None:
    """Create the output directory, or clear it for `--fresh` when it is batchrun's own."""
    if root.exists() and not root.is_dir():
        raise OutputDirError(f"{root}: exists and is not a directory; choose another output path")
    if fresh and root.exists():
        foreign = sorted(p.name for p in root.iterdir() if p.name not in store.OWNED_NAMES)
        if foreign:
            raise OutputDirError(
                f"{root}: --fresh refuses to clear a directory holding files batchrun did not "
                f"make ({', '.join(foreign[:5])}); choose an empty or batchrun-made directory"
            )
        for name in (store.JOURNAL_DIR, store.PARTS_DIR):
            shutil.rmtree(root / name, ignore_errors=True)
        (root / store.MANIFEST).unlink(missing_ok=True)
    (root / store.JOURNAL_DIR).mkdir(parents=True, exist_ok=True)
    (root / store.PARTS_DIR).mkdir(parents=True, exist_ok=True)


def recover(root: Path) -> int:
    """Checkpoint journal segments a previous run left behind; returns the next free number."""
    parts = {store.parse_seq(p) for p in store.list_parts(root)}
    for tmp in (root / store.PARTS_DIR).glob("*.tmp"):
        tmp.unlink()  # a part whose write was cut short; its journal is still there
    highest = max(parts, default=0)
    for journal in store.list_journals(root):
        seq = store.parse_seq(journal)
        highest = max(highest, seq)
        if seq not in parts:
            records = store.read_journal(journal)
            if records:
                part = root / store.PARTS_DIR / store.segment_name(seq, ".parquet")
                store.write_atomically(store.records_to_table(records), part)
        journal.unlink()
    return highest + 1


class Sink:
    """Appends results to the journal and checkpoints them as Parquet parts."""

    def __init__(self, root: Path, *, flush_rows: int, flush_seconds: float) -> None:
        self.root = root
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._seq = 0
        self._journal: IO[bytes] | None = None
        # The journal lines since the last checkpoint: the part is built from exactly what a
        # crash recovery would read back, so both give the same column types.
        self._buffer: list[bytes] = []
        self._last_flush = time.monotonic()
        self._flush_lock = asyncio.Lock()

    def open(self) -> None:
        """Recover what an earlier run left, then start a new journal segment."""
        self._seq = recover(self.root)
        self._open_segment()

    def _open_segment(self) -> None:
        path = self.root / store.JOURNAL_DIR / store.segment_name(self._seq, ".jsonl")
        # Unbuffered: each result is one write(2), in the kernel's hands at once.
        self._journal = path.open("ab", buffering=0)

    def append(self, record: dict[str, Any]) -> None:
        """Record one result; it survives a kill of this process from now on."""
        assert self._journal is not None
        line = orjson.dumps(record, default=str) + b"\n"  # str: Decimal and other exotic inputs
        self._journal.write(line)
        self._buffer.append(line)

    @property
    def pending_rows(self) -> int:
        """Results journaled since the last checkpoint."""
        return len(self._buffer)

    def due(self) -> bool:
        """Whether a checkpoint is due (enough rows, or enough time)."""
        if not self._buffer:
            return False
        return (
            len(self._buffer) >= self.flush_rows
            or time.monotonic() - self._last_flush >= self.flush_seconds
        )

    async def flush(self) -> None:
        """Turn the current journal segment into a Parquet part, off the event loop."""
        async with self._flush_lock:
            self._last_flush = time.monotonic()
            if not self._buffer:
                return
            records, self._buffer = self._buffer, []
            seq, journal = self._seq, self._journal
            self._seq += 1
            self._open_segment()
            assert journal is not None
            journal.close()
            await asyncio.to_thread(self._checkpoint, seq, records)

    def _checkpoint(self, seq: int, lines: list[bytes]) -> None:
        part = self.root / store.PARTS_DIR / store.segment_name(seq, ".parquet")
        records = [orjson.loads(line) for line in lines]
        store.write_atomically(store.records_to_table(records), part)
        (self.root / store.JOURNAL_DIR / store.segment_name(seq, ".jsonl")).unlink(missing_ok=True)

    async def close(self) -> None:
        """Final checkpoint; the empty journal segment is removed."""
        await self.flush()
        if self._journal is not None:
            self._journal.close()
            self._journal = None
            path = self.root / store.JOURNAL_DIR / store.segment_name(self._seq, ".jsonl")
            if path.exists() and path.stat().st_size == 0:
                path.unlink()
