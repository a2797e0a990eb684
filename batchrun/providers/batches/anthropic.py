"""Anthropic's Message Batches API: the requests in one POST, poll, then a JSONL of results.

    POST {base_url}/messages/batches              {"requests": [{custom_id, params}, ...]}
    GET  {base_url}/messages/batches/{id}         processing_status: in_progress | canceling | ended
    GET  {base_url}/messages/batches?after_id=    newest first, `has_more` / `last_id`
    POST {base_url}/messages/batches/{id}/cancel
    GET  results_url                              one {custom_id, result: {type, ...}} per line

A message batch keeps no metadata: batchrun's key travels in every `custom_id`
(`[A-Za-z0-9_-]{1,64}`), and a batch whose id never reached the disk is recognised by the
custom_ids of its results.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import orjson

from batchrun.errors import ServerError
from batchrun.parse import error_from_body
from batchrun.providers.batches.base import BatchAPI, BatchInfo, ResultLine

_PHASES = {"in_progress": "in_progress", "canceling": "cancelling", "ended": "ended"}
_KINDS = {"succeeded": "ok", "errored": "error", "canceled": "cancelled", "expired": "expired"}
CHUNK = 1 << 20


class AnthropicBatches(BatchAPI):
    """Anthropic's Message Batches API."""

    max_requests = 100_000
    max_bytes = 256_000_000

    def line(self, custom_id: str, body: dict[str, Any]) -> bytes:
        params = self.wire.wire_body(body)
        params.pop("stream", None)
        return orjson.dumps({"custom_id": custom_id, "params": params}) + b"\n"

    async def create(
        self, path: Path, file_id: str | None, window: str, metadata: Mapping[str, str]
    ) -> BatchInfo:
        url = self.http.url("/messages/batches")
        return self.info(await self.http.post_stream(url, _requests_body(path)))

    async def get(self, batch_id: str) -> BatchInfo:
        return self.info(await self.http.json(
            "GET", self.http.url(f"/messages/batches/{batch_id}")))

    def listing(self) -> AsyncIterator[BatchInfo]:
        return self._pages("/messages/batches", "after_id")

    async def cancel(self, batch_id: str) -> BatchInfo:
        url = self.http.url(f"/messages/batches/{batch_id}/cancel")
        return self.info(await self.http.json("POST", url, {}))

    async def download(self, info: BatchInfo, folder: Path, stem: str) -> list[Path]:
        url = info.results_url or self.http.url(f"/messages/batches/{info.id}/results")
        path = folder / f"{stem}.results.jsonl"
        await self.http.download(url, path)
        return [path]

    async def first_custom_id(self, info: BatchInfo, folder: Path, stem: str) -> str | None:
        # Only the first line is read: a results file may be hundreds of megabytes.
        url = info.results_url or self.http.url(f"/messages/batches/{info.id}/results")
        raw = await self.http.first_line(url)
        if raw is None:  # an answer too long to hold in memory: read from disk instead
            return await super().first_custom_id(info, folder, stem)
        return (result_line(raw).custom_id or None) if raw.strip() else None

    def result_line(self, raw: bytes) -> ResultLine:
        return result_line(raw)

    def info(self, data: Any) -> BatchInfo:
        """A message batch object as a BatchInfo."""
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise ServerError(f"{self.http.spec.name}: a message batch without an id: "
                              f"{str(data)[:200]!r}")
        status = str(data.get("processing_status") or "")
        counts = {k: int(v) for k, v in (data.get("request_counts") or {}).items()
                  if isinstance(v, int)}
        total = sum(counts.values())
        return BatchInfo(
            id=data["id"], status=status, phase=_PHASES.get(status, "in_progress"),
            done=total - counts.get("processing", 0), total=total,
            created_at=_epoch(data.get("created_at")), results_url=data.get("results_url"),
            counts=counts,
        )


async def _requests_body(path: Path) -> AsyncIterator[bytes]:
    """`{"requests": [line, line, ...]}` read from the batch file a megabyte at a time."""
    yield b'{"requests":['
    handle: IO[bytes] = await asyncio.to_thread(path.open, "rb")
    try:
        first = True
        while True:
            lines = await asyncio.to_thread(handle.readlines, CHUNK)
            if not lines:
                break
            pieces = [line.rstrip(b"\n") for line in lines if line.strip()]
            if pieces:
                yield (b"" if first else b",") + b",".join(pieces)
                first = False
    finally:
        await asyncio.to_thread(handle.close)
    yield b"]}"


def _epoch(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def result_line(raw: bytes) -> ResultLine:
    """One line of a results file."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ResultLine("", "error", error=ServerError(f"unreadable result line {raw[:80]!r}"))
    custom_id = str(data.get("custom_id") or "")
    result = data.get("result") or {}
    kind = _KINDS.get(str(result.get("type")), "error")
    if kind == "ok":
        return ResultLine(custom_id, "ok", body=result.get("message"))
    if kind == "error":
        body = result.get("error")
        # The error object sits one level down: {"type": "error", "error": {type, message}}.
        found = error_from_body(_status(body), body)
        return ResultLine(custom_id, "error", error=found or ServerError(
            f"errored without an error object: {orjson.dumps(result).decode()[:300]}"))
    return ResultLine(custom_id, kind)


_STATUS_BY_TYPE = {"invalid_request_error": 400, "authentication_error": 401,
                   "permission_error": 403, "not_found_error": 404, "request_too_large": 413,
                   "rate_limit_error": 429, "api_error": 500, "overloaded_error": 529}


def _status(body: object) -> int | None:
    """The HTTP status an Anthropic error type stands for (a results line carries none)."""
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    return _STATUS_BY_TYPE.get(str(kind)) if kind is not None else None
