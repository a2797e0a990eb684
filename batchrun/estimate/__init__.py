"""Before spending: tokens, cost and time of a job, offline or extrapolated from a sample."""

from batchrun.estimate.command import estimate_command
from batchrun.estimate.extrapolate import Extrapolated, Interval, t95
from batchrun.estimate.format import format_estimate, format_sampled
from batchrun.estimate.model import (
    PROMPT_BAND,
    TOKENIZER,
    Estimate,
    ProviderTime,
    SampledEstimate,
    VariantEstimate,
)
from batchrun.estimate.offline import SAMPLE_SEED, estimate_offline
from batchrun.estimate.sampled import aestimate_sampled, estimate_sampled

__all__ = [
    "PROMPT_BAND",
    "SAMPLE_SEED",
    "TOKENIZER",
    "Estimate",
    "Extrapolated",
    "Interval",
    "ProviderTime",
    "SampledEstimate",
    "VariantEstimate",
    "aestimate_sampled",
    "estimate_command",
    "estimate_offline",
    "estimate_sampled",
    "format_estimate",
    "format_sampled",
    "t95",
]
