"""Hostile providers and careless users: the key never reaches a file or the screen, a full disk
never glues two results, a huge answer never takes the machine down, odd input gets a clear word.

Every case runs against a real loopback server and real files; most through the real CLI.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiohttp import web

import batchrun
from batchrun import store
from batchrun.errors import JobError
from batchrun.job import Job
from batchrun.mock import MockConfig, MockThread
from batchrun.mock.answer import request_key
from tests.conftest import toml_value, write_job, write_rows
from tests.replay import ReplayServer, stream

OPENAI_KEY = "sk-proj-Kf83hQz0WmX1vLr7Tn2bYc9Dg4Ps6Ju5Ea"
ANTHROPIC_KEY = "sk-ant-api03-Zq4Lm8Xr2Bv6Nc0Tg3Hy7Wk1Pd5Fs9Ja"
PIECE = 12
# Stands for the key written with JSON escapes (\u0073\u006b...) in a body's JSON text.
ESCAPED = "@@ESCAPED@@"


def cli(*args: str, env: dict[str, str] | None = None,
        timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "batchrun", *args], capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def write_multi_job(
    folder: Path, providers: list[dict[str, Any]], variants: list[dict[str, Any]],
    **sections: dict[str, Any],
) -> Path:
    """A job file with several providers (conftest's `write_job` writes one)."""
    tables: dict[str, dict[str, Any]] = {
        "input": {"path": "rows.jsonl", "id": "id", "prompt": "text"},
        "output": {"path": "out", "flush_rows": 200, "flush_seconds": 1},
        "retry": {"max_attempts": 1},
        **sections,
    }
    lines = ['name = "hostile"']
    for name, table in tables.items():
        lines += [f"\n[{name}]", *(f"{k} = {toml_value(v)}" for k, v in table.items())]
    for kind, items in (("provider", providers), ("variant", variants)):
        for item in items:
            lines += [f"\n[[{kind}]]", *(f"{k} = {toml_value(v)}" for k, v in item.items())]
    path = folder / "job.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- the key-echoing provider


def sent_key(request: web.Request) -> str:
    """The key the request carried, in either format's header."""
    bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
    return bearer or request.headers.get("x-api-key", "")


def escaped(text: str) -> str:
    return "".join(f"\\u{ord(c):04x}" for c in text)


def json_reply(data: Any, key: str, status: int = 200) -> web.Response:
    # The placeholder sits inside a JSON string, so its escaped replacement is valid JSON.
    text = json.dumps(data).replace(ESCAPED, escaped(key))
    return web.Response(status=status, text=text, content_type="application/json")


def sse(*events: Any, key: str, names: bool = False) -> list[bytes | float]:
    pieces: list[bytes | float] = []
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        kind = event.get("type") if names and isinstance(event, dict) else None
        head = f"event: {kind}\n" if kind else ""
        pieces += [f"{head}data: {data.replace(ESCAPED, escaped(key))}\n\n".encode(), 0.001]
    return pieces


def openai_answer(key: str, case: str) -> dict[str, Any]:
    content = f"the key is {key}, again {ESCAPED}"
    if case == "think":
        content = f"<think>I was sent {key}</think>it was {key[:30]}"
    message = {
        "role": "assistant", "content": content, "reasoning_content": f"reasoning {key}",
        "tool_calls": [{"id": key, "type": "function", "function": {
            "name": f"fn_{key}",
            "arguments": json.dumps({"token": key, "escaped": ESCAPED}),
        }}],
    }
    return {
        "id": key, "object": "chat.completion", "model": key,
        "choices": [{"index": 0, "message": message,
                     "finish_reason": key if case == "finish" else "tool_calls"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
    }


def openai_stream(key: str) -> list[Any]:
    half = len(key) // 2

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": key, "object": "chat.completion.chunk", "model": key,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    call = {"index": 0, "id": key, "type": "function",
            "function": {"name": f"fn_{key}", "arguments": '{"token": "'}}
    return [
        chunk({"role": "assistant", "reasoning_content": f"thinking of {key}"}),
        chunk({"content": f"half {key[:half]}"}),
        chunk({"content": f"{key[half:]} then {ESCAPED}"}),
        chunk({"tool_calls": [call]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": f'{key}"}}'}}]}),
        chunk({}, "tool_calls"),
        {"id": key, "object": "chat.completion.chunk", "choices": [],
         "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}},
        "[DONE]",
    ]


def anthropic_answer(key: str) -> dict[str, Any]:
    return {
        "id": key, "type": "message", "role": "assistant", "model": key,
        "content": [
            {"type": "thinking", "thinking": f"I hold {key}", "signature": "sig"},
            {"type": "text", "text": f"the key is {key}, again {ESCAPED}"},
            {"type": "tool_use", "id": key, "name": f"fn_{key}",
             "input": {"token": key, "escaped": ESCAPED}},
        ],
        "stop_reason": "tool_use", "usage": {"input_tokens": 3, "output_tokens": 4},
    }


def anthropic_stream(key: str) -> list[Any]:
    half = len(key) // 2

    def delta(index: int, kind: str, **fields: str) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": index, "delta": {"type": kind, **fields}}

    return [
        {"type": "message_start", "message": {
            "id": key, "type": "message", "role": "assistant", "model": key, "content": [],
            "usage": {"input_tokens": 3, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0,
         "content_block": {"type": "thinking", "thinking": ""}},
        delta(0, "thinking_delta", thinking=f"I hold {key}"),
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
        delta(1, "text_delta", text=f"half {key[:half]}"),
        delta(1, "text_delta", text=f"{key[half:]} then {ESCAPED}"),
        {"type": "content_block_stop", "index": 1},
        {"type": "content_block_start", "index": 2, "content_block": {
            "type": "tool_use", "id": key, "name": f"fn_{key}", "input": {}}},
        delta(2, "input_json_delta", partial_json='{"token": "' + key[:half]),
        delta(2, "input_json_delta", partial_json=key[half:] + '"}'),
        {"type": "content_block_stop", "index": 2},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
         "usage": {"output_tokens": 4}},
        {"type": "message_stop"},
    ]


def html_page(key: str) -> str:
    """An error page holding the key across the 200th and the 500th character."""
    page = "<html><head><title>502 Bad Gateway</title></head><body><p>upstream said: "
    page = page.ljust(185, "-") + key + " was refused "
    page = page.ljust(485, "-") + "Authorization: " + key
    return page.ljust(620, "-") + "</p></body></html>"


async def echo(request: web.Request, attempt: int) -> web.StreamResponse:
    """Answer the case named by the prompt with the request's own key in every field."""
    key = sent_key(request)
    body = await request.json()
    case = body["messages"][-1]["content"]
    anthropic = request.path.endswith("/messages")
    if case.startswith("html-"):  # html-<status>-<length>: the page cut short
        _, status, length = case.split("-")
        return web.Response(status=int(status), text=html_page(key)[: int(length)],
                            content_type="text/html")
    if case == "error-400":
        return json_reply({"error": {"message": f"bad key {key} ({ESCAPED})",
                                     "type": "invalid_request_error"}}, key, 400)
    if case == "error-401":
        return web.Response(status=401, text=f"Unauthorized: {key} is not valid")
    if case == "error-500":
        return web.Response(status=500, text=html_page(key), content_type="text/html")
    if case == "error-in-200":
        return json_reply({"error": {"message": f"upstream refused {key}", "code": 502}}, key)
    if body.get("stream"):
        if case == "stream-error":
            error = {"type": "error", "error": {"type": "api_error", "message": f"lost {key}"}}
            return await stream(request, *sse({"choices": [], "id": "x"}, error, key=key,
                                              names=anthropic))
        if case == "stream-bad-event":
            return await stream(request, *sse("-" * 190 + key + " not json", key=key))
        events = anthropic_stream(key) if anthropic else openai_stream(key)
        return await stream(request, *sse(*events, key=key, names=anthropic))
    return json_reply(anthropic_answer(key) if anthropic else openai_answer(key, case), key)


ANSWER_CASES = ("answer", "think", "finish", "error-400", "error-401", "error-500",
                "error-in-200", "stream-error", "stream-bad-event")


def key_pieces(key: str) -> set[str]:
    return {key[i:i + PIECE] for i in range(len(key) - PIECE + 1)}


def unescaped(text: str) -> str:
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), text)


def texts_of(path: Path) -> Iterator[str]:
    """What a file holds, as text to search: its bytes, and a Parquet file's values."""
    data = path.read_bytes()
    yield data.decode("utf-8", "replace")
    if path.suffix == ".parquet":
        yield orjson.dumps(pq.read_table(path).to_pylist(), default=str).decode()


def assert_no_piece_of(keys: tuple[str, ...], what: str, text: str) -> None:
    for candidate in (text, unescaped(text), unescaped(unescaped(text))):
        for key in keys:
            found = [piece for piece in key_pieces(key) if piece in candidate]
            assert not found, f"{what} holds {found[0]!r}, a piece of the key"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_key_echoed_in_every_field_leaves_no_12_character_piece_in_any_file_or_output(
    tmp_path: Path,
) -> None:
    env = {"ECHO_OPENAI_KEY": OPENAI_KEY, "ECHO_ANTHROPIC_KEY": ANTHROPIC_KEY}
    answers, pages = tmp_path / "answers", tmp_path / "pages"
    answers.mkdir()
    pages.mkdir()
    printed: list[str] = []
    with ReplayServer() as server:
        names = [*ANSWER_CASES, *(f"html-{status}-{n}" for status in (200, 502)
                                  for n in range(1, 601))]
        for name in names:
            server.add(name, echo)
        providers = [
            {"name": "oai", "api": "openai", "base_url": server.base_url,
             "api_key_env": "ECHO_OPENAI_KEY", "max_concurrency": 16},
            {"name": "ant", "api": "anthropic", "base_url": server.base_url,
             "api_key_env": "ECHO_ANTHROPIC_KEY", "max_concurrency": 16},
        ]
        ant = {"provider": "ant", "model": "m", "params": {"max_tokens": 64}}
        write_rows(answers / "rows.jsonl",
                   [{"id": case, "text": case} for case in ANSWER_CASES])
        jobs = [write_multi_job(answers, providers, [
            {"name": "oai", "provider": "oai", "model": "m"},
            {"name": "oai-stream", "provider": "oai", "model": "m", "stream": True},
            {"name": "ant", **ant}, {"name": "ant-stream", **ant, "stream": True},
        ], output={"path": "out", "keep_raw": True})]
        write_rows(pages / "rows.jsonl", [{"id": name, "text": name}
                                          for name in names if name.startswith("html-")])
        jobs.append(write_multi_job(pages, providers, [
            {"name": "oai", "provider": "oai", "model": "m"}, {"name": "ant", **ant},
        ]))
        for job in jobs:
            result = cli("run", str(job), "--no-progress", env=env)
            assert result.returncode == 1, result.stderr  # the error cases are recorded
            printed += [result.stdout, result.stderr]
        assert server.received["answer"][0].headers["Authorization"] == f"Bearer {OPENAI_KEY}"
        assert {seen.headers.get("x-api-key") for seen in server.received["answer"]} >= {
            ANTHROPIC_KEY}

    for folder in (answers, pages):
        out = folder / "out"
        for args in (["--to", "x.parquet"], ["--to", "x.jsonl"], ["--to", "x.csv"],
                     ["--to", "joined.jsonl", "--join-input"],
                     ["--to", "batch.jsonl", "--format", "openai-batch"]):
            args[1] = str(folder / "exports" / args[1])
            result = cli("export", str(out), *args)
            assert result.returncode == 0, result.stderr
            printed += [result.stdout, result.stderr]
        for extra in ([], ["--json"]):
            result = cli("report", str(out), *extra)
            assert result.returncode == 0, result.stderr
            printed += [result.stdout, result.stderr]

    keys = (OPENAI_KEY, ANTHROPIC_KEY)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 15  # the runs' journals, parts, exports, manifests and job copies
    for path in written:
        for text in texts_of(path):
            assert_no_piece_of(keys, str(path), text)
    for text in printed:
        assert_no_piece_of(keys, "what was printed", text)

    # The test is only as good as what it saw: every field was really echoed and kept.
    frame = batchrun.read(answers / "out").set_index(["id", "variant"])
    for variant in ("oai", "oai-stream", "ant", "ant-stream"):
        row = frame.loc[("answer", variant)]
        assert row.status == "ok", row.error_message
        assert "***" in row.content and "***" in row.reasoning and "***" in row.raw
        assert row.response_id == "***"
        call = json.loads(row.tool_calls)[0]
        assert call["id"] == "***" and call["function"]["name"] == "fn_***"
        assert "***" in call["function"]["arguments"]
    assert frame.loc[("finish", "oai")].finish_reason == "***"
    # A refused key is left pending, not recorded: its message is printed (and checked above).
    assert ("error-401", "oai") not in frame.index
    assert any("AuthenticationFailed" in text for text in printed)
    assert frame.loc[("error-in-200", "ant")].error_type == "ProviderError"
    assert frame.loc[("stream-bad-event", "oai-stream")].error_type == "MalformedResponse"
    cut = batchrun.read(pages / "out")
    assert set(cut.error_type) == {"MalformedResponse", "ServerError"}
    assert cut.error_message.str.contains(r"\*\*\*").sum() > 800


# ---------------------------------------------------------------- disk full, a size limit

FSIZE_LIMIT = 64 * 1024


def run_under_file_size_limit(job: Path, limit: int) -> subprocess.CompletedProcess[str]:
    """`batchrun run` with RLIMIT_FSIZE set: writes past `limit` bytes fail with EFBIG."""
    # SIGXFSZ would kill the process; ignored, the write returns EFBIG as a full disk would
    # (set in the child itself rather than with preexec_fn, which is unsafe with threads).
    program = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "from batchrun.cli import main\n"
        f"sys.exit(main(['run', {str(job)!r}, '--no-progress']))\n"
    )
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=180)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_write_refused_by_a_size_limit_glues_nothing_says_what_to_do_and_a_rerun_finishes(
    tmp_path: Path, mock: MockThread,
) -> None:
    n_rows = 300
    rows = [{"id": f"r{i:03d}", "text": f"item {i} " + "words " * 40, "note": "n" * 400}
            for i in range(n_rows)]
    write_rows(tmp_path / "rows.jsonl", rows)
    job = write_job(tmp_path, base_url=mock.base_url, provider={"max_concurrency": 4},
                    output={"keep_columns": ["note"], "flush_rows": 10_000,
                            "flush_seconds": 600})
    out = tmp_path / "out"

    first = run_under_file_size_limit(job, FSIZE_LIMIT)
    assert first.returncode == 4, first.stderr
    assert "internal error" not in first.stderr
    assert str(out) in first.stderr and "a file-size limit was reached" in first.stderr
    assert "safe" in first.stderr and "run the same command again" in first.stderr

    # Every line that reached a journal is whole: the reader forgives nothing but the last.
    for segment in store.list_journals(out):
        data = segment.read_bytes()
        assert len(data) <= FSIZE_LIMIT and (not data or data.endswith(b"\n"))
        for line in data.splitlines():
            assert orjson.loads(line)["status"] == "ok"
    saved = batchrun.read(out)
    assert 0 < len(saved) < n_rows
    assert saved.groupby(["id", "variant", "sample"]).size().max() == 1
    saved_ids = set(saved.id)

    second = cli("run", str(job), "--no-progress")
    assert second.returncode == 0, second.stderr
    final = batchrun.read(out)
    assert len(final) == n_rows and final.groupby(["id", "variant", "sample"]).size().max() == 1
    assert set(final.status) == {"ok"}
    answered = mock.stats_snapshot()["answered"]
    for row in rows:
        body = {"model": "mock-1", "messages": [{"role": "user", "content": row["text"]}]}
        times = answered[request_key(body)]
        # What was saved is never paid for again; only the lines the disk refused are resent.
        assert times == 1 if row["id"] in saved_ids else times in (1, 2)


