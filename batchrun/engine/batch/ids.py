"""Names that tie a provider's batches and lines back to this run: batch keys and custom_ids.

A custom_id is the run's id and a hash of (row id, request hash): the same request keeps it in
every batch it is resubmitted in, it fits Anthropic's `[A-Za-z0-9_-]{1,64}` whatever the row
ids look like, and the run's id in front of it tells this run's batches from anyone else's.
"""

from __future__ import annotations

import hashlib

TAG_HEX = 24  # 96 bits of the hash: no two requests of a run share one


def custom_id(run_id: str, row_id: str, request_hash: str) -> str:
    """The custom_id of one request in every batch of run `run_id`."""
    digest = hashlib.sha256(f"{row_id}\0{request_hash}".encode()).hexdigest()
    return f"{run_id}-{digest[:TAG_HEX]}"


def batch_key(run_id: str, seq: int) -> str:
    """batchrun's own name of the run's `seq`-th batch (metadata, file names, the journal)."""
    return f"br-{run_id}-{seq:05d}"


def seq_of(key: str) -> int | None:
    """The `seq` of a batch key (or of a batch file's name), None when it has none."""
    tail = key.split(".", 1)[0].rsplit("-", 1)[-1]
    return int(tail) if key.startswith("br-") and tail.isdigit() else None
