"""Server-Sent Events: bytes in, events out, no I/O.

`SSEDecoder` follows the WHATWG event-stream rules: lines end in CRLF, LF or CR; a blank line
dispatches the event; `data:` lines (with or without the space after the colon) are joined with
"\\n"; `event:` names the event; lines starting with ":" are comments (`: keep-alive`,
`: OPENROUTER PROCESSING`) and are dropped; `id:`, `retry:` and unknown fields are ignored.
Chunks may split anything, a multi-byte UTF-8 character or a CRLF pair included: bytes are only
decoded once a whole line has arrived.
"""

from __future__ import annotations

from dataclasses import dataclass

_LF = 0x0A


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its `event:` name (None when it had none) and its joined data."""

    event: str | None
    data: str


class SSEDecoder:
    """Incremental event-stream decoder: `feed` bytes as they arrive, `close` at the end."""

    __slots__ = ("_data", "_event", "_pending", "_skip_lf", "_started")

    def __init__(self) -> None:
        # Bytes of the unfinished last line, kept as pieces so a long line is joined once.
        self._pending: list[bytes] = []
        # The previous chunk ended in "\r": a "\n" opening the next one completes that CRLF.
        self._skip_lf = False
        self._started = False
        self._data: list[str] = []
        self._event: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Consume the next bytes; return the events they complete, in order."""
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[0] == _LF:
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._skip_lf = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = chunk.rfind(b"\n")
        if end < 0:
            self._pending.append(chunk)
            return []
        pending = self._pending
        if pending:
            pending.append(chunk[:end])
            head = b"".join(pending)
            pending.clear()
        else:
            head = chunk[:end]
        if end + 1 < len(chunk):
            pending.append(chunk[end + 1 :])
        return self._lines(head.decode("utf-8", "replace"))

    def close(self) -> list[SSEEvent]:
        """End of stream: treat an unterminated last line and event as complete."""
        events: list[SSEEvent] = []
        if self._pending:
            tail = b"".join(self._pending)
            self._pending.clear()
            events = self._lines(tail.decode("utf-8", "replace"))
        if self._data:
            events.append(SSEEvent(self._event, "\n".join(self._data)))
        self._data = []
        self._event = None
        return events

    def _lines(self, text: str) -> list[SSEEvent]:
        if not self._started:
            self._started = True
            if text.startswith("\ufeff"):
                text = text[1:]
        events: list[SSEEvent] = []
        data = self._data
        for line in text.split("\n"):
            if not line:
                if data:
                    events.append(SSEEvent(self._event, "\n".join(data)))
                    data = self._data = []
                self._event = None
            elif line.startswith("data:"):
                # The common case first: one `data:` line per event.
                data.append(line[6:] if line.startswith(" ", 5) else line[5:])
            elif line[0] == ":":
                continue
            else:
                name, _, value = line.partition(":")
                if name == "event":
                    self._event = value[1:] if value.startswith(" ") else value
                elif name == "data":
                    data.append("")  # a bare `data` line (no colon) adds an empty line
        return events
