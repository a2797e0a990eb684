"""The exceptions batchrun raises, in one tree.

    BatchrunError                   anything batchrun raises on purpose
    ├── UsageError                  bad job, input or command line: exit code 2
    │   ├── JobError                the job file (names the file and the key)
    │   ├── InputError              the input data (names the file and line, or the id)
    │   └── OutputDirError          the output directory (locked, or not batchrun's)
    ├── StorageError                the output directory cannot be written (disk full): exit 4
    └── RequestError                one request failed; `error_type` in the output is the class name
        ├── RetryableError          worth another attempt
        │   ├── RateLimited         429
        │   ├── Overloaded          529, or an `overloaded_error`
        │   ├── ServerError         5xx, 408, 409, 425
        │   ├── ConnectionFailed    refused, reset, dropped mid-answer
        │   ├── Timeout             total or idle timeout
        │   ├── MalformedResponse   a body that is not the JSON the format promises
        │   ├── IncompleteStream    a stream that ended before its end marker
        │   ├── ProviderError       an `{"error": ...}` in an HTTP 200 or mid-stream
        │   └── InvalidAnswer       the answer failed `parse.json` / `parse.schema`
        └── TerminalError           retrying cannot help: recorded at once
            ├── BadRequest          400, 422
            ├── ContextTooLong      the prompt does not fit the model's context
            ├── RequestTooLarge     one request above the whole tokens/min limit (a 429 for ever)
            ├── NotFound            404: wrong URL or model
            ├── ResponseTooLarge    an answer past the provider's `max_response_bytes`
            ├── Redirected          a redirect that is not followed (301/302/303, another origin)
            └── AccountRefused      the provider refused the account: sending to it stops (exit 5)
                ├── AuthenticationFailed  401, 403: the key is missing, wrong or revoked
                └── QuotaExhausted  no quota, no balance, billing (402, insufficient_quota, ...)

Foreign errors (aiohttp, HTTP statuses, JSON decoding) are translated into this tree at the
provider boundary only; nothing above it catches `aiohttp` exceptions. Retryability is decided by
class alone (`isinstance(err, RetryableError)`), never by matching message text.
"""

from __future__ import annotations

import errno
from pathlib import Path

# Exit codes of `batchrun run`, shared by the command, the summary and the shard parents.
EXIT_OK, EXIT_SOME_ERRORS, EXIT_USAGE, EXIT_BUDGET, EXIT_INTERNAL = 0, 1, 2, 3, 4
EXIT_ACCOUNT, EXIT_INTERRUPTED = 5, 130


class BatchrunError(Exception):
    """Base class of every error batchrun raises on purpose."""


class UsageError(BatchrunError):
    """A bad job file, input or command line; the CLI exits with code 2."""


class JobError(UsageError):
    """The job file is invalid; the message names the file and the key."""


class InputError(UsageError):
    """The input data is invalid; the message names the file and line, or the id."""


class OutputDirError(UsageError):
    """The output directory cannot be used (locked by a live run, or not made by batchrun)."""


class StorageError(BatchrunError):
    """The output directory could not be written (disk full, a file-size limit, I/O error).

    What was journaled before is safe; the CLI exits with code 4 and says what to do.
    """

    @classmethod
    def from_os_error(cls, root: Path, error: OSError) -> StorageError:
        """The error for an OSError met while writing results under `root`."""
        if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            what = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
                    errno.EFBIG: "a file-size limit was reached"}[error.errno]
        else:
            what = f"writing failed ({error.strerror or error})"
        return cls(
            f"{root}: {what}; the results written so far are safe. Free some space (or choose "
            "another --output), then run the same command again to go on"
        )


class RequestError(BatchrunError):
    """One request failed. `status` is the HTTP status when there was one."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        # Seconds the server asked us to wait (Retry-After / retry-after-ms), if it said.
        self.retry_after = retry_after

    @property
    def error_type(self) -> str:
        """The name written to the `error_type` column."""
        return type(self).__name__


class RetryableError(RequestError):
    """A failure that another attempt may cure."""


class RateLimited(RetryableError):
    """HTTP 429: the provider wants us to slow down."""


class Overloaded(RetryableError):
    """HTTP 529 or an `overloaded_error`: the provider is busy."""


class ServerError(RetryableError):
    """HTTP 5xx, 408, 409 or 425."""


class ConnectionFailed(RetryableError):
    """The connection was refused, reset or dropped."""


class Timeout(RetryableError):
    """No complete answer within the total timeout, or silence past the idle timeout."""


class MalformedResponse(RetryableError):
    """The body is not the JSON the wire format promises (or was cut short)."""


class IncompleteStream(RetryableError):
    """A stream ended before its end marker (`[DONE]` / `message_stop`)."""


class ProviderError(RetryableError):
    """An `{"error": ...}` object in an HTTP 200 body or in the middle of a stream."""


class InvalidAnswer(RetryableError):
    """The answer is not valid JSON, or fails the job's schema.

    `error_type` is `invalid_json` or `schema_mismatch`, the names users filter on.
    """

    def __init__(self, message: str, *, kind: str = "invalid_json", content: str | None = None):
        super().__init__(message)
        self.kind = kind
        # The answer that failed, kept so the final error row still shows it.
        self.content = content

    @property
    def error_type(self) -> str:
        return self.kind


class TerminalError(RequestError):
    """A failure that retrying cannot cure; recorded at once."""


class BadRequest(TerminalError):
    """HTTP 400 or 422: the provider rejected the request body."""


class ContextTooLong(TerminalError):
    """The prompt (plus max_tokens) does not fit the model's context window."""


class NotFound(TerminalError):
    """HTTP 404: the URL or the model does not exist."""


class ResponseTooLarge(TerminalError):
    """The answer is larger than the provider's `max_response_bytes`; it was not read further."""


class Redirected(TerminalError):
    """A redirect that batchrun does not follow.

    301, 302 and 303 would turn the POST into a GET; a 307 or 308 is followed only to the same
    origin, since following it elsewhere would send the key to another host.
    """


class RequestTooLarge(TerminalError):
    """One request needs more tokens than the provider's whole tokens/min limit allows."""


class AccountRefused(TerminalError):
    """The provider refused the account, not the request: every request would fail alike.

    A run stops sending to such a provider after a few in a row and leaves its rows pending.
    """


class AuthenticationFailed(AccountRefused):
    """HTTP 401 or 403: the key is missing, wrong, revoked, or lacks access."""


class QuotaExhausted(AccountRefused):
    """No quota, no balance or a billing problem: top up, then run again."""
