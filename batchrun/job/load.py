"""`Job`: a job file loaded, assembled from its sections, resolved and snapshotted.

Each section is read and checked by `batchrun.job.sections`; every problem raises JobError naming
the file, the table and the key. Paths are relative to the job file's folder (`base_dir`).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from batchrun.errors import JobError
from batchrun.job.sections import (
    TOP_KEYS,
    check_unique,
    read_batch,
    read_budget,
    read_input,
    read_output,
    read_parse,
    read_provider,
    read_retry,
    read_variant,
)
from batchrun.job.specs import (
    BatchSpec,
    BudgetSpec,
    InputSpec,
    OutputSpec,
    ParseSpec,
    ProviderSpec,
    RetrySpec,
    VariantSpec,
)
from batchrun.job.toml_table import Table


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
    batch: BatchSpec = dataclasses.field(default_factory=BatchSpec)

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
        base = Path.cwd() if base_dir is None else Path(base_dir)
        return _read_job(Table(data, source), base, source)

    def input_path(self) -> Path:
        """The input path, resolved against the job file's folder."""
        return (self.base_dir / Path(self.input.path).expanduser()).resolve()

    def output_path(self) -> Path:
        """The output directory, resolved against the job file's folder."""
        return (self.base_dir / Path(self.output.path).expanduser()).resolve()

    @property
    def requests_per_row(self) -> int:
        """Requests one input row makes: the samples of every variant."""
        return sum(v.samples for v in self.variants)

    def provider(self, name: str) -> ProviderSpec:
        """The [[provider]] called `name`; KeyError if there is none."""
        for spec in self.providers:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def with_overrides(
        self, *, input_path: str | os.PathLike[str] | None = None,
        output_path: str | os.PathLike[str] | None = None,
    ) -> Job:
        """A copy with the input or output path replaced by one given on the command line.

        Such paths are relative to the current directory, not to the job file's folder.
        """
        job = self
        if input_path is not None:
            given = str(Path(input_path).resolve())
            job = dataclasses.replace(job, input=dataclasses.replace(job.input, path=given))
        if output_path is not None:
            given = str(Path(output_path).resolve())
            job = dataclasses.replace(job, output=dataclasses.replace(job.output, path=given))
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
            "batch": _plain(self.batch),
        }


def _read_job(top: Table, base_dir: Path, source: str) -> Job:
    """The whole job table as a Job, read section by section."""
    if not isinstance(top.data, Mapping):
        top.fail("a job must be a table of keys")
    top.only(TOP_KEYS)
    name = top.required("name", ' (e.g. name = "sentiment-labels")')
    input_spec = read_input(top.section("input"))
    output_spec = read_output(top.section("output"))
    tables = top.sections("provider")
    if not tables:
        top.fail("at least one [[provider]] is required (with name, and api + base_url or preset)")
    providers = tuple(read_provider(t, source) for t in tables)
    check_unique("provider", tables, providers)
    tables = top.sections("variant")
    if not tables:
        top.fail("at least one [[variant]] is required (with name, provider and model)")
    by_name = {spec.name: spec for spec in providers}
    variants = tuple(read_variant(t, source, by_name) for t in tables)
    check_unique("variant", tables, variants)
    return Job(
        name=name,
        input=input_spec,
        output=output_spec,
        providers=providers,
        variants=variants,
        retry=read_retry(top.section("retry")),
        parse=read_parse(top.section("parse"), base_dir),
        budget=read_budget(top.section("budget")),
        base_dir=base_dir,
        source=source,
        batch=read_batch(top.section("batch")),
    )


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
