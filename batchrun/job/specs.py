"""The sections of a job file as frozen dataclasses; their defaults are the job file's defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from batchrun.parse import Usage

PER_MILLION = 1_000_000.0
# Larger answers are refused (ResponseTooLarge) rather than read whole: a hostile or broken
# endpoint must not be able to take the machine's memory.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class InputSpec:
    """[input]: where the rows are and which columns make the prompt.

    With `format = "auto"` neither `prompt` nor `messages` is required here: the source reader
    decides per file (an openai-batch file carries its bodies; a rows file then needs a column).
    """

    path: str
    id: str | None = None
    prompt: str | None = None
    messages: str | None = None
    images: str | None = None
    template: str | None = None
    system: str | None = None
    format: str = "auto"


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """[output]: the run directory and how often it is checkpointed."""

    path: str
    keep_columns: tuple[str, ...] = ()
    flush_rows: int = 1000
    flush_seconds: float = 30.0
    keep_raw: bool = False


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One [[provider]]: an endpoint, its key's variable name and its limits."""

    name: str
    api: str
    base_url: str
    api_key_env: str | None = None
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    input_tokens_per_minute: float | None = None
    output_tokens_per_minute: float | None = None
    max_concurrency: int = 64
    timeout_seconds: float = 300.0
    idle_timeout_seconds: float = 60.0
    max_response_bytes: int = MAX_RESPONSE_BYTES
    # Account refusals in a row (no quota, no balance, a revoked key) that stop this provider.
    stop_after_account_errors: int = 3
    headers: Mapping[str, str] = field(default_factory=dict)
    limits: str = "fixed"
    preset: str | None = None


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens; cached input is billed at `input` when `cached_input` is None.

    `batch` multiplies every price for rows answered through a provider's batch API.
    """

    input: float
    output: float
    cached_input: float | None = None
    batch: float = 0.5

    def cost(self, usage: Usage) -> float | None:
        """USD for one answer; None when the provider reported no usage.

        Cached tokens are part of prompt_tokens and billed at `cached_input` (or `input` when
        no cached price is given); reasoning tokens are inside completion_tokens already.
        """
        if usage.prompt_tokens is None or usage.completion_tokens is None:
            return None
        cached = usage.cached_tokens or 0
        cached_price = self.cached_input if self.cached_input is not None else self.input
        return (
            (usage.prompt_tokens - cached) * self.input
            + cached * cached_price
            + usage.completion_tokens * self.output
        ) / PER_MILLION

    def batch_cost(self, usage: Usage) -> float | None:
        """USD for one answer received in batch mode: the online cost times `batch`."""
        online = self.cost(usage)
        return None if online is None else online * self.batch

    def worst_case(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The most one request can cost: every prompt token uncached, all completion tokens."""
        return (prompt_tokens * self.input + completion_tokens * self.output) / PER_MILLION


@dataclass(frozen=True, slots=True)
class VariantSpec:
    """One [[variant]]: a model on a provider with its parameters; every row is sent to each."""

    name: str
    provider: str
    model: str
    stream: bool = False
    samples: int = 1
    params: Mapping[str, Any] = field(default_factory=dict)
    price: Price | None = None
    mode: str = "online"  # "batch": sent through the provider's batch API

    @property
    def batch(self) -> bool:
        """Whether this variant's rows go through the provider's batch API."""
        return self.mode == "batch"


@dataclass(frozen=True, slots=True)
class RetrySpec:
    """[retry]: attempts in all and the backoff between them."""

    max_attempts: int = 6
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    retry_after_max_s: float = 300.0


@dataclass(frozen=True, slots=True)
class ParseSpec:
    """[parse]: reasoning extraction and JSON answers."""

    reasoning: str = "auto"
    json: bool = False
    schema: Mapping[str, Any] | None = None
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """[budget]: stop sending before spending more than `max_usd`."""

    max_usd: float | None = None


@dataclass(frozen=True, slots=True)
class BatchSpec:
    """[batch]: how batch variants are split into provider batches, polled and finished."""

    poll_seconds: float = 30.0
    max_requests: int = 50_000
    max_bytes: int = 200_000_000
    window: str = "24h"
    # Lines a batch returns expired, cancelled or with a retryable error: "resubmit" them in a
    # new batch, send them "online", or record them as an "error".
    unfinished: str = "resubmit"
