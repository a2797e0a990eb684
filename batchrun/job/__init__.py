"""The job file -> a frozen, validated `Job`; every mistake named by file, table and key."""

from batchrun.job.load import Job
from batchrun.job.specs import (
    BudgetSpec,
    InputSpec,
    OutputSpec,
    ParseSpec,
    Price,
    ProviderSpec,
    RetrySpec,
    VariantSpec,
)

__all__ = [
    "BudgetSpec",
    "InputSpec",
    "Job",
    "OutputSpec",
    "ParseSpec",
    "Price",
    "ProviderSpec",
    "RetrySpec",
    "VariantSpec",
]
