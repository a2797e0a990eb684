"""A job changed and changed back (template A -> B -> A) re-uses the answers already on disk."""

from __future__ import annotations

from pathlib import Path

import batchrun
from batchrun.mock import MockThread, expected_content
from tests.conftest import write_job, write_rows

ROWS = [{"id": f"r{i}", "text": f"review {i}"} for i in range(12)]


def sent(mock: MockThread) -> int:
    return int(mock.stats_snapshot()["requests"])


def contents(folder: Path) -> dict[str, str]:
    frame = batchrun.read(folder / "out")
    return dict(zip(frame["id"], frame["content"], strict=True))


def test_changing_a_template_back_sends_nothing_and_shows_the_old_answers(
    tmp_path: Path, mock: MockThread
) -> None:
    write_rows(tmp_path / "rows.jsonl", ROWS)
    a, b = "Label A: {text}", "Label B: {text}"
    job = write_job(tmp_path, base_url=mock.base_url, input={"template": a})
    assert batchrun.run(job).ok == 12
    first = contents(tmp_path)
    assert sent(mock) == 12
    write_job(tmp_path, base_url=mock.base_url, input={"template": b})
    assert batchrun.run(job).ok == 12
    assert sent(mock) == 24
    assert contents(tmp_path) != first
    write_job(tmp_path, base_url=mock.base_url, input={"template": a})
    summary = batchrun.run(job)
    assert (summary.ok, summary.error, summary.skipped) == (12, 0, 12)
    assert sent(mock) == 24  # nothing paid for twice
    assert contents(tmp_path) == first
    body = {"model": "mock-1", "messages": [{"role": "user", "content": "Label A: review 3"}]}
    assert first["r3"] == expected_content(body)
    # And a rerun after that changes nothing more.
    assert batchrun.run(job).skipped == 12
    assert sent(mock) == 24
    assert len(batchrun.read(tmp_path / "out")) == 12
