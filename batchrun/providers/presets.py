"""Known providers: `preset = "name"` in a job's [[provider]] fills its `api` and `base_url`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

KNOWN_APIS: tuple[str, ...] = ("openai", "anthropic", "responses")


@dataclass(frozen=True, slots=True)
class Preset:
    """A known provider: its wire format, base URL and what its API insists on."""

    name: str
    api: str
    # None when the provider's documentation gives no host: the job must set base_url itself.
    base_url: str | None
    requires_max_tokens: bool = False
    description: str = ""


PRESETS: Mapping[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset("openai", "openai", "https://api.openai.com/v1", description="OpenAI"),
        Preset(
            "openai-responses",
            "responses",
            "https://api.openai.com/v1",
            description="OpenAI's Responses API (reasoning summaries, newer models)",
        ),
        Preset(
            "anthropic",
            "anthropic",
            "https://api.anthropic.com/v1",
            requires_max_tokens=True,
            description="Anthropic Messages API",
        ),
        Preset(
            "liandanxia",
            "openai",
            "https://api.liandanxia.com/v1",
            description="炼丹侠, OpenAI format; SGLang models with <think> in content",
        ),
        Preset(
            "liandanxia-anthropic",
            "anthropic",
            "https://api.liandanxia.com/v1",
            requires_max_tokens=True,
            description="炼丹侠, Anthropic format",
        ),
        Preset(
            "jiekou",
            "openai",
            "https://api.jiekou.ai/openai/v1",
            requires_max_tokens=True,
            description="接口AI, OpenAI format; max_tokens is a required field",
        ),
        Preset(
            "relay",
            "openai",
            None,
            description="an OpenAI-format relay; set base_url to the host your account uses",
        ),
        Preset("deepseek", "openai", "https://api.deepseek.com/v1", description="DeepSeek"),
        Preset("openrouter", "openai", "https://openrouter.ai/api/v1", description="OpenRouter"),
        Preset("mock", "openai", "mock", description="the built-in loopback mock provider"),
    )
}


def requires_max_tokens(api: str, preset: str | None = None) -> bool:
    """Whether requests to this provider must carry `max_tokens` (Anthropic's API always does)."""
    known = PRESETS.get(preset) if preset is not None else None
    return api == "anthropic" or (known is not None and known.requires_max_tokens)


__all__ = ["KNOWN_APIS", "PRESETS", "Preset", "requires_max_tokens"]
