"""What a wire format is: how to address, authenticate, shape a body and read an answer."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol

from batchrun.parse import Answer, SSEEvent


def bearer(api_key: str | None) -> dict[str, str]:
    """`Authorization: Bearer <key>`, the header of OpenAI's APIs and their clones."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


class StreamParser(Protocol):
    """Accumulates one response's stream events into an Answer."""

    def feed(self, event: SSEEvent) -> bool:
        """Take one event; True once the stream's end marker has arrived."""
        ...

    def finish(self) -> Answer:
        """The Answer; raises IncompleteStream when the end marker never came."""
        ...


class WireFormat(ABC):
    """One HTTP API shape (OpenAI chat completions, Anthropic messages, ...).

    A wire format builds the body and reads what came back; sending is the transport's job and
    every function here is pure, so a new format is one small module registered by name.
    """

    name: ClassVar[str]
    # Appended to base_url exactly, whatever path base_url has or lacks.
    path: ClassVar[str]

    def url(self, base_url: str) -> str:
        """The endpoint to POST to."""
        return base_url.rstrip("/") + self.path

    @abstractmethod
    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        """Headers carrying the key (and any version header the API requires)."""

    @abstractmethod
    def wire_body(self, body: dict[str, Any]) -> dict[str, Any]:
        """Translate the canonical OpenAI-shaped body into this format's body."""

    @abstractmethod
    def parse_body(self, data: Any, *, reasoning: str) -> Answer:
        """Parse a complete (non-streamed) response body."""

    @abstractmethod
    def stream_parser(self, *, reasoning: str) -> StreamParser:
        """A fresh accumulator for one streamed response."""
