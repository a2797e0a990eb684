"""The registry of wire formats; the built-in ones come in through the same door as any other."""

from __future__ import annotations

from batchrun.providers.base import StreamParser, WireFormat

_FORMATS: dict[str, WireFormat] = {}


def register(wire_format: WireFormat) -> None:
    """Make a wire format available to jobs as `api = "<name>"`."""
    _FORMATS[wire_format.name] = wire_format


def get_format(name: str) -> WireFormat:
    """The wire format registered under `name`."""
    _register_builtins()
    try:
        return _FORMATS[name]
    except KeyError:
        known = ", ".join(sorted(_FORMATS))
        raise KeyError(f"unknown api {name!r}; known: {known}") from None


def format_names() -> tuple[str, ...]:
    """Names of every registered wire format."""
    _register_builtins()
    return tuple(sorted(_FORMATS))


def _register_builtins() -> None:
    if "openai" in _FORMATS:
        return
    # Imported here so that `batchrun.providers` stays importable by the job loader cheaply.
    from batchrun.providers.anthropic import AnthropicFormat
    from batchrun.providers.openai import OpenAIFormat
    from batchrun.providers.responses import ResponsesFormat

    register(OpenAIFormat())
    register(AnthropicFormat())
    register(ResponsesFormat())


__all__ = ["StreamParser", "WireFormat", "format_names", "get_format", "register"]
