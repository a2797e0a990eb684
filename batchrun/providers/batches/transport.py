"""HTTP for the batch APIs: JSON calls, a multipart upload, a streamed body, a file download.

Like the online transport (`providers.http`), this is where aiohttp's errors, HTTP statuses and
undecodable JSON become the tree of `batchrun.errors`, and where the key is kept out of every
message. Uploads and downloads can be hundreds of megabytes: they are streamed from and to disk,
with no total timeout, only one on silence.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import aiohttp
import orjson
from yarl import URL

from batchrun.errors import (
    AuthenticationFailed,
    BadRequest,
    ConnectionFailed,
    MalformedResponse,
    NotFound,
    Overloaded,
    RateLimited,
    Redirected,
    RequestError,
    ServerError,
    TerminalError,
    Timeout,
)
from batchrun.parse import error_from_body
from batchrun.providers.http import Endpoint, parse_retry_after
from batchrun.providers.redact import Redactor

MAX_ERROR_BODY = 64 * 1024
DETAIL_CHARS = 500
CHUNK = 1 << 20
MAX_LINE = 64 << 20  # a first result line read on its own: one answer, however long


class BatchHTTP:
    """One provider's session for batch calls; every failure is a `RequestError`."""

    def __init__(
        self, spec: Endpoint, auth_headers: Mapping[str, str], *, api_key: str | None
    ) -> None:
        self.spec = spec
        self.base_url = spec.base_url.rstrip("/")
        self.redact = Redactor(api_key)
        self._headers = {**dict(spec.headers), **auth_headers}
        self._origin = URL(self.base_url).origin()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> BatchHTTP:
        # No total timeout: a 200 MB upload or download takes what it takes; silence is capped.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=60,
                                        sock_read=self.spec.timeout_seconds)
        self._session = aiohttp.ClientSession(timeout=timeout)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, path: str) -> str:
        """`path` appended to base_url exactly, as the online calls are."""
        return self.base_url + path

    async def json(
        self, method: str, url: str, payload: Any = None, *, params: Mapping[str, str] | None = None
    ) -> Any:
        """One JSON call; the decoded answer."""
        data = None if payload is None else orjson.dumps(payload)
        headers = {"Content-Type": "application/json"} if data is not None else None
        return await self._call(method, url, data=data, headers=headers, params=params)

    async def post_stream(self, url: str, chunks: AsyncIterator[bytes]) -> Any:
        """POST a JSON body produced piece by piece (a large batch, read from disk)."""
        return await self._call("POST", url, data=chunks,
                                headers={"Content-Type": "application/json"})

    async def upload(
        self, url: str, fields: Mapping[str, str], path: Path, filename: str
    ) -> Any:
        """A multipart upload of the file at `path` with the form `fields`."""
        handle: IO[bytes] = await asyncio.to_thread(path.open, "rb")
        try:
            form = aiohttp.FormData()
            for key, value in fields.items():
                form.add_field(key, value)
            form.add_field("file", handle, filename=filename,
                           content_type="application/jsonl")
            return await self._call("POST", url, data=form)
        finally:
            await asyncio.to_thread(handle.close)

    async def download(self, url: str, dest: Path) -> int:
        """Stream a body into `dest` (replaced); the bytes written."""
        session = self._open()
        written = 0
        with self._failures("download", url):
            async with session.get(url, headers=self._headers_for(url),
                                   allow_redirects=False) as response:
                await self._check(response)
                handle: IO[bytes] = await asyncio.to_thread(dest.open, "wb")
                try:
                    async for chunk in response.content.iter_chunked(CHUNK):
                        await asyncio.to_thread(handle.write, chunk)
                        written += len(chunk)
                finally:
                    await asyncio.to_thread(handle.close)
        return written

    async def first_line(self, url: str) -> bytes | None:
        """The first line of a body, leaving the rest unread; None when it is over MAX_LINE."""
        session = self._open()
        try:
            with self._failures("GET", url):
                async with session.get(url, headers=self._headers_for(url),
                                       allow_redirects=False) as response:
                    await self._check(response)
                    return await response.content.readuntil(b"\n", max_size=MAX_LINE)
        except ValueError:  # aiohttp's "Chunk too big"
            return None

    def _headers_for(
        self, url: str, extra: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """The provider's headers (its key among them) for its own origin only: a results_url
        on another host gets none of them."""
        own = self._headers if URL(url).origin() == self._origin else {}
        return {**own, **(extra or {})}

    @contextmanager
    def _failures(self, what: str, url: str) -> Iterator[None]:
        """Transport failures as the request error tree says them, with secrets redacted."""
        try:
            yield
        except RequestError as error:
            raise self._redacted(error) from None
        except (TimeoutError, aiohttp.ServerTimeoutError) as error:
            raise Timeout(f"{self.spec.name}: {what} {url}: no answer in time "
                          f"({error!r})") from None
        except aiohttp.ClientError as error:
            raise ConnectionFailed(self._redact_text(
                f"{self.spec.name}: {what} {url}: {type(error).__name__}: {error}")) from None

    def _open(self) -> aiohttp.ClientSession:
        assert self._session is not None, "use BatchHTTP as an async context manager"
        return self._session

    async def _call(
        self, method: str, url: str, *, data: Any = None, headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        session = self._open()
        with self._failures(method, url):
            async with session.request(method, url, data=data,
                                       headers=self._headers_for(url, headers), params=params,
                                       allow_redirects=False) as response:
                await self._check(response)
                raw = await response.read()
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            preview = self.redact.preview(raw[:MAX_ERROR_BODY].decode("utf-8", "replace"), 200)
            raise MalformedResponse(
                f"{self.spec.name}: {method} {url}: the answer is not JSON: {preview!r}") from None

    async def _check(self, response: aiohttp.ClientResponse) -> None:
        status = response.status
        if 200 <= status < 300:
            return
        if 300 <= status < 400:
            raise Redirected(f"{self.spec.name}: HTTP {status} redirect to "
                             f"{response.headers.get('Location')!r} is not followed; set "
                             "base_url to where the API is", status=status)
        text = (await response.content.read(MAX_ERROR_BODY)).decode("utf-8", "replace")
        raise self.status_error(status, response.headers, text, f"{response.method} "
                                f"{response.url.path}")

    def status_error(
        self, status: int, headers: Mapping[str, str], text: str, call: str
    ) -> RequestError:
        """The error an HTTP status (and the provider's error object) stands for."""
        try:
            data: Any = orjson.loads(text) if text else None
        except orjson.JSONDecodeError:
            data = None
        refined = error_from_body(status, data) if data is not None else None
        detail = refined.message if refined is not None else (
            self.redact.preview(text, DETAIL_CHARS) or "no body")
        message = f"{self.spec.name}: {call}: HTTP {status}: {detail}"
        retry_after = parse_retry_after(headers)
        if refined is not None and not isinstance(refined, BadRequest | NotFound):
            if isinstance(refined, TerminalError):
                return type(refined)(message, status=status)
            return type(refined)(message, status=status, retry_after=retry_after)
        if status == 429:
            return RateLimited(message, status=status, retry_after=retry_after)
        if status == 529:  # as the online calls say: the provider is overloaded
            return Overloaded(message, status=status, retry_after=retry_after)
        if status in (408, 409, 425) or status >= 500:
            return ServerError(message, status=status, retry_after=retry_after)
        if status in (401, 403):
            return AuthenticationFailed(message, status=status)
        if status == 404:
            return NotFound(message, status=status)
        return BadRequest(message, status=status)

    def _redact_text(self, text: str) -> str:
        return self.redact(text)

    def _redacted(self, error: RequestError) -> RequestError:
        message = self.redact(error.message)
        if message is not error.message:
            error.message = message
            error.args = (message,)
        return error
