"""Owning an output directory: the flock of the live run, and clearing it for `--fresh`."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
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
        except OSError as error:
            if not isinstance(error, BlockingIOError):
                handle.close()
                # Lustre without `-o flock`, some FUSE and old NFS mounts: no locking at all.
                raise OutputDirError(
                    f"{self.path.parent}: this filesystem refuses file locks ({error.strerror});"
                    " batchrun needs flock to keep two runs apart: mount it with locking (Lustre:"
                    " -o flock; NFSv4) or choose an output directory on one that has it"
                ) from None
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
        # Every shard's lock is held until its results are gone: a live shard is refused,
        # and none can start in the middle.
        with _all_shards_locked(root):
            for name in (layout.JOURNAL_DIR, layout.PARTS_DIR, layout.SHARDS_DIR):
                shutil.rmtree(root / name, ignore_errors=True)
        (root / layout.MANIFEST).unlink(missing_ok=True)
    (root / layout.JOURNAL_DIR).mkdir(parents=True, exist_ok=True)
    (root / layout.PARTS_DIR).mkdir(parents=True, exist_ok=True)


@contextmanager
def _all_shards_locked(root: Path) -> Iterator[None]:
    locks: list[OutputLock] = []
    try:
        for folder in sorted((root / layout.SHARDS_DIR).glob("*-of-*")):
            if folder.is_dir():
                lock = OutputLock(folder)
                lock.acquire()
                locks.append(lock)
        yield
    finally:
        for lock in locks:
            lock.release()


@contextmanager
def run_locked(root: Path) -> Iterator[None]:
    """Hold the locks of a whole run: its own and every shard's (refused while one is live)."""
    root.mkdir(parents=True, exist_ok=True)
    lock = OutputLock(root)
    lock.acquire()
    try:
        with _all_shards_locked(root):
            yield
    finally:
        lock.release()


def clear_run(root: Path) -> None:
    """`--fresh` of a whole run by a parent of shards: refused while the run or a shard is live."""
    root.mkdir(parents=True, exist_ok=True)
    lock = OutputLock(root)
    lock.acquire()
    try:
        prepare_output(root, fresh=True)
    finally:
        lock.release()
