"""The code stays strict: ruff, mypy --strict, and the layering contracts of import-linter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("command", [
    ["ruff", "check", "."],
    ["mypy"],
], ids=["ruff", "mypy"])
def test_linters_pass(command: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_layering_contracts_are_checked_and_kept() -> None:
    """import-linter really ran every contract of pyproject.toml, and each one held."""
    # lint-imports has no `python -m` entry point: call the function its script calls.
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(no_cache=True))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 6 kept, 0 broken." in result.stdout
    assert "The read side never imports the write side KEPT" in result.stdout
