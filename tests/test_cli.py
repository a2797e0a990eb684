"""The command line: help texts, exit codes, bad input refused before anything is sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import batchrun
from batchrun.mock import MockThread
from tests.conftest import write_job, write_rows

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ("run", "validate", "estimate", "report", "export", "mock")


def batchrun_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchrun", *args], capture_output=True, text=True,
        cwd=cwd, timeout=120, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_and_is_in_the_readme(command: str) -> None:
    result = batchrun_cli(command, "--help")
    assert result.returncode == 0
    assert f"usage: batchrun {command}" in result.stdout
    assert f"batchrun {command}" in (ROOT / "README.md").read_text()


def test_public_api_is_exactly_what_is_documented() -> None:
    assert sorted(batchrun.__all__) == ["Job", "RunSummary", "arun", "errors", "read", "run"]
    for name in batchrun.__all__:
        assert getattr(batchrun, name) is not None


def test_run_prints_a_summary_and_report_json_has_the_documented_keys(
    tmp_path: Path, mock: MockThread
) -> None:
    write_rows(tmp_path / "rows.jsonl", [{"id": f"r{i}", "text": f"t{i}"} for i in range(6)])
    job = write_job(tmp_path, base_url=mock.base_url, variants=[
        {"name": "priced", "model": "mock-1", "price": {"input": 1.0, "output": 2.0}},
        {"name": "free", "model": "mock-1"},
    ])
    result = batchrun_cli("run", str(job), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "12 ok, 0 error, 0 pending" in result.stderr
    report = batchrun_cli("report", str(tmp_path / "out"), "--json")
    data = json.loads(report.stdout)
    assert data["rows"] == {"total": 12, "ok": 12, "error": 0, "pending": 0}
    assert set(data["tokens"]) >= {"prompt", "completion", "reasoning", "cached", "total"}
    assert data["cost_usd"]["by_variant"]["free"] is None
    assert data["cost_usd"]["total"] == pytest.approx(data["cost_usd"]["by_variant"]["priced"])
    assert data["unpriced_variants"] == ["free"]
    assert set(data["by_variant"]["priced"]["latency_s"]) == {"p50", "p90", "p99"}
    text = batchrun_cli("report", str(tmp_path / "out"))
    assert "unpriced" in text.stdout


def test_malformed_jsonl_line_is_exit_2_naming_file_and_line_and_writes_nothing(
    tmp_path: Path, mock: MockThread
) -> None:
    (tmp_path / "rows.jsonl").write_text('{"id": "a", "text": "ok"}\n{"id": "b", "text": \n')
    job = write_job(tmp_path, base_url=mock.base_url)
    result = batchrun_cli("run", str(job))
    assert result.returncode == 2
    assert "rows.jsonl:2" in result.stderr
    assert not (tmp_path / "out").exists()
    assert mock.stats_snapshot()["requests"] == 0


def test_duplicate_id_is_exit_2_naming_the_id(tmp_path: Path, mock: MockThread) -> None:
    write_rows(tmp_path / "rows.jsonl", [{"id": "x", "text": "a"}, {"id": "x", "text": "b"}])
    job = write_job(tmp_path, base_url=mock.base_url)
    result = batchrun_cli("run", str(job))
    assert result.returncode == 2
    assert '"x"' in result.stderr or "'x'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_missing_column_is_exit_2_naming_the_column(tmp_path: Path, mock: MockThread) -> None:
    write_rows(tmp_path / "rows.jsonl", [{"id": "x", "body": "a"}])
    job = write_job(tmp_path, base_url=mock.base_url)
    result = batchrun_cli("validate", str(job))
    assert result.returncode == 2
    assert "text" in result.stderr


def test_unknown_job_key_is_exit_2_with_a_suggestion(tmp_path: Path) -> None:
    job = tmp_path / "job.toml"
    job.write_text('name = "x"\n[input]\npath = "a.jsonl"\nprompt = "t"\n[output]\npath = "o"\n'
                   '[[provider]]\nname = "p"\npreset = "mock"\n'
                   '[[variant]]\nname = "v"\nprovider = "p"\nmodel = "m"\nsampels = 2\n')
    result = batchrun_cli("validate", str(job))
    assert result.returncode == 2
    assert "sampels" in result.stderr and "samples" in result.stderr


def test_missing_key_variable_is_exit_2_before_sending(tmp_path: Path, mock: MockThread) -> None:
    write_rows(tmp_path / "rows.jsonl", [{"id": "x", "text": "a"}])
    job = write_job(tmp_path, base_url=mock.base_url,
                    provider={"api_key_env": "BATCHRUN_SURELY_UNSET_KEY"})
    result = batchrun_cli("run", str(job))
    assert result.returncode == 2
    assert "BATCHRUN_SURELY_UNSET_KEY" in result.stderr
    assert mock.stats_snapshot()["requests"] == 0


def test_export_formats_round_trip(tmp_path: Path, mock: MockThread) -> None:
    write_rows(tmp_path / "rows.jsonl",
               [{"id": f"r{i}", "text": f"t{i}", "gold": "neutral"} for i in range(5)])
    job = write_job(tmp_path, base_url=mock.base_url)
    batchrun.run(job)
    expected = batchrun.read(tmp_path / "out").sort_values("id").reset_index(drop=True)
    import pandas as pd

    for suffix, reader in ((".parquet", pd.read_parquet), (".csv", pd.read_csv),
                           (".jsonl", lambda p: pd.read_json(p, lines=True))):
        target = tmp_path / f"export{suffix}"
        result = batchrun_cli("export", str(tmp_path / "out"), "--to", str(target))
        assert result.returncode == 0, result.stderr
        got = reader(target).sort_values("id").reset_index(drop=True)
        assert list(got["id"]) == list(expected["id"])
        assert list(got["content"]) == list(expected["content"])
        assert list(got["prompt_tokens"]) == list(expected["prompt_tokens"])
    joined = tmp_path / "joined.parquet"
    result = batchrun_cli("export", str(tmp_path / "out"), "--to", str(joined), "--join-input")
    assert result.returncode == 0, result.stderr
    joined_frame = pd.read_parquet(joined)
    assert set(joined_frame["text"]) == {f"t{i}" for i in range(5)}
    assert set(joined_frame["gold"]) == {"neutral"}
