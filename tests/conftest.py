"""Shared fixtures: the project's own mock provider on loopback, and job files on disk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchrun.mock import MockConfig, MockThread


@pytest.fixture
def mock() -> Iterator[MockThread]:
    """A real mock provider on 127.0.0.1, in a background thread."""
    with MockThread(MockConfig()) as server:
        yield server


def toml_value(value: Any) -> str:
    """A Python value as TOML (json is close enough for the scalars, arrays and tables used)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    """A JSONL input file."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def write_job(
    folder: Path,
    *,
    base_url: str,
    input: dict[str, Any] | None = None,
    output: dict[str, Any] | None = None,
    provider: dict[str, Any] | None = None,
    variants: list[dict[str, Any]] | None = None,
    retry: dict[str, Any] | None = None,
    parse: dict[str, Any] | None = None,
    budget: dict[str, Any] | None = None,
) -> Path:
    """A job file in `folder` pointing at `base_url`, with quick retries for tests."""
    sections: dict[str, dict[str, Any]] = {
        "input": {"path": "rows.jsonl", "id": "id", "prompt": "text", **(input or {})},
        "output": {"path": "out", "flush_rows": 20, "flush_seconds": 1, **(output or {})},
        "retry": {"max_attempts": 3, "backoff_initial_s": 0.01, "backoff_max_s": 0.05,
                  "retry_after_max_s": 0.5, **(retry or {})},
    }
    if parse:
        sections["parse"] = parse
    if budget:
        sections["budget"] = budget
    lines = ['name = "test-job"']
    for name, table in sections.items():
        lines.append(f"\n[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
    prov = {"name": "mock", "api": "openai", "base_url": base_url, "max_concurrency": 8,
            **(provider or {})}
    lines.append("\n[[provider]]")
    lines += [f"{k} = {toml_value(v)}" for k, v in prov.items()]
    for variant in variants or [{"name": "v1", "model": "mock-1"}]:
        lines.append("\n[[variant]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in {"provider": "mock", **variant}.items()]
    path = folder / "job.toml"
    path.write_text("\n".join(lines) + "\n")
    return path
