"""OpenAI's Files API in the mock: uploads, file objects, contents, and input-file checks.

`POST /v1/files` (multipart: `purpose`, `file`), `GET /v1/files/{id}`,
`GET /v1/files/{id}/content`, `DELETE /v1/files/{id}`. With `file_visible_after_ms`, a file just
uploaded is not found for that long, as OpenAI's storage sometimes lags its upload answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from batchrun.mock.openai import error_body

PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
MAX_BATCH_FILE_BYTES = 200 * 2**20
MAX_BATCH_LINES = 50_000
_LINE_KEYS = ("custom_id", "method", "url", "body")


def json_response(status: int, payload: Any) -> web.Response:
    """A JSON response; `payload` already encoded when it is bytes."""
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return web.Response(status=status, body=body, content_type="application/json")


def openai_error(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> web.Response:
    """OpenAI's error object, with the param and code its validation errors carry."""
    error = orjson.loads(error_body(status, message, code=code))
    error["error"]["param"] = param
    return json_response(status, error)


def not_found(kind: str, ident: str, param: str = "id") -> web.Response:
    """OpenAI's 404 for a missing object."""
    return openai_error(404, f"No such {kind} object: {ident}", param=param)


@dataclass(slots=True)
class StoredFile:
    """An uploaded or generated file."""

    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int
    visible_at: float  # monotonic time from which reads find it

    def to_dict(self) -> dict[str, Any]:
        """The file object."""
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


class FileStore:
    """The files of the OpenAI side, keyed by id."""

    def __init__(self, new_id: Callable[[], str], visible_after_ms: float) -> None:
        self.files: dict[str, StoredFile] = {}
        self._new_id = new_id
        self._lag_s = visible_after_ms / 1000

    def add(self, filename: str, purpose: str, content: bytes, *, lag: bool = False) -> StoredFile:
        """Store a file; an upload (`lag`) stays invisible for `file_visible_after_ms`."""
        now = time.monotonic()
        stored = StoredFile(self._new_id(), filename, purpose, content, int(time.time()),
                            now + (self._lag_s if lag else 0.0))
        self.files[stored.id] = stored
        return stored

    def find(self, file_id: str) -> StoredFile | None:
        """The file, or None when it does not exist or is not visible yet."""
        stored = self.files.get(file_id)
        if stored is None or time.monotonic() < stored.visible_at:
            return None
        return stored

    async def upload(self, request: web.Request) -> web.Response:
        """POST /v1/files."""
        try:
            form = await request.post()
        except ValueError as exc:
            return openai_error(400, f"Could not parse multipart form: {exc}")
        purpose = form.get("purpose")
        upload = form.get("file")
        if not isinstance(purpose, str) or not purpose:
            return openai_error(400, "Missing required parameter: 'purpose'.", param="purpose",
                                code="missing_required_parameter")
        if purpose not in PURPOSES:
            supported = ", ".join(f"'{p}'" for p in PURPOSES)
            return openai_error(400, f"Invalid value: '{purpose}'. Supported values are: "
                                f"{supported}.", param="purpose", code="invalid_value")
        if not isinstance(upload, web.FileField):
            return openai_error(400, "Missing required parameter: 'file'.", param="file",
                                code="missing_required_parameter")
        content = upload.file.read()
        if purpose == "batch" and not upload.filename.endswith(".jsonl"):
            return openai_error(400, "Invalid file format for Batch API. Must be .jsonl",
                                param="file")
        if purpose == "batch" and len(content) > MAX_BATCH_FILE_BYTES:
            return openai_error(400, "File is too large: a batch input file may have at most "
                                "200 MB.", param="file")
        return json_response(200, self.add(upload.filename, purpose, content, lag=True).to_dict())

    def retrieve(self, file_id: str) -> web.Response:
        """GET /v1/files/{id}."""
        stored = self.find(file_id)
        return json_response(200, stored.to_dict()) if stored else not_found("File", file_id)

    def download(self, file_id: str) -> web.Response:
        """GET /v1/files/{id}/content."""
        stored = self.find(file_id)
        if stored is None:
            return not_found("File", file_id)
        return web.Response(body=stored.content, content_type="application/octet-stream")

    def delete(self, file_id: str) -> web.Response:
        """DELETE /v1/files/{id}."""
        if self.find(file_id) is None:
            return not_found("File", file_id)
        del self.files[file_id]
        return json_response(200, {"id": file_id, "object": "file", "deleted": True})


def _error(code: str, message: str, line: int | None, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def check_input(
    content: bytes, endpoint: str
) -> tuple[list[tuple[str, dict[str, Any]]], str | None, list[dict[str, Any]]]:
    """Read a batch input file: its (custom_id, body) lines, its model, the errors that fail it.

    As OpenAI validates it: one JSON object per line with custom_id, method "POST", the batch's
    endpoint as url and a body; unique custom_ids; one model in the whole file.
    """
    items: list[tuple[str, dict[str, Any]]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    model: str | None = None
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        problem, item = _check_line(raw, number, endpoint)
        if problem is None and item is not None:
            custom_id, body = item
            if custom_id in seen:
                problem = _error("duplicate_custom_id", f"The custom_id '{custom_id}' is "
                                 "duplicated; each request needs its own.", number, "custom_id")
            elif model is not None and body["model"] != model:
                problem = _error("model_mismatch", f"The model '{body['model']}' differs from "
                                 f"'{model}' of the file's earlier requests: one model per "
                                 "batch.", number, "body.model")
            else:
                seen.add(custom_id)
                model = model or body["model"]
                items.append(item)
        if problem is not None:
            errors.append(problem)
    if not items and not errors:
        errors.append(_error("empty_file", "The input file has no requests.", None))
    if len(items) > MAX_BATCH_LINES:
        errors.append(_error("too_many_tasks", f"The batch has {len(items)} requests; at most "
                             f"{MAX_BATCH_LINES} are allowed.", None))
    return items, model, errors[:100]


def _check_line(
    raw: bytes, number: int, endpoint: str
) -> tuple[dict[str, Any] | None, tuple[str, dict[str, Any]] | None]:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict):
        return _error("invalid_json_line", "This line is not parseable as valid JSON.",
                      number), None
    for key in _LINE_KEYS:
        if key not in obj:
            return _error("missing_required_parameter", f"Missing required parameter: "
                          f"'{key}'.", number, key), None
    custom_id, body = obj["custom_id"], obj["body"]
    if not isinstance(custom_id, str) or not custom_id:
        return _error("invalid_value", "custom_id must be a non-empty string.", number,
                      "custom_id"), None
    if obj["method"] != "POST":
        return _error("invalid_value", f"Invalid value: '{obj['method']}'. Supported values "
                      "are: 'POST'.", number, "method"), None
    if obj["url"] != endpoint:
        return _error("url_mismatch", f"The url '{obj['url']}' does not match the batch's "
                      f"endpoint '{endpoint}'.", number, "url"), None
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return _error("missing_required_parameter", "Missing required parameter: "
                      "'body.model'.", number, "body.model"), None
    return None, (custom_id, body)