# ---------------------------------------------------------------- answers too large


def big_json(size: int) -> Iterator[bytes]:
    yield b'{"id": "big", "object": "chat.completion", "choices": [{"index": 0, "message": '
    yield b'{"role": "assistant", "content": "'
    for _ in range(size // (1 << 20)):
        yield b"a" * (1 << 20)
    yield b'"}, "finish_reason": "stop"}]}'


def big_stream(size: int) -> Iterator[bytes]:
    event = b'data: {"choices": [{"index": 0, "delta": {"content": "' + b"a" * 4000 + b'"}}]}\n\n'
    for _ in range(size // len(event)):
        yield event
    yield b"data: [DONE]\n\n"


BIG = 50 * 1000 * 1000


def big_answer(shape: str, sent: list[int]) -> Any:
    async def handler(request: web.Request, attempt: int) -> web.StreamResponse:
        pieces = big_stream(BIG) if shape == "stream" else big_json(BIG)
        kind = "text/event-stream" if shape == "stream" else "application/json"
        response = web.StreamResponse(headers={"Content-Type": kind})
        if shape == "length":
            response.content_length = sum(len(p) for p in big_json(BIG))
        await response.prepare(request)
        try:
            for piece in pieces:
                await response.write(piece)
                sent[0] += len(piece)
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client hung up: it stopped reading at its cap
        return response
    return handler


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("shape", ["length", "chunked", "stream"])
def test_a_50_mb_answer_is_a_final_response_too_large_error_and_is_never_read_whole(
    tmp_path: Path, shape: str
) -> None:
    sent = [0]
    with ReplayServer({"big": big_answer(shape, sent)}) as server:
        write_rows(tmp_path / "rows.jsonl", [{"id": "a", "text": "big"}])
        job = write_job(tmp_path, base_url=server.base_url, retry={"max_attempts": 3},
                        variants=[{"name": "v", "model": "m", "stream": shape == "stream"}])
        # The child reports its own peak (VmHWM): what it took, not what a forked copy of
        # this test process held before it started.
        program = (
            "import sys\n"
            "from batchrun.cli import main\n"
            f"code = main(['run', {str(job)!r}, '--no-progress'])\n"
            "peak = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
            "print(peak.split()[1], file=sys.stderr)\n"
            "sys.exit(code)\n"
        )
        result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                                timeout=180)
        assert server.requests["big"] == 1  # final: not asked again
    assert result.returncode == 1, result.stderr
    row = batchrun.read(tmp_path / "out").iloc[0]
    assert (row.status, row.error_type, row.attempts) == ("error", "ResponseTooLarge", 1)
    assert "max_response_bytes = 33,554,432" in row.error_message
    if shape == "length":
        assert f"{sum(len(p) for p in big_json(BIG)):,} bytes" in row.error_message
    else:
        assert "at least 33," in row.error_message and sent[0] < BIG
    # Read whole, a 50 MB answer took 656 MB; capped, the process stays near its usual size.
    peak_kib = int(result.stderr.split()[-1])
    assert peak_kib * 1024 < 320 * 1000 * 1000


def test_max_response_bytes_is_per_provider_and_checked_when_the_job_loads(
    tmp_path: Path, mock: MockThread
) -> None:
    write_rows(tmp_path / "rows.jsonl", [{"id": "a", "text": "hello " * 50}])
    job = write_job(tmp_path, base_url=mock.base_url, provider={"max_response_bytes": 100})
    summary = batchrun.run(job)
    assert (summary.ok, summary.error) == (0, 1)
    row = batchrun.read(tmp_path / "out").iloc[0]
    assert row.error_type == "ResponseTooLarge" and "max_response_bytes = 100;" in row.error_message
    assert Job.from_toml(job).providers[0].max_response_bytes == 100
    write_job(tmp_path, base_url=mock.base_url, provider={"max_response_bytes": 0})
    with pytest.raises(JobError, match='"max_response_bytes" must be an integer >= 1'):
        Job.from_toml(job)


# ---------------------------------------------------------------- redirects


def redirect(status: int, to: str) -> Any:
    async def handler(request: web.Request, attempt: int) -> web.StreamResponse:
        if request.path.startswith("/moved/"):
            return web.json_response({
                "id": "c1", "object": "chat.completion", "model": "m",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "moved ok"}}]})
        return web.Response(status=status, headers={"Location": to.format(
            port=request.url.port)})
    return handler


