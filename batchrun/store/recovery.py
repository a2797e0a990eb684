"""What a killed run left behind: journals turned into parts, half-done writes and merges undone."""

from __future__ import annotations

from pathlib import Path

from batchrun.store import layout
from batchrun.store.compaction import drop_covered
from batchrun.store.journal import read_journal_lines
from batchrun.store.parts import lines_to_table, write_atomically


def recover(root: Path) -> int:
    """Checkpoint journal segments a previous run left behind; returns the next free number."""
    drop_covered(root)  # a compaction that was killed before it deleted what it had merged
    parts = {layout.parse_seq(p) for p in layout.list_parts(root)}
    for tmp in (root / layout.PARTS_DIR).glob("*.tmp"):
        tmp.unlink()  # a part whose write was cut short; its journal is still there
    highest = max(parts, default=0)
    for journal in layout.list_journals(root):
        seq = layout.parse_seq(journal)
        highest = max(highest, seq)
        if seq not in parts:
            lines = read_journal_lines(journal)
            if lines:
                write_atomically(lines_to_table(lines), layout.part_path(root, seq))
        journal.unlink()
    return highest + 1
