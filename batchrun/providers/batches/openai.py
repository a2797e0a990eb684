"""OpenAI's Batch API (and its clones): upload a JSONL file, create, poll, download two files.

    POST {base_url}/files                 multipart: purpose=batch, file=<key>.jsonl
    POST {base_url}/batches               {input_file_id, endpoint, completion_window, metadata}
    GET  {base_url}/batches/{id}          the batch object
    GET  {base_url}/batches?limit&after   newest first, `has_more` / `last_id` to page on
    POST {base_url}/batches/{id}/cancel
    GET  {base_url}/files/{id}/content    output and error files, one JSON line per request

One file holds one model and one endpoint (`/v1/chat/completions`, or `/v1/responses` for
api = "responses"), unique custom_ids, and the batch carries batchrun's key in its metadata, so
a batch created just before a crash is found again by listing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import orjson

from batchrun.errors import BadRequest, NotFound, RequestError, ServerError
from batchrun.parse import error_from_body
from batchrun.providers.batches.base import BatchAPI, BatchInfo, ResultLine

KEY_FIELD = "batchrun_key"
ENDPOINTS = {"openai": "/v1/chat/completions", "responses": "/v1/responses"}
_PHASES = {"validating": "validating", "in_progress": "in_progress", "finalizing": "finalizing",
           "cancelling": "cancelling", "completed": "ended", "failed": "ended",
           "expired": "ended", "cancelled": "ended"}
_UNFINISHED = {"batch_expired": "expired", "batch_cancelled": "cancelled"}


class OpenAIBatches(BatchAPI):
    """The Files + Batches APIs of OpenAI and of the providers that copy them."""

    max_requests = 50_000
    max_bytes = 200_000_000  # 200 MB, as the Files API counts them

    @property
    def endpoint(self) -> str:
        """The batch endpoint of this wire format."""
        return ENDPOINTS[self.wire.name]

    @property
    def keeps_metadata(self) -> bool:
        return True

    def line(self, custom_id: str, body: dict[str, Any]) -> bytes:
        wire = self.wire.wire_body(body)
        wire.pop("stream", None)
        wire.pop("stream_options", None)
        return orjson.dumps({"custom_id": custom_id, "method": "POST", "url": self.endpoint,
                             "body": wire}) + b"\n"

    async def upload(self, key: str, path: Path) -> str | None:
        uploaded = await self.http.upload(self.http.url("/files"), {"purpose": "batch"}, path,
                                          f"{key}.jsonl")
        file_id = uploaded.get("id") if isinstance(uploaded, dict) else None
        if not isinstance(file_id, str):
            raise ServerError(f"{self.http.spec.name}: the file upload answered no file id")
        return file_id

    async def create(
        self, path: Path, file_id: str | None, window: str, metadata: Mapping[str, str]
    ) -> BatchInfo:
        assert file_id is not None, "upload first"
        payload = {"input_file_id": file_id, "endpoint": self.endpoint,
                   "completion_window": window, "metadata": dict(metadata)}
        try:
            data = await self.http.json("POST", self.http.url("/batches"), payload)
        except NotFound as error:
            # The Files API can take a moment to show a file it has just accepted.
            raise ServerError(f"{error.message} (the file just uploaded is not visible yet)",
                              status=404) from None
        return self.info(data)

    async def get(self, batch_id: str) -> BatchInfo:
        return self.info(await self.http.json("GET", self.http.url(f"/batches/{batch_id}")))

    def listing(self) -> AsyncIterator[BatchInfo]:
        return self._pages("/batches", "after")

    async def cancel(self, batch_id: str) -> BatchInfo:
        url = self.http.url(f"/batches/{batch_id}/cancel")
        return self.info(await self.http.json("POST", url, {}))

    async def download(self, info: BatchInfo, folder: Path, stem: str) -> list[Path]:
        paths = []
        for kind, file_id in (("output", info.output_file_id), ("errors", info.error_file_id)):
            if file_id:
                path = folder / f"{stem}.{kind}.jsonl"
                await self.http.download(self.http.url(f"/files/{file_id}/content"), path)
                paths.append(path)
        return paths

    def result_line(self, raw: bytes) -> ResultLine:
        return result_line(raw)

    def info(self, data: Any) -> BatchInfo:
        """A batch object as a BatchInfo."""
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise ServerError(f"{self.http.spec.name}: a batch object without an id: "
                              f"{str(data)[:200]!r}")
        status = str(data.get("status") or "")
        counts = data.get("request_counts") or {}
        metadata = data.get("metadata") or {}
        errors = (data.get("errors") or {}).get("data") or []
        message = "; ".join(
            f"{e.get('code')}: {e.get('message')}" + (f" (line {e['line']})" if e.get("line")
                                                     else "")
            for e in errors[:5] if isinstance(e, dict))
        return BatchInfo(
            id=data["id"], status=status, phase=_PHASES.get(status, "in_progress"),
            done=int(counts.get("completed") or 0) + int(counts.get("failed") or 0),
            total=int(counts.get("total") or 0),
            created_at=float(data["created_at"]) if data.get("created_at") else None,
            key=metadata.get(KEY_FIELD) if isinstance(metadata, dict) else None,
            output_file_id=data.get("output_file_id"), error_file_id=data.get("error_file_id"),
            message=message or None,
            counts={k: int(v) for k, v in counts.items() if isinstance(v, int)},
        )


def result_line(raw: bytes) -> ResultLine:
    """One line of an output or error file."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ResultLine("", "error", error=ServerError(f"unreadable result line {raw[:80]!r}"))
    custom_id = str(data.get("custom_id") or "")
    error = data.get("error")
    response = data.get("response")
    if isinstance(error, dict) and _UNFINISHED.get(str(error.get("code"))):
        return ResultLine(custom_id, _UNFINISHED[str(error["code"])])
    if isinstance(response, dict):
        status = response.get("status_code")
        body = response.get("body")
        if status == 200:
            return ResultLine(custom_id, "ok", body=body)
        found = error_from_body(status if isinstance(status, int) else None, body)
        return ResultLine(custom_id, "error", error=found or _plain(status, body))
    found = error_from_body(None, {"error": error}) if error else None
    return ResultLine(custom_id, "error", error=found or _plain(None, data))


def _plain(status: object, body: object) -> RequestError:
    text = orjson.dumps(body).decode()[:300] if body is not None else "no body"
    if isinstance(status, int) and status < 500:
        return BadRequest(f"HTTP {status}: {text}", status=status)
    return ServerError(f"HTTP {status}: {text}", status=status if isinstance(status, int) else None)
