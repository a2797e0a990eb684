"""Batch mode in the job file: `mode`, `price.batch`, `[batch]`, and the errors for bad values.

`batch_job` and `batch_body` are the helpers the other batch tests share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from batchrun import cli
from batchrun.errors import JobError
from batchrun.job import Job
from tests.conftest import toml_value, write_job, write_rows

PRICE = {"input": 2.0, "output": 8.0}


def batch_job(
    folder: Path, base_url: str, *, rows: int = 0, api: str = "openai",
    batch: dict[str, Any] | None = None, variants: list[dict[str, Any]] | None = None,
    **sections: Any,
) -> Path:
    """A job with one batch variant (unless told) and quick polls, over `rows` input rows."""
    if rows:
        write_rows(folder / "rows.jsonl", [{"id": f"r{i}", "text": f"item {i}"}
                                           for i in range(rows)])
    variants = variants or [{"name": "b", "model": "mock-1", "mode": "batch",
                             "params": {"max_tokens": 32}, "price": PRICE}]
    path = write_job(folder, base_url=base_url, provider={"api": api, **sections.pop(
        "provider", {})}, variants=variants, **sections)
    settings = {"poll_seconds": 0.05, **(batch or {})}
    lines = ["\n[batch]", *(f"{k} = {toml_value(v)}" for k, v in settings.items())]
    path.write_text(path.read_text() + "\n".join(lines) + "\n")
    return path


def batch_body(row: int, model: str = "mock-1") -> dict[str, Any]:
    """The canonical body of row `row` of `batch_job`'s input."""
    return {"model": model, "messages": [{"role": "user", "content": f"item {row}"}],
            "max_tokens": 32}


def test_batch_mode_and_its_section_load_with_the_spec_defaults(tmp_path: Path) -> None:
    job = Job.from_toml(batch_job(tmp_path, "http://127.0.0.1:1/v1", batch={}))
    (variant,) = job.variants
    assert variant.mode == "batch" and variant.batch
    assert variant.price is not None and variant.price.batch == 0.5
    assert (job.batch.max_requests, job.batch.max_bytes, job.batch.window,
            job.batch.unfinished) == (50_000, 200_000_000, "24h", "resubmit")
    assert job.batch.poll_seconds == 0.05
    again = Job.from_dict(job.to_dict(), base_dir=tmp_path)
    assert again.batch == job.batch and again.variants == job.variants


@pytest.mark.parametrize(("change", "message"), [
    ({"variant": {"stream": True}}, 'mode = "batch" answers are never streamed'),
    ({"variant": {"mode": "batched"}}, '"mode" must be one of "online", "batch"'),
    ({"variant": {"price": {**PRICE, "batch": -1}}}, '"price.batch" must be'),
    ({"batch": {"unfinished": "retry"}}, '"unfinished" must be one of "resubmit", "online"'),
    ({"batch": {"window": "tomorrow"}}, '"window" must be a completion window'),
    ({"batch": {"max_requests": 0}}, '"max_requests" must be an integer >= 1'),
    ({"batch": {"poll_secs": 1}}, 'unknown key "poll_secs" — did you mean "poll_seconds"?'),
])
def test_bad_batch_values_name_the_file_the_key_and_what_to_do(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    variant = {"name": "b", "model": "mock-1", "mode": "batch", "params": {"max_tokens": 32},
               "price": PRICE, **change.get("variant", {})}
    path = batch_job(tmp_path, "http://127.0.0.1:1/v1", variants=[variant],
                     batch=change.get("batch"))
    with pytest.raises(JobError, match=r"job\.toml") as raised:
        Job.from_toml(path)
    assert message in str(raised.value)


def test_a_bad_batch_value_exits_2_before_anything_is_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = batch_job(tmp_path, "http://127.0.0.1:1/v1", rows=2, batch={"unfinished": "later"})
    assert cli.main(["run", str(path)]) == 2
    assert '[batch]: "unfinished" must be one of' in capsys.readouterr().err


def test_estimate_shows_the_batch_cost_beside_the_online_cost(tmp_path: Path) -> None:
    from batchrun.estimate import estimate_offline
    from batchrun.estimate.format import format_estimate

    variants = [{"name": "b", "model": "mock-1", "mode": "batch", "params": {"max_tokens": 32},
                 "price": {**PRICE, "batch": 0.4}},
                {"name": "o", "model": "mock-1", "params": {"max_tokens": 32}, "price": PRICE}]
    path = batch_job(tmp_path, "http://127.0.0.1:1/v1", rows=10, variants=variants,
                     provider={"requests_per_minute": 60})
    estimate = estimate_offline(path)
    batch, online = estimate.variants
    assert batch.mode == "batch" and online.mode == "online"
    assert batch.online_cost_max == online.cost_max is not None
    assert batch.cost_max == pytest.approx(online.cost_max * 0.4)
    assert estimate.cost_max == pytest.approx(batch.cost_max + online.cost_max)
    assert estimate.providers[0].variants == ("o",)  # batch variants are not paced
    text = format_estimate(estimate)
    assert "online cost (USD)" in text and "batch variants (b): the online price x" in text


def test_detach_refuses_the_in_process_mock_whose_batches_would_end_with_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = batch_job(tmp_path, "mock", rows=2)
    assert cli.main(["run", str(path), "--detach"]) == 2
    err = capsys.readouterr().err
    assert '--detach with base_url = "mock"' in err and "batchrun mock" in err
    assert not (tmp_path / "out").exists()  # refused before the output directory is touched


def test_rows_left_pending_for_no_reason_do_not_exit_0() -> None:
    from batchrun.engine.summary import RunSummary

    summary = RunSummary(name="j", output=Path("out"), total=4, ok=3, error=0, skipped=0,
                         pending=1, tokens={}, cost_usd=None, elapsed_s=0.0, stopped=None,
                         unsettled=1)
    assert summary.exit_code == 1
    again = RunSummary.from_dict(summary.to_dict())
    assert again.unsettled == 1 and again.exit_code == 1