def test_redirects_that_would_turn_the_post_into_a_get_or_leave_the_origin_are_final_errors(
    tmp_path: Path,
) -> None:
    cases = {
        "301": redirect(301, "/moved/v1/chat/completions"),
        "302": redirect(302, "/moved/v1/chat/completions"),
        "303": redirect(303, "/moved/v1/chat/completions"),
        "307-same-origin": redirect(307, "/moved/v1/chat/completions"),
        "308-same-origin": redirect(308, "http://127.0.0.1:{port}/moved/v1/chat/completions"),
        "308-other-host": redirect(308, "http://localhost:{port}/moved/v1/chat/completions"),
        "307-loop": redirect(307, "/v1/chat/completions"),
    }
    with ReplayServer(cases) as server:
        write_rows(tmp_path / "rows.jsonl", [{"id": name, "text": name} for name in cases])
        job = write_job(tmp_path, base_url=server.base_url, retry={"max_attempts": 3})
        batchrun.run(job)
        requests = dict(server.requests)
        paths = {name: [seen.path for seen in server.received[name]] for name in cases}
    frame = batchrun.read(tmp_path / "out").set_index("id")
    for name in ("307-same-origin", "308-same-origin"):
        assert frame.loc[name, "content"] == "moved ok"
        # The same POST, body and all, went on to the new address.
        assert paths[name] == ["/v1/chat/completions", "/moved/v1/chat/completions"]
    for name in ("301", "302", "303", "308-other-host"):
        row = frame.loc[name]
        assert (row.status, row.error_type, row.attempts) == ("error", "Redirected", 1)
        assert requests[name] == 1  # nothing followed, nothing retried
        assert "/moved/v1/chat/completions" in row.error_message
    assert "turn the POST into a GET" in frame.loc["302", "error_message"]
    assert "another origin" in frame.loc["308-other-host", "error_message"]
    assert "more than 5 redirects" in frame.loc["307-loop", "error_message"]


