"""Journal segments: results appended as JSON lines, each write whole or not at all.

A write that the disk cuts short (ENOSPC, a file-size limit) is finished if the kernel takes the
rest, and otherwise cut back off, so a later write never lands behind a fragment and two results
are never glued into one unreadable line. The reader's rule matches: only the last line of a
segment can be torn (a write cut by a crash or a power loss), and it is skipped; an unreadable
line before the last means the segment was damaged some other way, and reading stops with an
error rather than silently dropping a paid-for result.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from batchrun.errors import StorageError


class JournalFile:
    """One journal segment open for appending."""

    __slots__ = ("_fd", "_size", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size

    def write(self, data: bytes) -> None:
        """Append `data` (whole lines) in as few write(2) calls as the kernel allows."""
        if self._fd is None:
            raise StorageError(f"{self.path}: the journal is closed after a failed write")
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as error:
            self._cut_back()
            raise StorageError.from_os_error(self.path.parent.parent, error) from None
        self._size += len(data)

    def _cut_back(self) -> None:
        # Leave the segment as it was before this write: no fragment for the next line to join.
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self._size)
        except OSError:
            # Could not cut it: write nothing more here, so the fragment stays the last line.
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Close the segment (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def read_journal_lines(path: Path) -> list[bytes]:
    """The complete result lines of one journal segment; a torn last line is left out."""
    with path.open("rb") as handle:
        lines = handle.read().split(b"\n")
    last = len(lines) - 1
    while last >= 0 and not lines[last].strip():
        last -= 1
    complete = []
    for number, line in enumerate(lines[: last + 1], 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            if number == last + 1:
                continue  # a write cut short by a kill: the request will be sent again
            raise StorageError(
                f"{path}:{number}: damaged journal line before the end of the segment; "
                "move the file aside and rerun to send those requests again"
            ) from None
        if isinstance(record, dict):
            complete.append(line + b"\n")
    return complete


def read_journal(path: Path) -> list[dict[str, Any]]:
    """Records of one journal segment; a torn last line is skipped."""
    return [orjson.loads(line) for line in read_journal_lines(path)]
