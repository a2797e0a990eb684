"""Batch mode under every failure the mock injects, each row's final state checked.

Runs are in-process (`batchrun.run`) against a real mock on loopback with batches of a fraction
of a second: expired lines, per-line 500s, 429s and 400s, shuffled result files, a batch that
completes without its output file, a batch that fails validation, an upload the Files API does
not show at once. Cost is checked to the micro-dollar.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import batchrun
from batchrun import cli
from batchrun.engine.runner import _check_windows
from batchrun.job import Job
from batchrun.mock import MockConfig, MockThread, expected_content
from batchrun.store.batches import read_batches
from tests.conftest import write_rows
from tests.test_batch_jobs import PRICE, batch_body, batch_job

ROWS = 30


def run_batches(
    tmp_path: Path, config: dict[str, Any], *, rows: int = ROWS, **job: Any
) -> tuple[batchrun.RunSummary, Any, MockThread]:
    """One run to its end; its summary, its results and the (stopped) mock."""
    with MockThread(MockConfig(**{"batch_seconds": 0.15, **config})) as server:
        path = batch_job(tmp_path, server.base_url, rows=rows, **job)
        summary = batchrun.run(path)
    return summary, batchrun.read(tmp_path / "out"), server


def own_answers(frame: Any, model: str = "mock-1") -> bool:
    """Whether every ok row holds the answer to its own request."""
    ok = frame[frame["status"] == "ok"]
    return all(row.content == expected_content(batch_body(int(row.id[1:]), model))
               for row in ok.itertuples())


def test_expired_lines_are_resubmitted_and_the_answered_ones_kept(tmp_path: Path) -> None:
    """The mock expires the last lines of every batch, so one line expires for ever."""
    summary, frame, server = run_batches(tmp_path, {"batch_expire_share": 0.3},
                                         retry={"max_attempts": 4})
    ok, errors = frame[frame["status"] == "ok"], frame[frame["status"] == "error"]
    assert len(frame) == ROWS and own_answers(frame)
    assert server.stats.batches_ended.get("expired", 0) >= 4
    assert (ok["attempts"] > 1).any()  # expired ones answered in a later batch
    assert set(errors["error_type"]) == {"BatchExpired"} and set(errors["attempts"]) == {4}
    assert errors["error_message"].str.contains("after 4 batches").all()
    assert summary.exit_code == 1 and summary.error == len(errors)
    # Every answered line was kept: none had to be bought again.
    assert server.stats.billed_twice() == 0 and server.stats.batch_lines_billed == len(ok)


@pytest.mark.parametrize("share", ["batch_500_share", "batch_429_share"])
def test_lines_that_come_back_with_a_retryable_error_are_resubmitted(
    tmp_path: Path, share: str
) -> None:
    summary, frame, server = run_batches(tmp_path, {share: 0.3}, retry={"max_attempts": 10})
    assert summary.exit_code == 0 and set(frame["status"]) == {"ok"} and own_answers(frame)
    assert (frame["attempts"] > 1).any() and server.stats.batches_created > 1
    assert server.stats.billed_twice() == 0 and server.stats.batch_lines_billed == ROWS


def test_expired_lines_become_errors_with_unfinished_error(tmp_path: Path) -> None:
    summary, frame, server = run_batches(tmp_path, {"batch_expire_share": 0.2},
                                         batch={"unfinished": "error"})
    errors = frame[frame["status"] == "error"]
    assert len(frame) == ROWS and summary.exit_code == 1
    assert len(errors) == ROWS - server.stats.batch_lines_billed > 0
    assert set(errors["error_type"]) == {"BatchExpired"}
    assert errors["error_message"].str.contains("expired before this request").all()
    assert server.stats.batches_created == 1 and own_answers(frame)


def test_expired_lines_go_online_with_unfinished_online(tmp_path: Path) -> None:
    summary, frame, server = run_batches(tmp_path, {"batch_expire_share": 0.2},
                                         batch={"unfinished": "online"})
    assert summary.exit_code == 0 and set(frame["status"]) == {"ok"} and own_answers(frame)
    online = frame[frame["mode"] == "online"]
    assert len(online) == ROWS - server.stats.batch_lines_billed > 0
    assert online["batch_id"].isna().all() and server.stats.ok == len(online)
    assert server.stats.batches_created == 1


def test_retryable_line_errors_are_resubmitted_and_final_ones_recorded_at_once(
    tmp_path: Path,
) -> None:
    rows = [{"id": f"r{i}", "text": f"item {i}"} for i in range(ROWS)]
    rows[3]["text"] += " [[mock:fail=400]]"  # refused for ever: an error at once
    rows[4]["text"] += " [[mock:fail=500x1]]"  # fails once: fine in the second batch
    write_rows(tmp_path / "rows.jsonl", rows)
    summary, frame, server = run_batches(tmp_path, {}, rows=0)
    by_id = frame.set_index("id")
    assert summary.exit_code == 1 and len(frame) == ROWS
    assert by_id.loc["r3", "status"] == "error" and by_id.loc["r3", "error_type"] == "BadRequest"
    assert by_id.loc["r3", "attempts"] == 1
    assert by_id.loc["r4", "status"] == "ok" and by_id.loc["r4", "attempts"] == 2
    assert (frame["status"] == "ok").sum() == ROWS - 1
    assert server.stats.billed_twice() == 0


def test_a_batch_completed_without_its_output_file_is_an_error_never_a_success(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    summary, frame, _ = run_batches(tmp_path, {"batch_no_output_file": True},
                                    batch={"unfinished": "error"})
    assert summary.exit_code == 1 and len(frame) == ROWS
    assert set(frame["status"]) == {"error"} and set(frame["error_type"]) == {"BatchFailed"}
    assert frame["error_message"].str.contains("no output file").all()
    _, states = read_batches(tmp_path / "out")
    assert [s.status for s in states.values()] == ["completed"]


def test_a_batch_that_fails_validation_is_reported_and_its_rows_resubmitted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    summary, frame, _ = run_batches(tmp_path, {"batch_validation_failures": 1})
    assert summary.exit_code == 0 and set(frame["status"]) == {"ok"}
    assert own_answers(frame) and set(frame["attempts"]) == {2}
    _, states = read_batches(tmp_path / "out")
    assert [s.status for s in states.values()] == ["failed", "completed"]
    assert "token_limit_exceeded" in caplog.text


def test_a_create_refused_with_a_400_records_its_rows_as_errors_not_sent_again(
    tmp_path: Path,
) -> None:
    """The same batch would be refused again: one create, the provider's message on each row."""
    variant = {"name": "b", "model": "claude-mock", "mode": "batch", "params": {"max_tokens": 32}}
    summary, frame, server = run_batches(tmp_path, {"batch_validation_failures": 1},
                                         api="anthropic", variants=[variant],
                                         retry={"max_attempts": 6})
    assert summary.exit_code == 1 and len(frame) == ROWS and set(frame["status"]) == {"error"}
    assert set(frame["error_type"]) == {"BadRequest"} and set(frame["attempts"]) == {1}
    assert frame["error_message"].str.contains("failed validation").all()
    assert server.stats.batch_calls.get("messages.batches.create") == 1
    _, states = read_batches(tmp_path / "out")
    assert [(s.state, s.status) for s in states.values()] == [("committed", "refused")]