# ---------------------------------------------------------------- base_url


@pytest.mark.parametrize(("url", "says"), [
    ("http://127.0.0.1:99999/v1", "Port out of range"),
    ("http://api.example.com:80x/v1", "is not a valid URL"),
    ("http:///v1", "has no valid host name"),
    ("http://api example.com/v1", "has no valid host name"),
    ("https://api.example.com/v1?key=1", "must not have a ?query"),
    ("https://user:secret@api.example.com/v1", "must not hold a user or password"),
    ("ftp://api.example.com/v1", "an http:// or https:// URL"),
])
def test_a_malformed_base_url_is_refused_when_the_job_loads(
    tmp_path: Path, url: str, says: str
) -> None:
    write_rows(tmp_path / "rows.jsonl", [{"id": "a", "text": "hi"}])
    job = write_job(tmp_path, base_url=url)
    result = cli("validate", str(job))
    assert result.returncode == 2
    assert '"base_url"' in result.stderr and says in result.stderr
    assert "secret" not in result.stderr


# ---------------------------------------------------------------- prompts, ids, empty input


@pytest.mark.parametrize(("row", "says"), [
    ({"id": "b", "text": ["x", "y"]}, "prompt column 'text' is a list (['x', 'y']), not text"),
    ({"id": "b", "text": 42}, "prompt column 'text' is a number (42), not text"),
    ({"id": "b", "text": {"a": 1}}, "prompt column 'text' is an object"),
    ({"id": True, "text": "hi"}, "id 'id' is a boolean (True), not a string or an integer"),
    ({"id": 1.5, "text": "hi"}, "id 'id' is a number (1.5), not a string or an integer"),
])
def test_prompts_that_are_not_text_and_ids_that_are_not_strings_or_integers_are_refused(
    tmp_path: Path, mock: MockThread, row: dict[str, Any], says: str
) -> None:
    write_rows(tmp_path / "rows.jsonl", [{"id": "a", "text": "fine"}, row])
    job = write_job(tmp_path, base_url=mock.base_url)
    for command in ("validate", "run"):
        result = cli(command, str(job))
        assert result.returncode == 2, result.stderr
        assert f"rows.jsonl:2: {says}" in result.stderr
    assert mock.stats_snapshot()["requests"] == 0


