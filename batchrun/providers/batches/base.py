"""What a provider's batch API is to the driver: its batch objects, result lines and calls."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchrun.errors import RequestError
    from batchrun.providers.base import WireFormat
    from batchrun.providers.batches.transport import BatchHTTP


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """One provider batch as it stands: its own status word and counts, and where results are."""

    id: str
    status: str  # the provider's word: "in_progress", "finalizing", "canceling", "expired", ...
    phase: str  # "validating", "in_progress", "finalizing", "cancelling" or "ended"
    done: int  # lines finished so far, as far as the provider tells
    total: int
    created_at: float | None = None  # Unix time
    key: str | None = None  # batchrun's batch key, when the provider keeps metadata
    output_file_id: str | None = None
    error_file_id: str | None = None
    results_url: str | None = None
    message: str | None = None  # why the batch failed as a whole
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        """Whether the batch is in a final state."""
        return self.phase == "ended"


@dataclass(frozen=True, slots=True)
class ResultLine:
    """One line of a batch's results, read back to its request by `custom_id`.

    `kind`: "ok" (with the answer's `body`), "error" (with `error`), "expired" or "cancelled".
    """

    custom_id: str
    kind: str
    body: Any = None
    error: RequestError | None = None


class BatchAPI(ABC):
    """One batch API: the file lines it takes, and create / get / list / cancel / results."""

    # Per batch, whatever [batch] asks for.
    max_requests: int
    max_bytes: int

    def __init__(self, http: BatchHTTP, wire: WireFormat) -> None:
        self.http = http
        self.wire = wire

    @abstractmethod
    def line(self, custom_id: str, body: dict[str, Any]) -> bytes:
        """The batch file line (newline included) of one canonical request body."""

    async def upload(self, key: str, path: Path) -> str | None:
        """Upload the batch file where the API takes files apart (OpenAI); its file id."""
        return None

    @abstractmethod
    async def create(
        self, path: Path, file_id: str | None, window: str, metadata: Mapping[str, str]
    ) -> BatchInfo:
        """Create the batch of the uploaded file `file_id`, or of the file at `path`."""

    @abstractmethod
    async def get(self, batch_id: str) -> BatchInfo:
        """The batch as it stands."""

    @abstractmethod
    def listing(self) -> AsyncIterator[BatchInfo]:
        """The account's batches, newest first, page after page."""

    @abstractmethod
    def info(self, data: Any) -> BatchInfo:
        """A batch object of this API as a `BatchInfo`."""

    async def _pages(self, path: str, cursor: str) -> AsyncIterator[BatchInfo]:
        """A list endpoint read page by page; `cursor` is the API's name for "after this id"."""
        after: str | None = None
        while True:
            params = {"limit": "100", **({cursor: after} if after else {})}
            page = await self.http.json("GET", self.http.url(path), params=params)
            data = page.get("data") if isinstance(page, dict) else None
            for item in data or ():
                yield self.info(item)
            if not data or not page.get("has_more"):
                return
            after = page.get("last_id") or data[-1].get("id")

    @abstractmethod
    async def cancel(self, batch_id: str) -> BatchInfo:
        """Ask the provider to cancel; it goes on to its final state by itself."""

    @abstractmethod
    async def download(self, info: BatchInfo, folder: Path, stem: str) -> list[Path]:
        """Fetch an ended batch's result files into `folder`; their paths."""

    @abstractmethod
    def result_line(self, raw: bytes) -> ResultLine:
        """One line of a downloaded result file."""

    def read_results(self, path: Path) -> Iterator[ResultLine]:
        """The result lines of one downloaded file."""
        with path.open("rb") as lines:
            for raw in lines:
                if raw.strip():
                    yield self.result_line(raw)

    async def first_custom_id(self, info: BatchInfo, folder: Path, stem: str) -> str | None:
        """The custom_id of an ended batch's first result line (to recognise an orphan batch)."""
        paths = await self.download(info, folder, stem)
        try:
            for path in paths:
                for line in self.read_results(path):
                    return line.custom_id
            return None
        finally:
            for path in paths:
                path.unlink(missing_ok=True)

    @property
    def keeps_metadata(self) -> bool:
        """Whether a batch object carries batchrun's key (else its custom_ids do)."""
        return False
