"""The transport: one aiohttp session per provider, and the one place foreign errors are mapped.

Everything aiohttp, HTTP status codes and undecodable JSON can throw is turned into the tree of
`batchrun.errors` here; nothing above this module catches `aiohttp` exceptions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import orjson

from batchrun.errors import (
    AuthenticationFailed,
    BadRequest,
    ConnectionFailed,
    MalformedResponse,
    NotFound,
    Overloaded,
    QuotaExhausted,
    RateLimited,
    RequestError,
    RequestTooLarge,
    ResponseTooLarge,
    ServerError,
    TerminalError,
    Timeout,
)
from batchrun.parse import Answer, SSEDecoder, error_from_body
from batchrun.providers.redact import Redactor
from batchrun.providers.redirects import MAX_REDIRECTS, redirect_target, too_many_redirects

if TYPE_CHECKING:
    from batchrun.providers.base import WireFormat

HeaderObserver = Callable[[Mapping[str, str], int], None]
# An error body is read this far at most; its message keeps the first DETAIL_CHARS characters,
# and a body that is not JSON the first PREVIEW_CHARS.
MAX_ERROR_BODY = 64 * 1024
DETAIL_CHARS = 500
PREVIEW_CHARS = 200


class Endpoint(Protocol):
    """What the transport needs to know of a provider (a job's `ProviderSpec` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def base_url(self) -> str: ...
    @property
    def api_key_env(self) -> str | None: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def max_concurrency(self) -> int: ...
    @property
    def timeout_seconds(self) -> float: ...
    @property
    def idle_timeout_seconds(self) -> float: ...
    @property
    def max_response_bytes(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful response: the parsed answer, the raw text if kept, and how long it took."""

    answer: Answer
    latency_s: float
    raw: str | None


class ProviderClient:
    """Sends bodies to one provider and hands back parsed answers or `RequestError`s."""

    def __init__(
        self,
        spec: Endpoint,
        wire_format: WireFormat,
        *,
        api_key: str | None,
        reasoning: str = "auto",
        keep_raw: bool = False,
        on_headers: HeaderObserver | None = None,
    ) -> None:
        self.spec = spec
        self.format = wire_format
        self.url = wire_format.url(spec.base_url)
        self._redact = Redactor(api_key)
        self._headers = {
            "Content-Type": "application/json",
            **dict(spec.headers),
            **wire_format.auth_headers(api_key),
        }
        self._reasoning = reasoning
        self._keep_raw = keep_raw
        self._on_headers = on_headers
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ProviderClient:
        connector = aiohttp.TCPConnector(
            limit=self.spec.max_concurrency, limit_per_host=0, ttl_dns_cache=300
        )
        timeout = aiohttp.ClientTimeout(
            total=self.spec.timeout_seconds, sock_read=self.spec.idle_timeout_seconds
        )
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers=self._headers
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, body: dict[str, Any]) -> Reply:
        """POST one request; returns its Reply or raises a `RequestError`."""
        assert self._session is not None, "use ProviderClient as an async context manager"
        payload = orjson.dumps(self.format.wire_body(body))
        started = time.monotonic()
        name = self.spec.name
        try:
            answer, raw = await self._exchange(self._session, payload, body)
        except RequestError as error:
            raise self._redacted(error) from None
        except (TimeoutError, aiohttp.ServerTimeoutError) as error:
            raise self._redacted(
                Timeout(f"{name}: no complete answer in time ({error!r})")) from None
        except aiohttp.ClientPayloadError as error:
            raise self._redacted(ConnectionFailed(f"{name}: answer cut short: {error}")) from None
        except aiohttp.ClientError as error:
            raise self._redacted(
                ConnectionFailed(f"{name}: {type(error).__name__}: {error}")) from None
        # A provider (or a model) that echoes the key must not get it into the results.
        answer, raw = self._redact.answer(answer, raw)
        return Reply(answer=answer, latency_s=time.monotonic() - started, raw=raw)

    async def _exchange(
        self, session: aiohttp.ClientSession, payload: bytes, body: dict[str, Any]
    ) -> tuple[Answer, str | None]:
        # Redirects are followed by hand: aiohttp would turn a POST answered by 301/302/303
        # into a GET (and follow any redirect to another host, key and all).
        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            async with session.post(url, data=payload, allow_redirects=False) as response:
                if self._on_headers is not None:
                    self._on_headers(response.headers, response.status)
                if 300 <= response.status < 400:
                    location = response.headers.get("Location")
                    url = redirect_target(self.spec.name, url, response.status, location)
                    continue
                if response.status != 200:
                    text = await _read_capped(response)
                    raise self._status_error(response.status, response.headers, text, body)
                # A JSON reply to a streamed request (an error object, or a server that ignored
                # `stream`) is read as a whole body, so its error keeps its class and message.
                if body.get("stream") and response.content_type != "application/json":
                    return await self._read_stream(response)
                raw_bytes = await self._read_body(response)
                answer = self.format.parse_body(self._loads(raw_bytes), reasoning=self._reasoning)
                return answer, raw_bytes.decode("utf-8", "replace") if self._keep_raw else None
        raise too_many_redirects(self.spec.name, self.url)

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytearray:
        self._refuse_by_length(response)
        cap = self.spec.max_response_bytes
        body = bytearray()
        # Read piece by piece and count what comes out of the decoder: a compressed body can
        # grow far past its Content-Length.
        async for chunk in response.content.iter_any():
            body += chunk
            if len(body) > cap:
                raise self._too_large(f"at least {len(body):,} bytes (it was not read further)")
        return body

    async def _read_stream(self, response: aiohttp.ClientResponse) -> tuple[Answer, str | None]:
        decoder = SSEDecoder()
        parser = self.format.stream_parser(reasoning=self._reasoning)
        raw_parts: list[bytes] | None = [] if self._keep_raw else None
        self._refuse_by_length(response)
        cap, received = self.spec.max_response_bytes, 0
        done = False
        async for chunk in response.content.iter_any():
            received += len(chunk)
            if received > cap:
                raise self._too_large(f"at least {received:,} bytes of stream (it was not read "
                                      "further)")
            if raw_parts is not None:
                raw_parts.append(chunk)
            for event in decoder.feed(chunk):
                done = parser.feed(event) or done
            if done:
                break
        if not done:
            for event in decoder.close():
                parser.feed(event)
        raw = b"".join(raw_parts).decode("utf-8", "replace") if raw_parts is not None else None
        return parser.finish(), raw

    def _refuse_by_length(self, response: aiohttp.ClientResponse) -> None:
        # Refused before a byte of the body is read. (The length of a compressed body says
        # little about what it inflates to: that is counted as it is read.)
        size = response.content_length
        plain = response.headers.get("Content-Encoding", "identity") == "identity"
        if size is not None and plain and size > self.spec.max_response_bytes:
            raise self._too_large(f"{size:,} bytes (its Content-Length)")

    def _too_large(self, size: str) -> ResponseTooLarge:
        cap = self.spec.max_response_bytes
        return ResponseTooLarge(
            f"{self.spec.name}: the answer is {size}, more than max_response_bytes = {cap:,}; "
            "raise max_response_bytes for this provider if answers this large are expected",
            status=200)

    def _status_error(
        self, status: int, headers: Mapping[str, str], text: str, body: dict[str, Any]
    ) -> RequestError:
        retry_after = parse_retry_after(headers)
        try:
            data: Any = orjson.loads(text) if text else None
        except orjson.JSONDecodeError:
            data = None
        refined = error_from_body(status, data) if data is not None else None
        if refined is not None:
            detail = refined.message
        else:
            detail = self._redact.preview(text, DETAIL_CHARS) or "no body"
        name = self.spec.name
        if isinstance(refined, QuotaExhausted):  # also a 429: a quota is no rate limit
            return QuotaExhausted(
                f"{name}: HTTP {status}, the account has no quota or balance left: {detail}",
                status=status)
        if isinstance(refined, RequestTooLarge):
            return RequestTooLarge(
                f"{name}: HTTP {status}, this request alone is larger than the tokens/min limit; "
                f"shorten it or lower max_tokens: {detail}", status=status)
        if status == 429 and isinstance(refined, Overloaded):
            # An upstream's overload sent as a 429: not your key's limit, and told apart by class.
            return Overloaded(f"{name}: overloaded (HTTP 429): {detail}",
                              status=status, retry_after=retry_after)
        if status == 429:
            return RateLimited(f"{name}: rate limited (HTTP 429): {detail}",
                               status=status, retry_after=retry_after)
        if status == 529:
            return Overloaded(f"{name}: overloaded (HTTP 529): {detail}",
                              status=status, retry_after=retry_after)
        if status in (408, 409, 425) or status >= 500:
            return ServerError(f"{name}: HTTP {status}: {detail}",
                               status=status, retry_after=retry_after)
        if status in (401, 403) or isinstance(refined, AuthenticationFailed):
            where = f"${self.spec.api_key_env}" if self.spec.api_key_env else "api_key_env"
            return AuthenticationFailed(
                f"{name}: HTTP {status}, the key was refused; check the key in {where}: {detail}",
                status=status)
        if status == 404:
            return NotFound(
                f"{name}: HTTP 404 for POST {self.url} with model {body.get('model')!r}; "
                f"check base_url and the model name: {detail}", status=status)
        if isinstance(refined, TerminalError):  # e.g. a 400 whose code says context too long
            return type(refined)(f"{name}: HTTP {status}: {detail}", status=status)
        return BadRequest(f"{name}: HTTP {status}: {detail}", status=status)

    def _redacted(self, error: RequestError) -> RequestError:
        # Some providers echo the key they refused; it must never reach a file or a log.
        message = self._redact(error.message)
        if message is not error.message:
            error.message = message
            error.args = (message,)
        return error

    def _loads(self, raw: bytes | bytearray) -> Any:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            text = raw[:MAX_ERROR_BODY].decode("utf-8", "replace")
            preview = self._redact.preview(text, PREVIEW_CHARS)
            raise MalformedResponse(
                f"response is not valid JSON ({error}): {preview!r}") from None


async def _read_capped(response: aiohttp.ClientResponse) -> str:
    raw = await response.content.read(MAX_ERROR_BODY)
    return raw.decode("utf-8", "replace")


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