def test_a_list_in_a_parquet_prompt_column_is_refused_and_a_messages_column_is_fine(
    tmp_path: Path, mock: MockThread
) -> None:
    messages = [[{"role": "user", "content": "hi"}]] * 2
    pq.write_table(pa.table({"id": [1, 2], "text": [["x"], ["y"]], "chat": messages}),
                   tmp_path / "rows.parquet")
    job = write_job(tmp_path, base_url=mock.base_url, input={"path": "rows.parquet"})
    result = cli("validate", str(job))
    assert result.returncode == 2
    assert "rows.parquet row 0: prompt column 'text' is a list" in result.stderr
    assert "[input] messages" in result.stderr
    job = write_job(tmp_path, base_url=mock.base_url,
                    input={"path": "rows.parquet", "prompt": None, "messages": "chat"})
    text = job.read_text().replace("prompt = null\n", "")
    job.write_text(text)
    assert batchrun.run(job).ok == 2
    assert sorted(batchrun.read(tmp_path / "out").id) == ["1", "2"]  # integers are fine ids


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_an_empty_input_says_it_has_no_rows_and_exits_2(
    tmp_path: Path, mock: MockThread, content: str
) -> None:
    (tmp_path / "rows.jsonl").write_text(content)
    job = write_job(tmp_path, base_url=mock.base_url)
    for command in ("validate", "run", "estimate"):
        result = cli(command, str(job))
        assert result.returncode == 2, result.stderr
        assert "the input has no rows (rows.jsonl holds none)" in result.stderr
    assert mock.stats_snapshot()["requests"] == 0
    assert not (tmp_path / "out" / store.MANIFEST).exists()


