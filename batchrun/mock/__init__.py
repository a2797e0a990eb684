"""The built-in loopback provider: demo backend, test double of the suite, benchmark target.

One aiohttp server speaks both wire formats on 127.0.0.1 (never another interface):

    POST .../chat/completions   OpenAI format, in the shape of `MockConfig.shape`
    POST .../messages           Anthropic Messages format
    GET  .../models             the model list
    .../files, .../batches      OpenAI's Files and Batch APIs (`mock.batch_openai`)
    .../messages/batches        Anthropic's Message Batches API (`mock.batch_anthropic`)
    GET  /_mock/stats           the counters (MockStats) as JSON
    POST /_mock/limits          {"rpm": .., "tpm": ..}: change the enforced limits mid-run
    POST /_mock/reset           zero the counters and start a fresh window

Answers are deterministic (`mock.answer`; `expected_content(body)` says what the mock answers),
limits are stated per minute and enforced per fixed window (`mock.limits`), the six OpenAI-format
shapes copy real providers' quirks (`mock.openai`), and failures are injected at random
(`fail_rate`, reproducible by `seed`), as a mix with a share per kind independent of any limit
(`faults`, e.g. 5% of 429s with `retry_after_s`, 1% of hangs of `hang_s`), or on demand by
directives in the last user message:

    [[mock:fail=503x2]]   the first 2 attempts of this exact body get 503, later ones succeed
    [[mock:fail=drop]]    every attempt: also truncate, malformed, error200, overloaded (529),
                          context (400 context_length_exceeded), slow, hang, or any HTTP status
    [[mock:sleep_ms=500]] answer half a second later
    [[mock:think]]        add reasoning

A batch takes `batch_seconds` from creation to its end; its lines are answered by the same code
as the online routes (a `[[mock:fail=500x1]]` in a line fails that line), and the `batch_*`
fields of MockConfig inject batch failures (a whole batch failing, expiry with partial output,
per-line 500s and 429s, a missing output file, shuffled results, a long finalizing phase,
uploads not found at first). MockStats counts the lines billed and, per custom_id, the live
batches holding it (`batch_live_max`, `batch_overlaps()`).

Use `MockProvider` on your own event loop, `MockThread` from synchronous code, `serve` for
`batchrun mock`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from batchrun.mock.answer import MockAnswer, last_user_text, make_answer, request_key
from batchrun.mock.answer import wants_reasoning as _wants_reasoning
from batchrun.mock.config import BatchTally, MockConfig, MockStats
from batchrun.mock.loop_thread import LoopThread
from batchrun.mock.server import KEEP, KeepLimit, MockProvider

__all__ = [
    "KEEP",
    "BatchTally",
    "MockAnswer",
    "MockConfig",
    "MockProvider",
    "MockStats",
    "MockThread",
    "expected_answer",
    "expected_content",
    "request_key",
    "serve",
]

_T = TypeVar("_T")


def expected_answer(body: Mapping[str, Any], config: MockConfig | None = None) -> MockAnswer:
    """The answer (first choice) the mock gives for `body` under `config`."""
    text = last_user_text(body)
    mode = (config or MockConfig()).reasoning
    return make_answer(body, text, reasoning=_wants_reasoning(body, text, mode))


def expected_content(body: Mapping[str, Any], config: MockConfig | None = None) -> str:
    """The answer text for `body`, reasoning removed and max_tokens applied; "" for a tool call."""
    return expected_answer(body, config).content or ""


class MockThread:
    """The mock on its own event loop in a background thread; a context manager."""

    def __init__(self, config: MockConfig | None = None) -> None:
        self.provider = MockProvider(config)
        self._runner = LoopThread(self.provider.start, self.provider.stop, name="batchrun-mock")

    @property
    def base_url(self) -> str:
        """The mock's base URL, "http://127.0.0.1:PORT/v1"."""
        return self.provider.base_url

    @property
    def stats(self) -> MockStats:
        """The live counters; read them once requests are done, or use `stats_snapshot`."""
        return self.provider.stats

    def __enter__(self) -> MockThread:
        self._runner.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._runner.__exit__(*exc_info)

    def _call(self, fn: Callable[[], _T]) -> _T:
        return self._runner.call(fn)

    def stats_snapshot(self) -> dict[str, Any]:
        """A consistent copy of the counters, taken on the server's own thread."""
        return self._call(lambda: self.provider.stats.to_dict())

    def set_limits(
        self, *, rpm: float | KeepLimit | None = KEEP, tpm: float | KeepLimit | None = KEEP
    ) -> None:
        """Change the enforced limits from any thread (None = unlimited)."""
        self._call(lambda: self.provider.set_limits(rpm=rpm, tpm=tpm))

    def reset(self) -> None:
        """Zero the counters from any thread."""
        self._call(self.provider.reset)


def serve(config: MockConfig) -> None:
    """Run the mock until SIGINT or SIGTERM, printing its base URL first (`batchrun mock`)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(config))


async def _serve(config: MockConfig) -> None:
    provider = MockProvider(config)
    print(await provider.start(), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await provider.stop()
