"""The batch routes of the mock provider: which path is which call, and the API key check.

Paths are matched by suffix, like the online routes, so any base URL prefix works:

    POST   .../files                          OpenAI: upload (multipart, purpose=batch)
    GET    .../files/{id}[/content]           OpenAI: the file object, or its bytes
    DELETE .../files/{id}
    POST   .../batches                        OpenAI: create a batch
    GET    .../batches[/{id}]                 OpenAI: list (newest first) or retrieve
    POST   .../batches/{id}/cancel
    POST   .../messages/batches               Anthropic: create a message batch
    GET    .../messages/batches[/{id}]        Anthropic: list (newest first) or retrieve
    POST   .../messages/batches/{id}/cancel
    GET    .../messages/batches/{id}/results  Anthropic: the results, JSONL
    DELETE .../messages/batches/{id}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import NamedTuple

from aiohttp import web

from batchrun.mock.batch_anthropic import AnthropicBatches
from batchrun.mock.batch_files import FileStore, json_response
from batchrun.mock.batch_openai import OpenAIBatches
from batchrun.mock.batches import BatchLedger, LinePlanner, LineWire
from batchrun.mock.config import MockConfig, MockStats

_MESSAGE_BATCHES = re.compile(
    r"(?P<prefix>.*)/messages/batches(?:/(?P<id>[^/]+)(?P<action>/cancel|/results)?)?")
_BATCHES = re.compile(r"(?P<prefix>.*)/batches(?:/(?P<id>[^/]+)(?P<action>/cancel)?)?")
_FILES = re.compile(r"(?P<prefix>.*)/files(?:/(?P<id>[^/]+)(?P<action>/content)?)?")
_ACTIONS = {  # (method, family, has an id, action) -> call name, as counted in batch_calls
    ("POST", "messages.batches", False, None): "create",
    ("GET", "messages.batches", False, None): "list",
    ("GET", "messages.batches", True, None): "retrieve",
    ("POST", "messages.batches", True, "/cancel"): "cancel",
    ("GET", "messages.batches", True, "/results"): "results",
    ("DELETE", "messages.batches", True, None): "delete",
    ("POST", "batches", False, None): "create",
    ("GET", "batches", False, None): "list",
    ("GET", "batches", True, None): "retrieve",
    ("POST", "batches", True, "/cancel"): "cancel",
    ("POST", "files", False, None): "create",
    ("GET", "files", True, None): "retrieve",
    ("GET", "files", True, "/content"): "content",
    ("DELETE", "files", True, None): "delete",
}


class Route(NamedTuple):
    """One matched batch call."""

    name: str  # "batches.retrieve", "messages.batches.results", ...
    ident: str  # the batch or file id, "" when the path has none
    prefix: str  # the path before the route, "/v1" usually


def match(method: str, path: str) -> Route | None:
    """The batch call `method path` makes, or None when it is no batch route."""
    for family, pattern in (("messages.batches", _MESSAGE_BATCHES), ("batches", _BATCHES),
                            ("files", _FILES)):
        found = pattern.fullmatch(path)
        if found is None:
            continue
        action = _ACTIONS.get((method, family, found["id"] is not None, found["action"]))
        if action is None:
            return None
        return Route(f"{family}.{action}", found["id"] or "", found["prefix"])
    return None


def _short_id(prefix: str, fresh: str) -> str:
    """A 22-character id as OpenAI's files have: the boot digits, then the counter."""
    return f"{prefix}{fresh[:6]}{fresh[-16:]}"


class BatchRoutes:
    """Both batch APIs of one mock server, over one ledger of jobs."""

    def __init__(
        self,
        config: MockConfig,
        stats: MockStats,
        wires: Mapping[str, LineWire],
        new_hex: Callable[[], str],
    ) -> None:
        self.config = config
        self.ledger = BatchLedger(stats)
        planner = LinePlanner(config, new_hex)
        self.files = FileStore(lambda: _short_id("file-", new_hex()), config.file_visible_after_ms)
        served = {path: wires[path] for path in ("/v1/chat/completions", "/v1/responses")}
        self.openai = OpenAIBatches(config, self.ledger, planner, self.files, served, new_hex)
        self.anthropic = AnthropicBatches(config, self.ledger, planner, wires["/v1/messages"],
                                          new_hex)
        # The same key check as the online routes: Bearer for OpenAI, x-api-key for Anthropic.
        self._auth_wires = {False: wires["/v1/chat/completions"], True: wires["/v1/messages"]}

    async def handle(self, request: web.Request) -> web.Response | None:
        """Answer a batch call, or None when the request is for another route."""
        route = match(request.method, request.path)
        if route is None:
            return None
        calls = self.ledger.stats.batch_calls
        calls[route.name] = calls.get(route.name, 0) + 1
        anthropic = route.name.startswith("messages.")
        key = self.config.api_key
        wire = self._auth_wires[anthropic]
        if key is not None and not wire.authorized(request.headers, key):
            return json_response(401, wire.error(401, "Incorrect API key provided."))
        if anthropic:
            return await self._anthropic(request, route)
        return await self._openai(request, route)

    async def _openai(self, request: web.Request, route: Route) -> web.Response:
        name, ident = route.name, route.ident
        if name == "files.create":
            return await self.files.upload(request)
        if name == "files.retrieve":
            return self.files.retrieve(ident)
        if name == "files.content":
            return self.files.download(ident)
        if name == "files.delete":
            return self.files.delete(ident)
        if name == "batches.create":
            return await self.openai.create(request)
        if name == "batches.list":
            return self.openai.list_batches(request.query)
        if name == "batches.cancel":
            return self.openai.cancel(ident)
        return self.openai.retrieve(ident)

    async def _anthropic(self, request: web.Request, route: Route) -> web.Response:
        name, ident = route.name, route.ident
        base = f"{request.scheme}://{request.host}{route.prefix}"  # for results_url
        if name == "messages.batches.create":
            return await self.anthropic.create(request, base)
        if name == "messages.batches.list":
            return self.anthropic.list_batches(request.query, base)
        if name == "messages.batches.cancel":
            return self.anthropic.cancel(ident, base)
        if name == "messages.batches.results":
            return self.anthropic.results(ident)
        if name == "messages.batches.delete":
            return self.anthropic.delete(ident)
        return self.anthropic.retrieve(ident, base)
