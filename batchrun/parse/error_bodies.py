"""Provider error objects, translated into the error tree of `batchrun.errors`.

The shapes read: OpenAI's `{"error": {"message", "type", "param", "code"}}` (OpenRouter puts
the HTTP status in `code`), Anthropic's `{"type": "error", "error": {"type", "message"}}`,
vLLM's and SGLang's `{"object": "error", "message", "type", "code"}`, and `{"error": "text"}`.

The class is decided by the error's `code` / `type` first, then by the HTTP status (or, inside
an HTTP 200 body, by a numeric `code`), then by the message for the conditions many servers
report without a code of their own: a prompt longer than the context window, an account out of
balance, and one request larger than a whole tokens/min limit (OpenAI says so in a 429 whose
code is the same as a passing rate limit's). The provider's own message is always kept.

Account refusals (`QuotaExhausted`, `AuthenticationFailed`) are recognised by the shapes real
providers send: OpenAI `insufficient_quota` (a 429), DeepSeek and OpenRouter HTTP 402, Anthropic
"credit balance is too low" (a 400), Zhipu/GLM code 1113 (a 429), DashScope `Arrearage` (a 400),
Moonshot `exceeded_current_quota_error`, Volcengine Ark `AccountOverdueError`, SiliconFlow code
30011, and relays' "余额不足" (insufficient balance) messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from batchrun.errors import (
    AuthenticationFailed,
    BadRequest,
    ContextTooLong,
    NotFound,
    Overloaded,
    ProviderError,
    QuotaExhausted,
    RateLimited,
    RequestError,
    RequestTooLarge,
    ServerError,
)

__all__ = ["error_from_body"]

# `code` / `type` values, lowercased, in the order they are tried.
_BY_LABEL: tuple[tuple[frozenset[str], type[RequestError]], ...] = (
    (
        frozenset({
            "insufficient_quota", "billing_hard_limit_reached", "billing_not_active",
            "insufficient_balance", "payment_required", "arrearage", "accountoverdueerror",
            "exceeded_current_quota_error", "1113", "30011", "credit_balance_too_low",
        }),
        QuotaExhausted,
    ),
    (frozenset({"account_deactivated", "account_suspended"}), AuthenticationFailed),
    (
        frozenset({"context_length_exceeded", "context_window_exceeded"}),
        ContextTooLong,
    ),
    (
        frozenset({"rate_limit_error", "rate_limit_exceeded", "rate_limited", "ratelimiterror"}),
        RateLimited,
    ),
    (frozenset({"overloaded_error", "overloaded"}), Overloaded),
    (
        frozenset(
            {
                "authentication_error",
                "permission_error",
                "invalid_api_key",
                "authenticationerror",
                "permissiondeniederror",
            }
        ),
        AuthenticationFailed,
    ),
    (frozenset({"not_found_error", "model_not_found", "notfounderror"}), NotFound),
)
_BAD_REQUEST = frozenset({"invalid_request_error", "badrequesterror", "bad_request"})

# Only for errors whose code/type say nothing more specific than "bad request": vLLM, SGLang,
# DeepSeek, OpenRouter and Anthropic report a too-long prompt in the message alone.
# Lowercase substrings; keep this list short.
_CONTEXT_PHRASES = (
    "context length",  # "maximum context length is N tokens", "longer than ... context length"
    "context window",  # "exceeds the context window of this model"
    "prompt is too long",  # Anthropic: "prompt is too long: N tokens > M maximum"
)

# An account out of money, said in words (under a generic code, or none).
_QUOTA_PHRASES = (
    "credit balance is too low",  # Anthropic (a 400 invalid_request_error)
    "insufficient balance",  # DeepSeek, OpenRouter, relays
    "exceeded your current quota",  # OpenAI
    "余额不足",  # "insufficient balance": Zhipu, relays built on one-api / new-api
    "额度不足",  # "quota insufficient": relays
)
# One request above the whole tokens/min limit: OpenAI's 429 says so only in words.
_TOO_LARGE_PHRASES = ("request too large for",)

_BY_STATUS: dict[int, type[RequestError]] = {
    400: BadRequest,
    401: AuthenticationFailed,
    402: QuotaExhausted,
    403: AuthenticationFailed,
    404: NotFound,
    408: ServerError,
    409: ServerError,
    422: BadRequest,
    425: ServerError,
    429: RateLimited,
    529: Overloaded,
}


def error_from_body(status: int | None, body: object) -> RequestError | None:
    """The error a provider's error object describes, or None if `body` holds no error object.

    `status` is the HTTP status (None or 200 for an error inside a successful response or a
    stream); `body` a parsed JSON value, or the raw bytes / text of one.
    """
    info = _error_info(status, body)
    if info is None:
        return None
    code, kind, message = info.get("code"), info.get("type"), info.get("message")
    if not isinstance(message, str):
        message = "" if message is None else orjson.dumps(message).decode()
    label = code if code is not None else kind
    if label is not None and message:
        text = f"{label}: {message}"
    else:
        text = message or (str(label) if label is not None else "error without a message")
    return _classify(status, code, kind, message)(text, status=status)


def _error_info(status: int | None, body: object) -> Mapping[str, Any] | None:
    if isinstance(body, bytes | bytearray | memoryview | str):
        try:
            body = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(body, Mapping):
        return None
    error = body.get("error")
    if error:
        if isinstance(error, Mapping):
            return error
        return {"message": error if isinstance(error, str) else orjson.dumps(error).decode()}
    if body.get("object") == "error":
        return body
    if status is not None and status >= 400:
        for key in ("detail", "message"):
            if body.get(key):
                # A top-level code says what it is (DashScope `Arrearage`, SiliconFlow 30011).
                return {"message": body[key], "code": body.get("code")}
    return None


def _classify(status: int | None, code: object, kind: object, message: str) -> type[RequestError]:
    labels = [str(value).lower() for value in (code, kind)
              if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))]
    lowered = message.lower()
    if any(phrase in lowered for phrase in _TOO_LARGE_PHRASES):
        return RequestTooLarge
    for names, by_label in _BY_LABEL:
        if any(label in names for label in labels):
            return by_label
    in_body = status is None or status < 300
    http = status if not in_body else None
    if http is None and isinstance(code, int) and not isinstance(code, bool) and code >= 400:
        http = code
    if any(phrase in lowered for phrase in _QUOTA_PHRASES):
        return QuotaExhausted
    if http in (None, 400, 413, 422) and any(phrase in lowered for phrase in _CONTEXT_PHRASES):
        return ContextTooLong
    if http is not None:
        cls = _BY_STATUS.get(http)
        if in_body:
            # A failure reported inside a 200 response: retry unless it is clearly final.
            return ProviderError if cls is None or cls is ServerError else cls
        if cls is not None:
            return cls
        return ServerError if http >= 500 else BadRequest
    if any(label in _BAD_REQUEST for label in labels):
        return BadRequest
    return ProviderError
