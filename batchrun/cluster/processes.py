"""`batchrun run --processes P`: P shard processes on this machine, one display, one summary.

Each shard is a `batchrun run --shard I/P` child process that reports progress as JSON lines on
its stdout and its summary as the last one. The children run in sessions of their own, so a
Ctrl-C reaches them once, through the parent, which forwards SIGINT and SIGTERM; a child whose
parent dies (even by SIGKILL) sees its stdin close and stops as if interrupted, its results
saved. The rerun resumes every shard from its own journal.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import IO, Any

import orjson
from tqdm import tqdm

from batchrun import sources
from batchrun.cluster.combine import combine
from batchrun.engine import RunSummary
from batchrun.engine.preflight import api_keys, check_columns
from batchrun.engine.shards import check_layout
from batchrun.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_USAGE, UsageError
from batchrun.job import Job
from batchrun.sources import Shard
from batchrun.store import clear_run

log = logging.getLogger("batchrun")

LOG_EVERY_S = 10.0


@dataclass
class _Child:
    """One shard process and what it has said so far."""

    name: str
    process: subprocess.Popen[bytes]
    progress: dict[str, Any] = field(default_factory=dict)
    summary: RunSummary | None = None
    readers: list[threading.Thread] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ProcessesOutcome:
    """What P shard processes did: the combined summary, or the exit code of a failed start."""

    summary: RunSummary | None
    exit_code: int


def run_processes(
    job: Job,
    job_path: str,
    processes: int,
    *,
    passed: Sequence[str] = (),
    limit: int | None = None,
    fresh: bool = False,
    progress: bool = True,
) -> ProcessesOutcome:
    """Run the job as `processes` shards of this machine's processes into its output directory.

    `passed` are the `run` options every shard gets (--input, --output, --limit, ...). The input
    is checked here, once for all shards, which then start without reading it again.
    """
    if processes < 1:
        raise UsageError(f"--processes {processes}: want at least 1")
    root = job.output_path()
    if not fresh:  # --fresh clears whatever N the directory held
        check_layout(root, Shard(0, processes))
    scan = sources.scan(job.input, job.base_dir, job.output.keep_columns, limit=limit,
                        count_shards=processes)
    check_columns(job)
    api_keys(job)
    if fresh:
        clear_run(root)
    started = time.monotonic()
    children = [
        _start(job_path, index, processes,
               [*passed, "--known-input", f"{scan.rows}:{scan.per_shard[index]}"])
        for index in range(processes)
    ]
    forwarded = _forward_signals(children)
    try:
        _show_progress(children, progress)
    finally:
        for child in children:
            child.process.wait()
            for reader in child.readers:
                reader.join()
        _restore(forwarded)
    summaries = [c.summary for c in children if c.summary is not None]
    failed = [c for c in children if c.summary is None]
    if failed:
        codes = {c.process.returncode for c in failed}
        code = EXIT_USAGE if codes == {EXIT_USAGE} else (
            EXIT_INTERRUPTED if codes <= {EXIT_INTERRUPTED, -signal.SIGINT, -signal.SIGTERM}
            else EXIT_INTERNAL)
        names = ", ".join(c.name for c in failed)
        if code != EXIT_USAGE:
            log.error("shard %s ended without a summary (exit %s); its results so far are "
                      "saved: run the same command to resume", names,
                      ", ".join(str(c.process.returncode) for c in failed))
        return ProcessesOutcome(None, code)
    summary = combine(summaries, output=root)
    summary = dataclasses.replace(summary, elapsed_s=time.monotonic() - started)
    return ProcessesOutcome(summary, summary.exit_code)


def _start(job_path: str, index: int, count: int, passed: Sequence[str]) -> _Child:
    command = [sys.executable, "-m", "batchrun", "run", job_path, "--shard", f"{index}/{count}",
               "--progress-events", *passed]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,  # a terminal's Ctrl-C reaches them through us, once
    )
    child = _Child(f"{index}-of-{count}", process)
    assert process.stdout is not None and process.stderr is not None
    child.readers = [
        threading.Thread(target=_read_events, args=(child, process.stdout), daemon=True),
        threading.Thread(target=_relay_stderr, args=(child, process.stderr), daemon=True),
    ]
    for reader in child.readers:
        reader.start()
    return child


def _read_events(child: _Child, stream: IO[bytes]) -> None:
    for line in stream:
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if event.get("event") == "progress":
            child.progress = event
        elif event.get("event") == "summary":
            child.summary = RunSummary.from_dict(event["summary"])


_said: set[bytes] = set()
_said_lock = threading.Lock()
_ERROR = b"batchrun: error:"


def _relay_stderr(child: _Child, stream: IO[bytes]) -> None:
    """A child's messages, prefixed with its shard; an error every shard meets is said once."""
    for line in stream:
        if line.startswith(_ERROR):
            with _said_lock:
                if line in _said:
                    continue
                _said.add(line)
        text = line.decode(errors="replace").rstrip("\n")
        prefix = "batchrun: "
        if text.startswith(prefix):
            text = text[len(prefix):]
        sys.stderr.write(f"{prefix}[{child.name}] {text}\n")
        sys.stderr.flush()


def _forward_signals(children: list[_Child]) -> dict[int, Any]:
    def forward(signum: int, _frame: FrameType | None) -> None:
        for child in children:
            if child.process.poll() is None:
                child.process.send_signal(signum)

    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, forward)
    return previous


def _restore(previous: dict[int, Any]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def _show_progress(children: list[_Child], enabled: bool) -> None:
    """One bar (or a log line now and then) for every shard, until they have all ended."""
    bar: tqdm[None] | None = None
    shown, last_log = 0, time.monotonic()
    while any(c.process.poll() is None for c in children):
        time.sleep(0.2)
        if not enabled:
            continue
        done = sum(int(c.progress.get("done", 0)) for c in children)
        known = [c.progress for c in children if c.progress]
        total = sum(int(p.get("total", 0)) for p in known)
        text = (f"ok={sum(int(p.get('ok', 0)) for p in known)} "
                f"err={sum(int(p.get('error', 0)) for p in known)} "
                f"shards={sum(c.process.poll() is None for c in children)} running")
        if sys.stderr.isatty():
            # Once every shard has said its total (or has already ended without a word).
            said = sum(bool(c.progress) or c.process.poll() is not None for c in children)
            if bar is None and said == len(children):
                bar = tqdm(total=total, unit="req", dynamic_ncols=True, file=sys.stderr)
            if bar is not None:
                bar.total = total
                bar.update(done - shown)
                shown = done
                bar.set_postfix_str(text, refresh=True)
        elif time.monotonic() - last_log >= LOG_EVERY_S:
            last_log = time.monotonic()
            log.info("%d/%d requests; %s", done, total, text)
    if bar is not None:
        bar.close()


def watch_parent() -> None:
    """In a shard process: stop as if interrupted once the parent's pipe (our stdin) closes."""

    def wait_for_eof() -> None:
        # os.read, not sys.stdin: a daemon thread inside a buffered read blocks the
        # interpreter's shutdown.
        try:
            while os.read(0, 65536):
                pass
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=wait_for_eof, daemon=True, name="parent-watch").start()


def emit_summary(summary: RunSummary) -> None:
    """In a shard process: the summary, as the last JSON line of stdout."""
    sys.stdout.write(orjson.dumps({"event": "summary", "summary": summary.to_dict()}).decode()
                     + "\n")
    sys.stdout.flush()