# ---------------------------------------------------------------- Ctrl-C, hung provider


def test_ctrl_c_with_a_hung_provider_says_what_it_waits_for_and_a_second_one_stops_at_once(
    tmp_path: Path,
) -> None:
    async def hang(request: web.Request, attempt: int) -> web.StreamResponse:
        await asyncio.Event().wait()  # never answers; the server's stop cancels it
        raise AssertionError("unreachable")

    with ReplayServer({"hang": hang}) as server:
        write_rows(tmp_path / "rows.jsonl", [{"id": f"r{i}", "text": "hang"} for i in range(2)])
        job = write_job(tmp_path, base_url=server.base_url, provider={"max_concurrency": 2})
        process = subprocess.Popen(
            [sys.executable, "-m", "batchrun", "run", str(job), "--no-progress"],
            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert process.stderr is not None
        deadline = time.monotonic() + 60
        while server.requests["hang"] < 2:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        said = next((line for line in process.stderr if "interrupted" in line), "")
        assert "interrupted: sending nothing more; waiting up to 10s for 2 requests in " \
            "progress (2 on mock) to finish; press Ctrl-C again to stop at once" in said
        process.send_signal(signal.SIGINT)
        rest = process.communicate(timeout=30)[1]
        assert process.returncode == 130, rest
        assert "resume" in rest
    assert server.requests["hang"] == 2


# ---------------------------------------------------------------- estimate, report


def test_estimate_sample_against_a_live_run_is_refused_before_it_says_it_sends(
    tmp_path: Path,
) -> None:
    with MockThread(MockConfig(latency_ms=300)) as server:
        write_rows(tmp_path / "rows.jsonl", [{"id": f"r{i}", "text": f"t{i}"} for i in range(40)])
        job = write_job(tmp_path, base_url=server.base_url, provider={"max_concurrency": 2})
        live = subprocess.Popen([sys.executable, "-m", "batchrun", "run", str(job),
                                 "--no-progress"], stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while server.stats_snapshot()["requests"] == 0:
                assert live.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
            refused = cli("estimate", str(job), "--sample", "3")
        finally:
            live.send_signal(signal.SIGINT)
            live.wait(timeout=60)
        assert refused.returncode == 2
        assert "another batchrun run" in refused.stderr and "for real" not in refused.stderr
        allowed = cli("estimate", str(job), "--sample", "3")
    assert allowed.returncode == 0, allowed.stderr
    assert "sending 3 rows x 1 requests for real" in allowed.stderr


def test_report_into_a_closed_pipe_exits_quietly(tmp_path: Path, mock: MockThread) -> None:
    write_rows(tmp_path / "rows.jsonl", [{"id": f"r{i}", "text": f"t{i}"} for i in range(3)])
    batchrun.run(write_job(tmp_path, base_url=mock.base_url))
    read_end, write_end = os.pipe()
    os.close(read_end)  # like `| head` that has already read its lines
    try:
        result = subprocess.run([sys.executable, "-m", "batchrun", "report", str(tmp_path / "out")],
                                stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (0, "")


def test_report_of_a_run_with_a_limit_counts_against_the_limit_and_says_so(
    tmp_path: Path, mock: MockThread
) -> None:
    write_rows(tmp_path / "rows.jsonl", [{"id": f"r{i}", "text": f"t{i}"} for i in range(30)])
    job = write_job(tmp_path, base_url=mock.base_url)
    assert cli("run", str(job), "--limit", "15", "--no-progress").returncode == 0
    text = cli("report", str(tmp_path / "out")).stdout
    assert "15 ok, 0 error, 0 pending of 15 (the run's --limit 15: the first 15 of 30 input " \
        "rows; run without --limit for the rest)" in text
    data = json.loads(cli("report", str(tmp_path / "out"), "--json").stdout)
    assert (data["rows"]["total"], data["limit"], data["input_rows"]) == (15, 15, 30)
    assert cli("run", str(job), "--no-progress").returncode == 0
    data = json.loads(cli("report", str(tmp_path / "out"), "--json").stdout)
    assert (data["rows"]["total"], data["rows"]["ok"], data["limit"]) == (30, 30, None)

