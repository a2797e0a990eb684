"""Which rows a shard owns: by a hash of the row's id, never by its position in the input.

Hashing the id splits one big file as evenly as many small ones, and a reordered or reshuffled
input leaves every row in the shard it was in, so a rerun never sends a row another shard has
already answered. The hash is the one the duplicate-id check computes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from batchrun.errors import UsageError

_SPELLING = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def id_hash(row_id: str) -> int:
    """A stable 64-bit hash of a row id (the same in every process and on every machine)."""
    digest = hashlib.blake2b(row_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard `index` of `count`: the rows whose id hashes to `index` modulo `count`."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise UsageError(
                f"shard {self.index}/{self.count}: want I/N with N >= 1 and I in 0..N-1"
            )

    @classmethod
    def parse(cls, text: str, source: str = "--shard") -> Shard:
        """`"I/N"` as the command line and BATCHRUN_SHARD spell it."""
        match = _SPELLING.match(text)
        if match is None:
            raise UsageError(f"{source} {text!r}: want I/N, e.g. 0/4 (I in 0..N-1)")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        """The shard's folder name and `shard` column value, e.g. `1-of-4`."""
        return f"{self.index}-of-{self.count}"

    def owns(self, row_id: str) -> bool:
        """Whether the row with this id belongs to this shard."""
        return self.count == 1 or id_hash(row_id) % self.count == self.index
