"""The batch state journal: each line durable on its own, a torn one skipped wherever it sits."""

from __future__ import annotations

from pathlib import Path

from batchrun.store.batches import BatchJournal, batches_folder, read_batches


def test_a_line_torn_by_a_crash_is_skipped_and_the_next_run_appends_after_it(
    tmp_path: Path,
) -> None:
    journal = BatchJournal(tmp_path)
    run_id = journal.run_id
    journal.append("br-x-00001", "planned", variant="v", provider="p", requests=3)
    journal.append("br-x-00001", "create")
    journal.close()
    path = batches_folder(tmp_path) / "journal.jsonl"
    with path.open("ab") as file:
        file.write(b'{"at": 1, "key": "br-x-00001", "event": "crea')  # cut by a crash

    again = BatchJournal(tmp_path)  # the run after the crash
    assert again.run_id == run_id and again.states["br-x-00001"].state == "create"
    again.append("br-x-00001", "created", batch_id="batch_1")
    again.close()
    _, states = read_batches(tmp_path)
    state = states["br-x-00001"]
    assert (state.state, state.batch_id, state.requests) == ("created", "batch_1", 3)
    assert state.live and state.open_remote


def test_the_journal_folds_each_batch_into_its_state(tmp_path: Path) -> None:
    journal = BatchJournal(tmp_path)
    key = "br-x-00001"
    journal.append(key, "planned", variant="v", provider="p", requests=2, worst_usd=0.5)
    journal.append(key, "created", batch_id="b1", status="validating")
    journal.append(key, "ended", status="expired", done=1, total=2)
    journal.append(key, "committed", ok=1, error=0, resubmit=["c2"], online=[])
    journal.close()
    _, states = read_batches(tmp_path)
    state = states[key]
    assert not state.live and state.resubmit == ["c2"] and state.status == "expired"
    assert state.to_dict()["resubmitted"] == 1 and state.ended_at is not None
