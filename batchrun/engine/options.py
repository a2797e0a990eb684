"""What a run is asked to do beyond its job: the command line's and the Python API's choices."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Command-line choices that are not part of the job."""

    limit: int | None = None
    fresh: bool = False
    retry_errors: bool = False
    progress: bool = True
    handle_signals: bool = False
    # Only these input ids (estimate --sample); None: every row.
    only_ids: frozenset[str] | None = None
    # Called once the output directory is this run's and before anything is sent, so that
    # "sending for real" is never said by a run that is then refused (estimate --sample).
    on_start: Callable[[], None] | None = None
