"""The job file as frozen dataclasses: `Job` loads, resolves paths and snapshots itself.

Reading and validating each section is `batchrun._jobread`'s job; every problem raises JobError
naming the file, the table and the key. Paths are relative to the job file's folder (`base_dir`).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchrun._tomlcheck import Table
from batchrun.errors import JobError


@dataclass(frozen=True, slots=True)
class InputSpec:
    """[input]: where the rows are and which columns make the prompt.

    With `format = "auto"` neither `prompt` nor `messages` is required here: the source reader
    decides per file (an openai-batch file carries its bodies; a rows file then needs a column).
    """

    path: str
    id: str | None = None
    prompt: str | None = None
    messages: str | None = None
    template: str | None = None
    system: str | None = None
    format: str = "auto"


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """[output]: the run directory and how often it is checkpointed."""

    path: str
    keep_columns: tuple[str, ...] = ()
    flush_rows: int = 1000
    flush_seconds: float = 30.0
    keep_raw: bool = False


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One [[provider]]: an endpoint, its key's variable name and its limits."""

    name: str
    api: str
    base_url: str
    api_key_env: str | None = None
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    input_tokens_per_minute: float | None = None
    output_tokens_per_minute: float | None = None
    max_concurrency: int = 64
    timeout_seconds: float = 300.0
    idle_timeout_seconds: float = 60.0
    headers: Mapping[str, str] = field(default_factory=dict)
    limits: str = "fixed"
    preset: str | None = None


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens; cached input is billed at `input` when `cached_input` is None."""

    input: float
    output: float
    cached_input: float | None = None


@dataclass(frozen=True, slots=True)
class VariantSpec:
    """One [[variant]]: a model on a provider with its parameters; every row is sent to each."""

    name: str
    provider: str
    model: str
    stream: bool = False
    samples: int = 1
    params: Mapping[str, Any] = field(default_factory=dict)
    price: Price | None = None


@dataclass(frozen=True, slots=True)
class RetrySpec:
    """[retry]: attempts in all and the backoff between them."""

    max_attempts: int = 6
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    retry_after_max_s: float = 300.0


@dataclass(frozen=True, slots=True)
class ParseSpec:
    """[parse]: reasoning extraction and JSON answers."""

    reasoning: str = "auto"
    json: bool = False
    schema: Mapping[str, Any] | None = None
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class BudgetSpec:
    """[budget]: stop sending before spending more than `max_usd`."""

    max_usd: float | None = None


@dataclass(frozen=True, slots=True)
class Job:
    """A validated job file."""

    name: str
    input: InputSpec
    output: OutputSpec
    providers: tuple[ProviderSpec, ...]
    variants: tuple[VariantSpec, ...]
    retry: RetrySpec
    parse: ParseSpec
    budget: BudgetSpec
    base_dir: Path
    source: str

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> Job:
        """Load and validate a job file."""
        path = Path(path)
        try:
            with path.open("rb") as file:
                data = tomllib.load(file)
        except FileNotFoundError:
            raise JobError(f"{path}: job file not found") from None
        except tomllib.TOMLDecodeError as err:
            raise JobError(f"{path}: invalid TOML: {err}") from None
        except UnicodeDecodeError:
            raise JobError(f"{path}: not a text file (TOML must be UTF-8)") from None
        except OSError as err:
            raise JobError(f"{path}: cannot read the job file: {err.strerror}") from None
        return cls.from_dict(data, base_dir=path.resolve().parent, source=str(path))

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, base_dir: Path | None = None, source: str = "<job>"
    ) -> Job:
        """Validate a job given as a mapping shaped like the TOML file."""
        # Imported here: the section readers build these dataclasses, so they import this module.
        from batchrun._jobread import read_job

        base = Path.cwd() if base_dir is None else Path(base_dir)
        return read_job(Table(data, source), base, source)

    def input_path(self) -> Path:
        """The input path, resolved against the job file's folder."""
        return (self.base_dir / Path(self.input.path).expanduser()).resolve()

    def output_path(self) -> Path:
        """The output directory, resolved against the job file's folder."""
        return (self.base_dir / Path(self.output.path).expanduser()).resolve()

    def provider(self, name: str) -> ProviderSpec:
        """The [[provider]] called `name`; KeyError if there is none."""
        for spec in self.providers:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def with_overrides(
        self, *, input_path: str | None = None, output_path: str | None = None
    ) -> Job:
        """A copy with the input or output path replaced (already absolute, from the CLI)."""
        job = self
        if input_path is not None:
            job = dataclasses.replace(job, input=dataclasses.replace(job.input, path=input_path))
        if output_path is not None:
            job = dataclasses.replace(job, output=dataclasses.replace(job.output, path=output_path))
        return job

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able snapshot shaped like the job file; `from_dict` reads it back unchanged."""
        return {
            "name": self.name,
            "input": _plain(self.input),
            "output": _plain(self.output),
            "provider": [_plain(spec) for spec in self.providers],
            "variant": [_plain(spec) for spec in self.variants],
            "retry": _plain(self.retry),
            "parse": _plain(self.parse),
            "budget": _plain(self.budget),
        }


def _plain(value: Any) -> Any:
    """Dataclasses, mappings and tuples as dicts and lists; None-valued fields left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        items = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
        return {key: _plain(item) for key, item in items if item is not None}
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
