"""A loopback server that replays recorded responses: the conformance cases, or a test's handlers.

A POST to any path ending in `/chat/completions` or `/messages` is answered by the case named by
the request's last user message. A case is either a conformance case (a dict in the format of
`tests/conformance/README.md`: status, headers, and body / body_text / sse, sent exactly as
recorded; an event stream goes out in a few uneven pieces with tiny pauses, so the client really
gets split reads) or a handler, `async (request, attempt) -> response`, for a test that needs its
own timing. The server counts requests per case and keeps what each carried and when it came.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from batchrun.mock.loop_thread import LoopThread

CASES_DIR = Path(__file__).parent / "conformance" / "cases"
ROUTES = ("/chat/completions", "/messages", "/responses")
# Where a recorded stream is cut, as fractions of its length: uneven, so that cuts fall inside
# lines, events and multi-byte characters alike.
CUTS = (0.13, 0.37, 0.61, 0.83)
PIECE_PAUSE_S = 0.003

Case = dict[str, Any]
Handler = Callable[[web.Request, int], Awaitable[web.StreamResponse]]


def load_cases() -> dict[str, Case]:
    """Every conformance case by name."""
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(CASES_DIR.glob("*.json"))
    }


def case_name(body: Mapping[str, Any]) -> str:
    """The text of the last user message (a string, or its text parts joined)."""
    for message in reversed(body.get("messages") or body.get("input") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content)
    return ""


def split(raw: bytes) -> list[bytes]:
    """`raw` cut at `CUTS`."""
    points = sorted({0, *(int(len(raw) * f) for f in CUTS), len(raw)})
    return [raw[a:b] for a, b in itertools.pairwise(points) if b > a]


async def stream(
    request: web.Request,
    *items: bytes | float,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Answer with an event stream: bytes are written as they come, a float is a pause."""
    response = web.StreamResponse(
        status=status, headers=dict(headers or {"content-type": "text/event-stream"})
    )
    await response.prepare(request)
    # The client may hang up first (an idle timeout, say): what is left goes nowhere.
    with suppress(ConnectionError):
        for item in items:
            if isinstance(item, bytes):
                await response.write(item)
            else:
                await asyncio.sleep(item)
        await response.write_eof()
    return response


async def replay(request: web.Request, case: Case) -> web.StreamResponse:
    """Answer exactly as `case` recorded it."""
    headers = dict(case["headers"])
    if "sse" in case:
        pieces: list[bytes | float] = []
        for piece in split(case["sse"].encode()):
            pieces += [piece, PIECE_PAUSE_S]
        return await stream(request, *pieces, status=case["status"], headers=headers)
    if "body" in case:
        raw = json.dumps(case["body"], ensure_ascii=False).encode()
    else:
        raw = case["body_text"].encode()
    return web.Response(status=case["status"], headers=headers, body=raw)


@dataclass(frozen=True, slots=True)
class Received:
    """One request as the server got it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float  # time.monotonic() on arrival


class ReplayServer:
    """The replay app on its own event loop in a background thread; a context manager."""

    def __init__(self, cases: Mapping[str, Case | Handler] | None = None) -> None:
        self.cases: dict[str, Case | Handler] = dict(cases or {})
        self.requests: Counter[str] = Counter()
        self.received: defaultdict[str, list[Received]] = defaultdict(list)
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._serving = LoopThread(self._start, self._stop, name="replay")

    def add(self, name: str, case: Case | Handler) -> None:
        """Answer requests whose last user message is `name` with `case`."""
        self.cases[name] = case

    def gaps(self, name: str) -> list[float]:
        """Seconds between successive requests of a case."""
        times = [seen.at for seen in self.received[name]]
        return [b - a for a, b in itertools.pairwise(times)]

    async def _post(self, request: web.Request) -> web.StreamResponse:
        if not request.path.endswith(ROUTES):
            raise web.HTTPNotFound(text=f"no route {request.path}")
        body = await request.json()
        name = case_name(body)
        case = self.cases.get(name)
        if case is None:
            raise web.HTTPNotFound(text=f"no case named {name!r}")
        self.requests[name] += 1
        seen = Received(request.path, dict(request.headers), body, time.monotonic())
        self.received[name].append(seen)
        if callable(case):
            return await case(request, self.requests[name])
        return await replay(request, case)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("POST", "/{path:.*}", self._post)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}/v1"

    async def _stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()
        # Handlers still pausing for a client that hung up (an idle timeout) end here.
        pending = asyncio.all_tasks() - {asyncio.current_task()}
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def __enter__(self) -> ReplayServer:
        self._serving.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._serving.__exit__(*exc_info)
