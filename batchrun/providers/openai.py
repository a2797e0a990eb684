"""OpenAI chat completions: POST {base_url}/chat/completions."""

from __future__ import annotations

from typing import Any

from batchrun.parse import Answer, OpenAIStream, parse_openai
from batchrun.providers.base import StreamParser, WireFormat, bearer


class OpenAIFormat(WireFormat):
    """The OpenAI chat-completions format, spoken by most providers and relays."""

    name = "openai"
    path = "/chat/completions"

    def auth_headers(self, api_key: str | None) -> dict[str, str]:
        return bearer(api_key)

    def wire_body(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("stream"):
            # Usage arrives in a last chunk only when asked for; some providers never send it
            # otherwise, and a run without usage cannot be costed.
            options = dict(body.get("stream_options") or {})
            options["include_usage"] = True
            return {**body, "stream_options": options}
        return body

    def parse_body(self, data: Any, *, reasoning: str) -> Answer:
        return parse_openai(data, reasoning=reasoning)

    def stream_parser(self, *, reasoning: str) -> StreamParser:
        return OpenAIStream(reasoning=reasoning)