def test_a_window_the_openai_batch_api_does_not_take_exits_2_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing may be sent: the check comes before any connection to api.openai.com.
    path = batch_job(tmp_path, "https://api.openai.com/v1", rows=2, batch={"window": "48h"})
    assert cli.main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "job.toml: [batch]: \"window\" = \"48h\"" in err and 'window = "24h"' in err
    assert not (tmp_path / "out" / "batches").exists()
    # A compatible provider may take longer windows (Groq: up to 7 days): not refused here.
    groq = Job.from_toml(batch_job(tmp_path, "https://api.groq.com/openai/v1",
                                   batch={"window": "7d"}))
    _check_windows(groq)


def test_shuffled_results_and_a_lagging_file_store_change_nothing(tmp_path: Path) -> None:
    summary, frame, _ = run_batches(
        tmp_path, {"batch_shuffle_results": True, "file_visible_after_ms": 150},
        batch={"max_requests": 8})
    assert summary.exit_code == 0 and len(frame) == ROWS and own_answers(frame)
    _, states = read_batches(tmp_path / "out")
    assert len(states) == 4


def test_cost_is_usage_times_price_times_the_batch_factor(tmp_path: Path) -> None:
    price = {**PRICE, "cached_input": 1.0, "batch": 0.4}
    variants = [{"name": "b", "model": "mock-1", "mode": "batch", "params": {"max_tokens": 32},
                 "price": price}]
    summary, frame, _ = run_batches(tmp_path, {}, variants=variants)
    expected = ((frame["prompt_tokens"] - frame["cached_tokens"].fillna(0)) * price["input"]
                + frame["cached_tokens"].fillna(0) * price["cached_input"]
                + frame["completion_tokens"] * price["output"]) / 1e6 * price["batch"]
    assert (frame["cost_usd"] - expected).abs().max() < 1e-12
    report = batchrun.results.build_report(tmp_path / "out")
    assert abs(report["cost_usd"]["total"] - expected.sum()) < 1e-6
    assert summary.cost_usd is not None and abs(summary.cost_usd - expected.sum()) < 1e-6


