"""What an estimate says: plain frozen records, shared by the estimators and the tables."""

from __future__ import annotations

from dataclasses import dataclass

from batchrun.estimate.extrapolate import Extrapolated

PROMPT_BAND = 0.25
TOKENIZER = "heuristic: ~4 ASCII characters a token, CJK and other text 1 a character, +4 a message"


@dataclass(frozen=True, slots=True)
class VariantEstimate:
    """Offline figures of one variant over every row and sample; costs None when unpriced."""

    name: str
    provider: str
    model: str
    requests: int
    settled: int  # already in the output (ok or error): a run skips them
    prompt_tokens: int  # heuristic estimate
    completion_max: int | None  # sum of max_tokens; None: some request has none (unbounded)
    cost_min: float | None
    cost_max: float | None  # None also when the completion is unbounded
    mode: str = "online"
    # Batch variants: the same requests at the online price, beside their batch cost above.
    online_cost_min: float | None = None
    online_cost_max: float | None = None


@dataclass(frozen=True, slots=True)
class ProviderTime:
    """How long one provider's requests take at its configured ceilings."""

    name: str
    variants: tuple[str, ...]
    ceilings: tuple[tuple[str, float], ...]  # ("req/min", 600.0), ...; empty: unlimited
    seconds_min: float | None  # None: unlimited
    seconds_max: float | None  # None: unlimited, or unbounded completion under a token ceiling


@dataclass(frozen=True, slots=True)
class Estimate:
    """The offline estimate of a whole job; cost totals cover the priced variants only."""

    name: str
    rows: int
    variants: tuple[VariantEstimate, ...]
    providers: tuple[ProviderTime, ...]
    unpriced: tuple[str, ...]
    requests: int
    prompt_tokens: int
    completion_max: int | None
    cost_min: float | None  # None: no variant is priced
    cost_max: float | None  # None: none priced, or a priced one is unbounded
    tokenizer: str = TOKENIZER
    prompt_band: float = PROMPT_BAND


@dataclass(frozen=True, slots=True)
class SampledEstimate:
    """The offline estimate, and the extrapolation from the rows run for real."""

    offline: Estimate
    ids: tuple[str, ...]
    variants: tuple[Extrapolated, ...]
    total: Extrapolated
    sample_cost_usd: float | None  # what the sampled requests cost (paid once, kept)
    exit_code: int  # of the sampled run, as `batchrun run` would exit
