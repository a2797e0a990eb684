"""Results -> journal lines as they arrive -> Parquet parts at each checkpoint.

An answer counts as received once it is in the journal. The lines that the workers finish in one
turn of the event loop go out together in one write(2), and a worker waits for that write before
it takes its next request, so an answer is always in the kernel's hands before its worker moves
on: a killed process loses only what was still in flight. At a checkpoint the journal moves on to
a new segment and the finished one becomes a Parquet part (temporary name, fsync, rename, fsync
of the folder), written in a thread so the event loop keeps sending; then the segment is deleted.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from batchrun import store
from batchrun.engine.record import ResultRecord
from batchrun.errors import StorageError


class Sink:
    """Appends results to the journal and checkpoints them as Parquet parts."""

    def __init__(self, root: Path, *, flush_rows: int, flush_seconds: float) -> None:
        self.root = root
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._seq = 0
        self._journal: store.JournalFile | None = None
        # The journal lines since the last checkpoint: the part is built from exactly what a
        # crash recovery would read back, so both give the same column types.
        self._buffer: list[bytes] = []
        # Lines of this loop turn not yet written, whether their write is scheduled, and the
        # error that ended journaling (nothing is written after a failed write).
        self._unwritten: list[bytes] = []
        self._write_scheduled = False
        self._failed: StorageError | None = None
        self._last_flush = time.monotonic()
        self._flush_lock = asyncio.Lock()

    def open(self) -> None:
        """Recover what an earlier run left, then start a new journal segment."""
        self._seq = store.recover(self.root)
        self._journal = store.JournalFile(store.journal_path(self.root, self._seq))

    async def append(self, record: ResultRecord) -> None:
        """Record one result; once this returns it survives a kill of this process."""
        await self.append_lines([record.to_line()])

    async def append_lines(self, lines: list[bytes]) -> None:
        """Record journal lines as they are (results written again by a rerun)."""
        if not lines:
            return
        if self._failed is not None:
            raise self._failed
        self._unwritten.extend(lines)
        if not self._write_scheduled:
            self._write_scheduled = True
            asyncio.get_running_loop().call_soon(self._write_unwritten)
        # The write was scheduled before this task's wake-up, and callbacks run in order: when
        # the task resumes, its line has been written (or the write has failed).
        await asyncio.sleep(0)
        if self._failed is not None:
            raise self._failed

    def _write_unwritten(self) -> None:
        lines, self._unwritten = self._unwritten, []
        self._write_scheduled = False
        assert self._journal is not None
        try:
            self._journal.write(b"".join(lines))
        except StorageError as error:
            self._failed = error
            return
        self._buffer.extend(lines)

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
            lines, self._buffer = self._buffer, []
            seq, journal = self._seq, self._journal
            self._seq += 1
            self._journal = store.JournalFile(store.journal_path(self.root, self._seq))
            assert journal is not None
            journal.close()
            await asyncio.to_thread(self._checkpoint, seq, lines)

    def _checkpoint(self, seq: int, lines: list[bytes]) -> None:
        try:
            store.write_atomically(store.lines_to_table(lines), store.part_path(self.root, seq))
        except OSError as error:
            # The journal segment stays: its results are safe and the next run checkpoints it.
            raise StorageError.from_os_error(self.root, error) from None
        store.journal_path(self.root, seq).unlink(missing_ok=True)

    async def close(self) -> None:
        """Final checkpoint; the empty journal segment is removed."""
        await self.flush()
        if self._journal is not None:
            self._journal.close()
            self._journal = None
            path = store.journal_path(self.root, self._seq)
            if path.exists() and path.stat().st_size == 0:
                path.unlink()
