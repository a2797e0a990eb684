"""The `batchrun` command: argument parsing, output for people, and exit codes only."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from batchrun.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    StorageError,
    UsageError,
)

if TYPE_CHECKING:
    from batchrun.engine import RunSummary
    from batchrun.job import Job



def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batchrun",
        description="Run large batches of chat-completion calls with limits, retries and "
        "checkpoints.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run or resume a job",
                              description="Run a job, or resume it where it stopped.")
    run.add_argument("job", help="the job file (TOML)")
    run.add_argument("--input", help="input file, directory or glob (overrides [input] path)")
    run.add_argument("--output", help="output directory (overrides [output] path)")
    run.add_argument("--limit", type=int, help="only the first N input rows")
    run.add_argument("--fresh", action="store_true",
                     help="discard earlier results in the output directory first")
    run.add_argument("--retry-errors", action="store_true",
                     help="send again the requests that ended in error")
    run.add_argument("--no-progress", action="store_true", help="no progress bar or log lines")
    run.add_argument("--detach", action="store_true",
                     help="batch variants: submit their provider batches and exit; the same "
                     "command run again later collects them")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--shard", metavar="I/N",
                       help="run only shard I of N (rows by a hash of their id), in "
                       "DIR/shards/I-of-N with 1/N of the limits; default: BATCHRUN_SHARD, a "
                       "Slurm array or a Kubernetes indexed Job (with --shards)")
    where.add_argument("--processes", type=int, metavar="P",
                       help="run P shards as processes of this machine, one progress display")
    where.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                       help="run the shards as Ray tasks (a local cluster without ADDRESS), one "
                       "limit shared by all (needs the extra batchrun[ray])")
    run.add_argument("--shards", type=int, metavar="N",
                     help="how many shards: with JOB_COMPLETION_INDEX (a Kubernetes indexed "
                     "Job), or the number of Ray tasks (default: the cluster's CPUs)")
    run.add_argument("--progress-events", action="store_true", help=argparse.SUPPRESS)
    run.add_argument("--known-input", metavar="ROWS:SELECTED", help=argparse.SUPPRESS)

    cancel = commands.add_parser(
        "cancel", help="cancel a run's open provider batches and collect what they finished",
        description="Cancel the provider batches a run (every shard of it) still has open, "
        "then collect the answers they had finished; the rest stay pending for a later run.")
    cancel.add_argument("dir", help="the run's output directory")

    compact = commands.add_parser(
        "compact", help="merge a run's checkpoint parts into a few large ones",
        description="Merge the many small Parquet parts of a stopped run (every shard of it) "
        "into a few large ones; readers see every result once throughout.")
    compact.add_argument("dir", help="the run's output directory")

    validate = commands.add_parser(
        "validate", help="check a job, its input and its keys without sending anything",
        description="Check the job file, the input's columns and the providers' key variables.")
    validate.add_argument("job")

    estimate = commands.add_parser(
        "estimate", help="estimate tokens, cost and time before spending",
        description="Rows x variants, tokens, cost range and time at the configured limits.")
    estimate.add_argument("job")
    estimate.add_argument("--sample", type=int, metavar="N",
                          help="run N rows per variant for real and extrapolate")

    report = commands.add_parser("report", help="progress and totals of a run",
                                 description="Counts, tokens, cost, latency and errors of a run.")
    report.add_argument("dir", help="the run's output directory")
    report.add_argument("--json", action="store_true", help="one JSON object, for scripts")

    export = commands.add_parser("export", help="write the results to a file",
                                 description="One row per (id, variant, sample), latest result.")
    export.add_argument("dir", help="the run's output directory")
    export.add_argument("--to", required=True, help="target file: .parquet, .jsonl or .csv")
    export.add_argument("--join-input", action="store_true", help="add the input's columns")
    export.add_argument("--format", choices=["openai-batch"],
                        help="write the OpenAI Batch API output shape (JSONL)")

    commands.add_parser(
        "schema", help="print the job file's JSON Schema (for editors)",
        description="The JSON Schema of a job file; `#:schema FILE` on a job's first line makes "
        "TOML editors (taplo, Even Better TOML) complete and check it.")

    mock = commands.add_parser("mock", help="serve the built-in mock provider on loopback",
                               description="OpenAI and Anthropic formats on 127.0.0.1.")
    mock.add_argument("--port", type=int, default=8765)
    mock.add_argument("--latency-ms", type=float, default=0.0)
    mock.add_argument("--rpm", type=float, help="requests per minute it enforces")
    mock.add_argument("--tpm", type=float, help="tokens per minute it enforces")
    mock.add_argument("--window-s", type=float, default=60.0,
                      help="length of the window the limits are enforced over")
    mock.add_argument("--fail-rate", type=float, default=0.0,
                      help="fraction of requests answered with an injected failure")
    mock.add_argument("--shape", default="openai",
                      help="response shape: openai, liandanxia, relay, jiekou, deepseek, "
                      "openrouter")
    mock.add_argument("--reasoning", default="none", choices=["none", "field", "think"])
    mock.add_argument("--no-rate-headers", action="store_true",
                      help="send no x-ratelimit-* headers: limits show only as 429s")
    mock.add_argument("--faults", default="", metavar="KIND=SHARE,...",
                      help="failures injected at these shares of attempts, whatever the limits: "
                      "e.g. 429=0.05,500=0.05,drop=0.02,hang=0.01,malformed=0.01")
    mock.add_argument("--retry-after", type=float, metavar="S",
                      help="Retry-After of injected 429s, 503s and 529s (default 0, 50 ms)")
    mock.add_argument("--hang-s", type=float, default=60.0, metavar="S",
                      help="how long an injected hang holds a request before answering")
    mock.add_argument("--seed", type=int, default=0,
                      help="seed of the injected failures' random draws")
    mock.add_argument("--batch-seconds", type=float, default=0.5, metavar="S",
                      help="how long a batch (OpenAI or Anthropic) takes from creation to its end")
    mock.add_argument("--batch-finalizing-share", type=float, default=0.1, metavar="F",
                      help="share of --batch-seconds an OpenAI batch stays finalizing with its "
                      "request_counts already complete and no output file yet")
    mock.add_argument("--batch-expire-share", type=float, default=0.0, metavar="F",
                      help="share of each batch's lines the window closes on: the batch ends "
                      "expired, the other lines answered")
    mock.add_argument("--batch-500-share", type=float, default=0.0, metavar="F",
                      help="share of batch lines that end in a 500 error")
    mock.add_argument("--batch-429-share", type=float, default=0.0, metavar="F",
                      help="share of batch lines that end in a 429 error")
    mock.add_argument("--batch-no-output-file", action="store_true",
                      help="OpenAI batches complete with output_file_id null (answered lines lost)")
    mock.add_argument("--batch-shuffle-results", action="store_true",
                      help="result lines in a random order instead of the input's")
    mock.add_argument("--batch-validation-failures", type=int, default=0, metavar="N",
                      help="the first N batches of each API fail as a whole (OpenAI: failed with "
                      "token_limit_exceeded; Anthropic: create refused with a 400)")
    mock.add_argument("--file-visible-after-ms", type=float, default=0.0, metavar="MS",
                      help="an uploaded file 404s on GET /v1/files/{id} and on batch create "
                      "for this long")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="batchrun: %(message)s", stream=sys.stderr)
    try:
        code = _dispatch(args)
        sys.stdout.flush()  # a reader that went away shows here, not in the exit's own flush
        return code
    except UsageError as error:
        print(f"batchrun: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except StorageError as error:  # disk full or a file-size limit: the message says what to do
        print(f"batchrun: error: {error}", file=sys.stderr)
        return EXIT_INTERNAL
    except BrokenPipeError:
        # The reader went away (`batchrun report DIR | head`): what it wanted it got. Point
        # stdout at /dev/null so the interpreter's last flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print("batchrun: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug or an environment failure (disk full, ...), not a usage one
        if os.environ.get("BATCHRUN_DEBUG"):
            traceback.print_exc()
        print(f"batchrun: internal error: {type(error).__name__}: {error} (results so far are "
              "saved; BATCHRUN_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run(args)
    if args.command == "validate":
        from batchrun.engine.preflight import validate

        print(validate(args.job))
        return EXIT_OK
    if args.command == "estimate":
        from batchrun.estimate import estimate_command

        return estimate_command(args.job, sample=args.sample)
    if args.command == "report":
        from batchrun.results import build_report, format_report

        report = build_report(args.dir)
        if args.json:
            print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        else:
            print(format_report(report))
        return EXIT_OK
    if args.command == "compact":
        return _compact(args.dir)
    if args.command == "cancel":
        return _cancel(args.dir)
    if args.command == "schema":
        from batchrun.job.schema import job_schema

        print(orjson.dumps(job_schema(), option=orjson.OPT_INDENT_2).decode())
        return EXIT_OK
    if args.command == "export":
        from batchrun.results import export

        count = export(args.dir, args.to, join_input=args.join_input, format=args.format)
        print(f"wrote {count} rows to {args.to}")
        return EXIT_OK
    from batchrun.mock import MockConfig, serve
    from batchrun.mock.config import parse_fault_mix

    serve(MockConfig(port=args.port, latency_ms=args.latency_ms, rpm=args.rpm, tpm=args.tpm,
                     window_s=args.window_s, fail_rate=args.fail_rate, shape=args.shape,
                     reasoning=args.reasoning, rate_headers=not args.no_rate_headers,
                     faults=parse_fault_mix(args.faults), retry_after_s=args.retry_after,
                     hang_s=args.hang_s, seed=args.seed, batch_seconds=args.batch_seconds,
                     batch_finalizing_share=args.batch_finalizing_share,
                     batch_expire_share=args.batch_expire_share,
                     batch_500_share=args.batch_500_share, batch_429_share=args.batch_429_share,
                     batch_no_output_file=args.batch_no_output_file,
                     batch_shuffle_results=args.batch_shuffle_results,
                     batch_validation_failures=args.batch_validation_failures,
                     file_visible_after_ms=args.file_visible_after_ms))
    return EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from batchrun.job import Job

    job = Job.from_toml(args.job).with_overrides(input_path=args.input, output_path=args.output)
    if args.shards is not None and (args.shard is not None or args.processes is not None):
        raise UsageError("--shards N goes with JOB_COMPLETION_INDEX or --ray; --shard I/N and "
                         "--processes P already say how many shards")
    if args.processes is not None or args.ray is not None:
        from batchrun.engine.shards import shard_from_environment

        named = shard_from_environment(os.environ)
        if named is not None:  # every array task would run every shard
            raise UsageError(f"the environment makes this process shard {named.index}/"
                             f"{named.count} (BATCHRUN_SHARD or a Slurm array): run one shard per "
                             "task without --processes/--ray, or unset it")
        return _run_many(args, job)
    from batchrun.engine import RunOptions, arun
    from batchrun.engine.shards import shard_from_environment
    from batchrun.sources import Shard

    shard = (Shard.parse(args.shard) if args.shard is not None
             else shard_from_environment(os.environ, args.shards))
    options = RunOptions(
        limit=args.limit, fresh=args.fresh, retry_errors=args.retry_errors,
        progress=not args.no_progress, handle_signals=True, shard=shard,
        progress_events=args.progress_events, known_input=_known_input(args.known_input),
        detach=args.detach,
    )
    if args.progress_events:
        from batchrun.cluster.processes import emit_summary, watch_parent

        watch_parent()
        summary = asyncio.run(arun(job, options))
        emit_summary(summary)
        return summary.exit_code
    summary = asyncio.run(arun(job, options))
    return _print_summary(summary)


def _known_input(text: str | None) -> tuple[int, int] | None:
    """The parent's scan of the input, as it hands it to a shard process."""
    if text is None:
        return None
    rows, selected = text.split(":")
    return int(rows), int(selected)


