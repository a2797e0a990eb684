"""`batchrun schema`: the JSON Schema covers every documented key and every shipped job."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from batchrun.job.schema import job_schema
from tests.conftest import write_job

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT.parent / "shared" / "SPEC.md"
TOML_BLOCK = re.compile(r"```toml\n(.*?)```", re.DOTALL)


def documented_jobs() -> list[tuple[str, dict[str, Any]]]:
    """Every TOML block of the README, and the job-file block of SPEC.md (when it is there)."""
    blocks = [("README.md", b) for b in TOML_BLOCK.findall((ROOT / "README.md").read_text())]
    if SPEC.exists():
        text = SPEC.read_text()
        section = text.split("## Job file (TOML)", 1)[1].split("\n## ", 1)[0]
        blocks += [("SPEC.md", b) for b in TOML_BLOCK.findall(section)]
    return [(where, tomllib.loads(block)) for where, block in blocks]


def key_paths(data: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> list[str]:
    """Every key of `data` that `schema` does not declare, as dotted paths."""
    missing = []
    properties = schema.get("properties")
    if properties is None:  # a free-form table such as params or headers
        return []
    for key, value in data.items():
        if key not in properties:
            missing.append(prefix + key)
            continue
        inner = properties[key]
        if inner.get("type") == "array" and isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    missing += key_paths(item, inner["items"], f"{prefix}{key}[].")
        elif isinstance(value, dict):
            missing += key_paths(value, inner, f"{prefix}{key}.")
    return missing


def test_the_schema_command_prints_a_valid_json_schema() -> None:
    out = subprocess.run([sys.executable, "-m", "batchrun", "schema"], capture_output=True,
                         check=True, cwd=ROOT)
    schema = orjson.loads(out.stdout)
    Draft202012Validator.check_schema(schema)
    assert schema == job_schema()


def test_every_key_documented_in_the_readme_and_spec_is_in_the_schema() -> None:
    jobs = documented_jobs()
    assert len(jobs) >= 5  # the README's examples were found
    schema = job_schema()
    for where, data in jobs:
        assert key_paths(data, schema) == [], where


@pytest.mark.parametrize("job", sorted((ROOT / "jobs").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_job_validates_against_the_schema(job: Path) -> None:
    data = tomllib.loads(job.read_text())
    assert list(Draft202012Validator(job_schema()).iter_errors(data)) == []


def test_the_schema_refuses_an_unknown_key_and_a_wrong_type(tmp_path: Path) -> None:
    data = tomllib.loads(write_job(tmp_path, base_url="mock").read_text())
    validator = Draft202012Validator(job_schema())
    assert list(validator.iter_errors(data)) == []
    data["variant"][0]["sampels"] = 2
    data["provider"][0]["max_concurrency"] = "many"
    messages = sorted(e.message for e in validator.iter_errors(data))
    assert any("sampels" in m for m in messages)
    assert any("'many' is not of type 'integer'" in m for m in messages)
