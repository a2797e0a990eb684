"""An asyncio server on its own event loop in a background thread (the mock, test servers)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

_T = TypeVar("_T")


class LoopThread:
    """Runs `start()` on a fresh loop in a daemon thread, serves until exit, then `stop()`."""

    def __init__(
        self,
        start: Callable[[], Awaitable[object]],
        stop: Callable[[], Awaitable[object]],
        *,
        name: str,
    ) -> None:
        self._start = start
        self._stop = stop
        self._name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LoopThread:
        ready = threading.Event()
        failed: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:  # re-raised in the caller's thread
                failed.append(exc)
                loop.close()
                ready.set()
                return
            self.loop = loop
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._stop())
                loop.close()

        self._thread = threading.Thread(target=main, name=self._name, daemon=True)
        self._thread.start()
        ready.wait()
        if failed:
            raise failed[0]
        return self

    def __exit__(self, *exc_info: object) -> None:
        loop, thread = self.loop, self._thread
        self.loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()

    def call(self, fn: Callable[[], _T]) -> _T:
        """Run `fn` on the server's thread (so it sees a consistent state) and return its result."""
        if self.loop is None:
            raise RuntimeError(f"the {self._name} thread is not running")

        async def call() -> _T:
            return fn()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout=10)