def _run_many(args: argparse.Namespace, job: Job) -> int:
    """--processes P or --ray: the shards side by side, one summary."""
    root = job.output_path()
    if args.ray is not None:
        from batchrun.cluster.ray_tasks import run_on_ray
        from batchrun.engine import RunOptions

        options = RunOptions(limit=args.limit, fresh=args.fresh, retry_errors=args.retry_errors,
                             progress=not args.no_progress, detach=args.detach)
        return _print_summary(run_on_ray(job, options, args.shards, args.ray or None))
    from batchrun.cluster.processes import run_processes

    passed = ["--output", str(root)]
    if args.input is not None:
        passed += ["--input", str(Path(args.input).resolve())]
    if args.limit is not None:
        passed += ["--limit", str(args.limit)]
    if args.retry_errors:
        passed.append("--retry-errors")
    if args.detach:
        passed.append("--detach")
    outcome = run_processes(job, str(Path(args.job).resolve()), args.processes, passed=passed,
                            limit=args.limit, fresh=args.fresh, progress=not args.no_progress)
    if outcome.summary is None:
        return outcome.exit_code
    return _print_summary(outcome.summary)


def _cancel(directory: str) -> int:
    from batchrun.engine.batch.cancel import cancel_batches

    done = cancel_batches(directory)
    if not done.cancelled:
        print(f"{directory}: no open provider batches", file=sys.stderr)
        return EXIT_OK
    print(f"{directory}: {done.cancelled} batch{'' if done.cancelled == 1 else 'es'} cancelled; "
          f"{done.ok} answers they had finished collected ({done.error} error); the requests "
          "they left unanswered stay pending: run the job again to send them", file=sys.stderr)
    return EXIT_OK


