"""The mock provider's server: routes, limits, injected failures, counters.

A request to a completion route goes through the same steps whatever its format: authenticate,
validate, count the attempt, admit it under the limits (or 429), read the directives, pick a
failure if one is due, wait the latency, then answer. The format (`mock.openai.OpenAIWire`,
`mock.anthropic.AnthropicWire`) only decides how each outcome is written. The batch APIs
(`mock.batch_routes`) answer their lines with the same wires.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import math
import random
import socket
import time
from typing import Any, Final

import orjson
from aiohttp import web

from batchrun.mock.answer import (
    last_user_text,
    make_answer,
    parse_directives,
    prompt_tokens,
    request_key,
    wants_reasoning,
)
from batchrun.mock.anthropic import AnthropicWire
from batchrun.mock.batch_routes import BatchRoutes
from batchrun.mock.batches import LineWire, invalid_body
from batchrun.mock.config import MockConfig, MockStats
from batchrun.mock.limits import FixedWindow
from batchrun.mock.openai import OpenAIWire
from batchrun.mock.responses import ResponsesWire
from batchrun.mock.shapes import SHAPE_TABLE

RANDOM_FAULTS = ("500", "503", "429", "drop", "truncate", "malformed", "error200", "slow")
MODELS = ("mock-1", "mock-reasoner-1")
_SPOILED = frozenset({"truncate", "malformed", "error200"})  # an HTTP 200 with no usable answer
_MALFORMED = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
_JSON = "application/json"

Wire = OpenAIWire | AnthropicWire | ResponsesWire


class KeepLimit(enum.Enum):
    """The default of `set_limits`: leave this limit as it is."""

    KEEP = "keep"


KEEP: Final = KeepLimit.KEEP


class MockProvider:
    """The mock server on an event loop you own: `await start()`, then `await stop()`."""

    def __init__(self, config: MockConfig | None = None) -> None:
        self.config = config or MockConfig()
        self.stats = MockStats()
        self.base_url = ""
        self._openai = OpenAIWire(SHAPE_TABLE[self.config.shape], self.config.reasoning == "think")
        self._anthropic = AnthropicWire()
        self._responses = ResponsesWire()
        self._window = FixedWindow(self.config.rpm, self.config.tpm, self.config.window_s)
        self._rng = random.Random(self.config.seed)
        self._ids = itertools.count(1)
        self._boot = int(time.time()) & 0xFFFFFF
        self._runner: web.AppRunner | None = None
        wires: dict[str, LineWire] = {"/v1/chat/completions": self._openai,
                                      "/v1/responses": self._responses,
                                      "/v1/messages": self._anthropic}
        self.batches = BatchRoutes(self.config, self.stats, wires, self._rid)

    def app(self) -> web.Application:
        """The aiohttp application: one catch-all route per method, paths matched by suffix."""
        # Room for a 256 MB message batch, the largest Anthropic takes.
        app = web.Application(client_max_size=257 * 2**20)
        app.router.add_route("POST", "/{path:.*}", self._post)
        app.router.add_route("GET", "/{path:.*}", self._get)
        app.router.add_route("DELETE", "/{path:.*}", self._delete)
        return app

    async def start(self) -> str:
        """Listen on loopback and return the base URL, "http://127.0.0.1:PORT/v1"."""
        if self._runner is not None:
            return self.base_url
        host = "127.0.0.1" if self.config.host == "localhost" else self.config.host
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, self.config.port))
        except OSError:
            sock.close()
            raise
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runner = runner
        port = sock.getsockname()[1]
        self.base_url = f"http://[{host}]:{port}/v1" if ":" in host else f"http://{host}:{port}/v1"
        return self.base_url

    async def stop(self) -> None:
        """Close the server; answers in flight are cut off."""
        self.batches.ledger.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def set_limits(
        self, *, rpm: float | KeepLimit | None = KEEP, tpm: float | KeepLimit | None = KEEP
    ) -> None:
        """Change the enforced limits (None = unlimited); the current window's use still counts."""
        window = self._window
        window.set_limits(
            window.rpm if isinstance(rpm, KeepLimit) else rpm,
            window.tpm if isinstance(tpm, KeepLimit) else tpm,
        )

    def reset(self) -> None:
        """Zero the counters, forget attempts, reseed the failures and start a fresh window."""
        self.stats = MockStats()
        self._rng = random.Random(self.config.seed)
        self._window.clear()
        self.batches.ledger.restart(self.stats)

    def _rid(self) -> str:
        """A fresh id: 32 hex digits, unique within this server."""
        return f"{self._boot:06x}{next(self._ids):026x}"

    async def _batch(self, request: web.Request) -> web.Response | None:
        response = await self.batches.handle(request)
        if response is not None:
            self._count(response.status)
        return response

    async def _post(self, request: web.Request) -> web.StreamResponse:
        batch = await self._batch(request)
        if batch is not None:
            return batch
        path = request.path
        if path.endswith("/chat/completions"):
            return await self._complete(request, self._openai)
        if path.endswith("/messages"):
            return await self._complete(request, self._anthropic)
        if path.endswith("/responses"):
            return await self._complete(request, self._responses)
        if path == "/_mock/limits":
            try:
                change = orjson.loads(await request.read() or b"{}")
                self.set_limits(**{k: change[k] for k in ("rpm", "tpm") if k in change})
            except (orjson.JSONDecodeError, TypeError) as exc:
                return self._respond(400, self._openai.error(400, f"bad limits: {exc}"), {})
            limits = {"rpm": self._window.rpm, "tpm": self._window.tpm}
            return web.Response(body=orjson.dumps(limits), content_type=_JSON)
        if path == "/_mock/reset":
            self.reset()
            return web.Response(body=b'{"ok": true}', content_type=_JSON)
        return self._respond(404, self._openai.error(404, f"no route POST {path}"), {})

    async def _get(self, request: web.Request) -> web.StreamResponse:
        batch = await self._batch(request)
        if batch is not None:
            return batch
        path = request.path
        if path.endswith("/models"):
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "batchrun"} for m in MODELS
            ]
            return web.Response(
                body=orjson.dumps({"object": "list", "data": data}), content_type=_JSON
            )
        if path == "/_mock/stats":
            return web.Response(body=orjson.dumps(self.stats.to_dict()), content_type=_JSON)
        return self._respond(404, self._openai.error(404, f"no route GET {path}"), {})

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        batch = await self._batch(request)
        if batch is not None:
            return batch
        return self._respond(404, self._openai.error(404, f"no route DELETE {request.path}"), {})

    async def _complete(self, request: web.Request, wire: Wire) -> web.StreamResponse:
        stats, cfg = self.stats, self.config
        stats.requests += 1
        if cfg.api_key is not None and not wire.authorized(request.headers, cfg.api_key):
            return self._respond(401, wire.error(401, "Incorrect API key provided."), {})
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return self._respond(400, wire.error(400, "the body is not valid JSON"), {})
        problem = invalid_body(body) or wire.validate(body)
        if problem is not None:
            return self._respond(400, wire.error(400, problem), {})
        key = request_key(body)
        attempt = stats.attempts[key] = stats.attempts.get(key, 0) + 1
        refusal = self._window.admit()
        if refusal is not None:
            stats.rate_limited += 1
            headers = self._rate_headers(wire)
            headers.update(refusal.headers)
            return self._respond(429, wire.rate_limited(refusal), headers)
        text = last_user_text(body)
        try:
            directives = parse_directives(text)
        except ValueError as exc:
            return self._respond(400, wire.error(400, str(exc)), {})
        fault = directives.fault_for(attempt) if directives.faults else None
        if fault is None and cfg.fail_rate > 0 and self._rng.random() < cfg.fail_rate:
            fault = self._rng.choice(RANDOM_FAULTS)
        if fault is None and cfg.faults:
            fault = self._draw_fault()
        delay_ms = cfg.latency_ms + directives.sleep_ms
        if fault is not None:
            stats.injected[fault] = stats.injected.get(fault, 0) + 1
            if fault == "slow":
                delay_ms, fault = delay_ms + cfg.slow_ms, None
            elif fault == "hang":  # holds the connection, then answers: for client timeouts
                delay_ms, fault = delay_ms + cfg.hang_s * 1000, None
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        if fault is None or fault in _SPOILED:
            return await self._answer(request, wire, body, text, key, fault)
        if fault == "drop":
            if request.transport is not None:
                request.transport.close()
            return web.Response()
        headers = self._rate_headers(wire)
        if cfg.retry_after_s is not None and fault in ("429", "503", "overloaded"):
            wait = cfg.retry_after_s
            headers.update({"retry-after": f"{math.ceil(wait)}",
                            "retry-after-ms": f"{round(wait * 1000)}"})
        elif fault == "429":
            headers.update({"retry-after": "0", "retry-after-ms": "50"})
        if fault == "overloaded":
            return self._respond(529, wire.overloaded(), headers)
        if fault == "context":
            return self._respond(400, wire.context_error(prompt_tokens(body) + 8192), headers)
        return self._respond(
            int(fault), wire.error(int(fault), f"mock failure: HTTP {fault}"), headers
        )

    async def _answer(
        self,
        request: web.Request,
        wire: Wire,
        body: dict[str, Any],
        text: str,
        key: str,
        fault: str | None,
    ) -> web.StreamResponse:
        reasoning = wants_reasoning(body, text, self.config.reasoning)
        answers = [
            make_answer(body, text, reasoning=reasoning, index=i) for i in range(wire.choices(body))
        ]
        tokens = answers[0].prompt_tokens + sum(a.completion_tokens for a in answers)
        if fault is None:
            self._window.spend(tokens)
        rid = self._rid()
        headers = self._rate_headers(wire)
        if body.get("stream") is True:
            events = wire.events(answers, body, rid=rid, model=body["model"])
            if fault is not None:
                events = events[: max(2, len(events) // 2)]
                if fault == "error200":
                    events.append(wire.stream_error())
                elif fault == "malformed":
                    events += wire.malformed_events()
            response, complete = await self._stream(request, events, headers)
            if complete and fault is None:
                self._answered(key, tokens)
            return response
        payload = wire.body(answers, rid=rid, model=body["model"])
        if fault is None:
            self._answered(key, tokens)
        elif fault == "truncate":
            payload = payload[: len(payload) // 2]
        elif fault == "malformed":
            payload = _MALFORMED
        else:
            payload = wire.error_in_200()
        return self._respond(200, payload, headers)

    async def _stream(
        self, request: web.Request, events: list[bytes], headers: dict[str, str]
    ) -> tuple[web.StreamResponse, bool]:
        """Write the events; False when the client went away before the end."""
        headers["Content-Type"] = "text/event-stream"
        headers["Cache-Control"] = "no-cache"
        response = web.StreamResponse(status=200, headers=headers)
        self._count(200)
        try:
            await response.prepare(request)
            for index, event in enumerate(events):
                if index == 2:  # one event split across two writes, as TCP may deliver it
                    await response.write(event[: len(event) // 2])
                    await response.write(event[len(event) // 2 :])
                else:
                    await response.write(event)
            await response.write_eof()
        except ConnectionError:
            return response, False
        return response, True

    def _draw_fault(self) -> str | None:
        """One draw from the configured mix: a kind with its share of attempts, or None."""
        draw = self._rng.random()
        for kind, share in self.config.faults:
            if draw < share:
                return kind
            draw -= share
        return None

    def _rate_headers(self, wire: Wire) -> dict[str, str]:
        return wire.rate_headers(self._window) if self.config.rate_headers else {}

    def _respond(self, status: int, payload: bytes, headers: dict[str, str]) -> web.Response:
        self._count(status)
        return web.Response(body=payload, status=status, headers=headers, content_type=_JSON)

    def _count(self, status: int) -> None:
        by_status = self.stats.by_status
        by_status[status] = by_status.get(status, 0) + 1

    def _answered(self, key: str, tokens: int) -> None:
        stats = self.stats
        stats.ok += 1
        stats.tokens += tokens
        stats.answered[key] = stats.answered.get(key, 0) + 1