def test_a_mixed_job_runs_its_online_and_its_batch_variant_side_by_side(tmp_path: Path) -> None:
    variants = [{"name": "b", "model": "mock-1", "mode": "batch", "params": {"max_tokens": 32},
                 "price": PRICE},
                {"name": "o", "model": "mock-1", "params": {"max_tokens": 32}, "price": PRICE}]
    summary, frame, server = run_batches(tmp_path, {}, variants=variants)
    assert summary.exit_code == 0 and len(frame) == 2 * ROWS and summary.ok == 2 * ROWS
    assert own_answers(frame)
    modes = frame.groupby("variant")["mode"].agg(set).to_dict()
    assert modes == {"b": {"batch"}, "o": {"online"}}
    assert server.stats.ok == ROWS and server.stats.batch_lines_billed == ROWS
    online, batch = (frame[frame["variant"] == v].set_index("id") for v in ("o", "b"))
    ratio = batch["cost_usd"] / online["cost_usd"]
    assert (ratio - 0.5).abs().max() < 1e-9  # same answers, half the price


def test_anthropic_custom_ids_fit_whatever_the_row_ids_and_responses_batches_work(
    tmp_path: Path,
) -> None:
    ids = ["a b/c", "ünïcode", "x" * 200, "dots.and:colons"]
    write_rows(tmp_path / "rows.jsonl", [{"id": i, "text": f"item {n}"}
                                          for n, i in enumerate(ids)])
    with MockThread(MockConfig(batch_seconds=0.1)) as server:
        for api, model in (("anthropic", "claude-mock"), ("responses", "mock-1")):
            folder = tmp_path / api
            folder.mkdir()
            (folder / "rows.jsonl").write_text((tmp_path / "rows.jsonl").read_text())
            variant = {"name": "b", "model": model, "mode": "batch", "params": {"max_tokens": 32}}
            summary = batchrun.run(batch_job(folder, server.base_url, api=api,
                                             variants=[variant]))
            frame = batchrun.read(folder / "out").set_index("id")
            assert summary.exit_code == 0 and sorted(frame.index) == sorted(ids), api
            for n, row_id in enumerate(ids):
                assert frame.loc[row_id, "content"] == expected_content(batch_body(n, model))
    assert json.dumps(server.stats.batches_ended) == '{"ended": 1, "completed": 1}'


def test_the_budget_counts_each_batch_at_its_worst_case_and_stops_before_submitting(
    tmp_path: Path,
) -> None:
    with MockThread(MockConfig(batch_seconds=0.1)) as server:
        path = batch_job(tmp_path, server.base_url, rows=ROWS, batch={"max_requests": 10},
                         budget={"max_usd": 0.002})
        summary = batchrun.run(path)
        _, states = read_batches(tmp_path / "out")
        worst = [s.worst_usd for s in states.values()]
        assert worst[0] <= 0.002 < worst[0] + worst[1]  # one batch fits, two do not
        assert summary.exit_code == 3 and summary.ok == 10 and summary.pending == ROWS - 10
        assert [s.state for s in states.values()] == ["committed", "planned", "planned"]
        assert server.stats.batches_created == 1
        path.write_text(path.read_text().replace("max_usd = 0.002", "max_usd = 1.0"))
        assert batchrun.run(path).exit_code == 0
        assert server.stats.batches_created == 3
    assert len(batchrun.read(tmp_path / "out")) == ROWS


