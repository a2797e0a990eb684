"""Owning an output directory: the flock of the live run, and clearing it for `--fresh`."""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import IO

from batchrun.errors import OutputDirError
from batchrun.store import layout


class OutputLock:
    """An exclusive flock on DIR/.lock; the kernel drops it when its holder dies."""

    def __init__(self, root: Path) -> None:
        self.path = root / layout.LOCK
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
        foreign = sorted(p.name for p in root.iterdir() if p.name not in layout.OWNED_NAMES)
        if foreign:
            raise OutputDirError(
                f"{root}: --fresh refuses to clear a directory holding files batchrun did not "
                f"make ({', '.join(foreign[:5])}); choose an empty or batchrun-made directory"
            )
        for name in (layout.JOURNAL_DIR, layout.PARTS_DIR, layout.SHARDS_DIR):
            shutil.rmtree(root / name, ignore_errors=True)
        (root / layout.MANIFEST).unlink(missing_ok=True)
    (root / layout.JOURNAL_DIR).mkdir(parents=True, exist_ok=True)
    (root / layout.PARTS_DIR).mkdir(parents=True, exist_ok=True)