def _compact(directory: str) -> int:
    from batchrun.store import compact, recover, run_locked, shard_folders

    root = Path(directory)
    if not root.is_dir():
        raise UsageError(f"{root}: no such output directory")
    folders = [folder for _, folder in shard_folders(root)] or [root]
    before = after = 0
    with run_locked(root):  # every lock first: a live run or shard refuses it before any merge
        for folder in folders:
            recover(folder)
            done = compact(folder)
            before, after = before + done.parts_before, after + done.parts_after
    print(f"{root}: {before} parts merged into {after}")
    return EXIT_OK


def _print_summary(summary: RunSummary) -> int:
    tokens = summary.tokens
    cost = "unpriced" if summary.cost_usd is None else f"${summary.cost_usd:.4f}"
    lines = [
        f"{summary.name}: {summary.ok} ok, {summary.error} error, {summary.pending} pending "
        f"of {summary.total} requests ({summary.skipped} already done before this run)",
        f"this run: {tokens['prompt']:,} prompt + {tokens['completion']:,} completion tokens "
        f"({tokens['reasoning']:,} reasoning, {tokens['cached']:,} cached), cost {cost}, "
        f"{summary.elapsed_s:.1f}s",
        f"results in {summary.output}; see `batchrun report {summary.output}`",
    ]
    if summary.stopped == "interrupted":
        lines.append("interrupted: results so far are saved; run the same command to resume")
    elif summary.stopped == "budget":
        lines.append("stopped by [budget] max_usd; raise it and run the same command to continue")
    elif summary.error:
        lines.append("some requests ended in error; `--retry-errors` sends them again")
    lines += summary.account_lines()
    print("\n".join(lines), file=sys.stderr)
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