def test_a_refused_account_submits_nothing_leaves_the_rows_pending_and_exits_5(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATCH_TEST_KEY", "sk-not-the-right-one-0123456789")
    with MockThread(MockConfig(batch_seconds=0.1, api_key="sk-the-right-one")) as server:
        path = batch_job(tmp_path, server.base_url, rows=ROWS,
                         provider={"api_key_env": "BATCH_TEST_KEY"})
        summary = batchrun.run(path)
        assert summary.exit_code == 5 and summary.pending == ROWS
        assert server.stats.batches_created == 0
        assert "AuthenticationFailed" in {stop.error_type for stop in summary.refused}
        assert "sk-not-the-right-one" not in " ".join(s.message for s in summary.refused)
        monkeypatch.setenv("BATCH_TEST_KEY", "sk-the-right-one")
        assert batchrun.run(path).exit_code == 0
    assert len(batchrun.read(tmp_path / "out")) == ROWS


def test_batches_of_a_provider_the_job_no_longer_has_are_left_alone_not_waited_for(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with MockThread(MockConfig(batch_seconds=5.0)) as server:
        path = batch_job(tmp_path, server.base_url, rows=ROWS)
        assert batchrun.run(path, detach=True).exit_code == 0
        text = path.read_text().replace('name = "mock"', 'name = "renamed"')
        path.write_text(text.replace('provider = "mock"', 'provider = "renamed"'))
        with MockThread(MockConfig(batch_seconds=0.1)) as other:
            path.write_text(path.read_text().replace(server.base_url, other.base_url))
            summary = batchrun.run(path)
    assert summary.exit_code == 0 and "which the job no longer has" in caplog.text
    assert len(batchrun.read(tmp_path / "out")) == ROWS
    _, states = read_batches(tmp_path / "out")
    assert [s.state for s in states.values()] == ["created", "committed"]


def test_a_batch_answer_that_fails_parse_json_is_an_error_that_keeps_its_text_and_cost(
    tmp_path: Path,
) -> None:
    summary, frame, server = run_batches(tmp_path, {}, parse={"json": True})
    assert summary.exit_code == 1 and len(frame) == ROWS
    assert set(frame["error_type"]) == {"invalid_json"} and set(frame["attempts"]) == {1}
    assert frame["content"].notna().all() and frame["cost_usd"].notna().all()
    assert server.stats.batches_created == 1  # not bought again


def test_samples_of_a_batch_variant_are_requests_of_their_own(tmp_path: Path) -> None:
    variant = {"name": "b", "model": "claude-mock", "mode": "batch", "samples": 3,
               "params": {"max_tokens": 32, "seed": 1}}
    summary, frame, server = run_batches(tmp_path, {}, rows=10, api="anthropic",
                                         variants=[variant])
    assert summary.exit_code == 0 and len(frame) == 30
    assert sorted(frame.groupby("id")["sample"].agg(sorted).iloc[0]) == [0, 1, 2]
    assert frame["request_hash"].nunique() == 30 and server.stats.batch_lines_billed == 30


def test_fresh_forgets_the_earlier_batches_and_says_they_may_still_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with MockThread(MockConfig(batch_seconds=5.0)) as server:
        path = batch_job(tmp_path, server.base_url, rows=ROWS)
        assert batchrun.run(path, detach=True).exit_code == 0
        first, _ = read_batches(tmp_path / "out")
        assert batchrun.run(path, detach=True, fresh=True).exit_code == 0
        second, states = read_batches(tmp_path / "out")
        assert server.stats.batches_created == 2
    assert "--fresh: 1 batch of the earlier run may still be running" in caplog.text
    assert first != second and len(states) == 1
