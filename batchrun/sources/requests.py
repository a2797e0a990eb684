"""Input row x variant x sample -> one canonical request body and the hash that identifies it."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from batchrun.sources.image_parts import Seen, resolve
from batchrun.sources.images import image_tokens
from batchrun.sources.tokens import estimate_messages_tokens

if TYPE_CHECKING:
    from batchrun.job import Price, VariantSpec
    from batchrun.sources.rows import InputRow

# Completion tokens assumed for a request that sets no max_tokens: what the tokens/min limiter
# reserves and the budget counts as its worst case until the real usage arrives. (`estimate`
# shows such requests as unbounded instead: it bounds the cost, it does not pace.)
DEFAULT_COMPLETION_RESERVATION = 1024


@dataclass(frozen=True, slots=True)
class Request:
    """One call to make: which row, variant and sample, and the exact body to send."""

    row_id: str
    variant: str
    provider: str
    model: str
    sample: int
    body: dict[str, Any]
    hash: str
    prompt_tokens_est: int
    max_tokens: int | None
    keep: dict[str, Any]
    price: Price | None

    @property
    def completion_reservation(self) -> int:
        """Completion tokens to reserve: max_tokens, or the default when it is unset."""
        return self.max_tokens or DEFAULT_COMPLETION_RESERVATION

    @property
    def worst_cost(self) -> float:
        """The most this request can cost, for the budget (0 when unpriced)."""
        if self.price is None:
            return 0.0
        return self.price.worst_case(self.prompt_tokens_est, self.completion_reservation)


def request_hash(provider: str, variant: str, sample: int, body: dict[str, Any]) -> str:
    """Hash of the canonical body together with provider, variant and sample index."""
    canonical = orjson.dumps([provider, variant, sample, body], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def build_body(
    row: InputRow, variant: VariantSpec, sample: int, messages: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The OpenAI-shaped body for one sample; wire formats translate it when they send.

    `messages` are the row's messages as they are sent (image files read), when already built.
    """
    params = variant.params
    if row.body is not None:
        # OpenAI Batch API input: the file's body is the request; the variant names the model
        # (so one batch file can be swept over models) and fills params the body leaves out.
        body = {**params, **row.body, "model": variant.model}
    else:
        sent = row.messages if messages is None else messages
        body = {"model": variant.model, "messages": sent, **params}
    if sample and "seed" in body and isinstance(body["seed"], int):
        # Sample k gets seed + k: distinct samples, yet the whole sweep can be repeated.
        body["seed"] = body["seed"] + sample
    if variant.stream:
        body["stream"] = True
    else:
        body.pop("stream", None)
    return body


def requests_for_row(
    row: InputRow, variants: Sequence[VariantSpec], families: Mapping[str, str]
) -> Iterator[Request]:
    """Every (variant, sample) request for one input row.

    `families` maps each provider's name to its `api`, which decides what an image costs.
    """
    # Every variant and sample sends the row's messages: read its images and estimate its text
    # once; only the image tokens differ between provider families.
    given = row.messages if row.body is None else row.body.get("messages")
    messages: list[dict[str, Any]] | None = None
    images: list[Seen] = []
    if type(given) is list:
        messages, images = resolve(given, row.folder, row.where)
    text_tokens = estimate_messages_tokens(messages or ())
    per_family: dict[str, int] = {}
    for variant in variants:
        family = families[variant.provider]
        if family not in per_family:
            per_family[family] = text_tokens + _image_tokens(images, family)
        prompt_tokens_est = per_family[family]
        for sample in range(variant.samples):
            body = build_body(row, variant, sample, messages if row.body is None else None)
            max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
            yield Request(
                row_id=row.id,
                variant=variant.name,
                provider=variant.provider,
                model=variant.model,
                sample=sample,
                body=body,
                hash=request_hash(variant.provider, variant.name, sample, body),
                prompt_tokens_est=prompt_tokens_est,
                max_tokens=max_tokens if isinstance(max_tokens, int) else None,
                keep=row.keep,
                price=variant.price,
            )


def _image_tokens(images: Sequence[Seen], family: str) -> int:
    return sum(image_tokens(info, family, detail) for info, detail in images)
