"""Images in prompts, end to end: real files, real runs against a loopback server, the real CLI."""

from __future__ import annotations

import base64
import io
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiohttp import web
from PIL import Image

import batchrun
from batchrun.errors import InputError, JobError
from batchrun.estimate import estimate_offline
from batchrun.job import Job
from batchrun.sources import iter_rows, requests_for_row
from batchrun.sources.images import image_tokens, sniff
from tests.conftest import toml_value, write_rows
from tests.replay import CASES_DIR, ReplayServer

# One canned answer per wire format, as each API documents it (the conformance cases).
ANSWERS = {
    "/chat/completions": "openai_plain",
    "/messages": "anthropic_text",
    "/responses": "responses_text_with_reasoning_summary",
}
APIS = ("openai", "anthropic", "responses")


def picture(fmt: str, size: tuple[int, int], seed: int) -> bytes:
    """A picture of seeded noise, so that every file's bytes are its own."""
    rng = random.Random(seed)
    pixels = bytes(rng.randrange(256) for _ in range(size[0] * size[1] * 3))
    buffer = io.BytesIO()
    Image.frombytes("RGB", size, pixels).save(buffer, format=fmt)
    return buffer.getvalue()


async def answer(request: web.Request, attempt: int) -> web.Response:
    """The documented answer of whichever format was asked."""
    name = next(case for path, case in ANSWERS.items() if request.path.endswith(path))
    body = orjson.loads((CASES_DIR / f"{name}.json").read_bytes())["body"]
    return web.json_response(body)


@pytest.fixture
def server() -> Iterator[ReplayServer]:
    with ReplayServer() as replay:
        yield replay


def write_job(folder: Path, providers: list[dict[str, Any]], variants: list[dict[str, Any]],
              input: dict[str, Any]) -> Path:
    """A job file with several providers (tests/conftest's writer has one)."""
    lines = ['name = "images"', "", "[input]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in input.items()]
    lines += ["", "[output]", 'path = "out"', "flush_rows = 10", "flush_seconds = 1",
              "", "[retry]", "max_attempts = 2", "backoff_initial_s = 0.01", "backoff_max_s = 0.05"]
    for table, items in (("provider", providers), ("variant", variants)):
        for item in items:
            lines += ["", f"[[{table}]]", *(f"{k} = {toml_value(v)}" for k, v in item.items())]
    path = folder / "job.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def sweep_job(folder: Path, base_url: str, input: dict[str, Any]) -> Path:
    """One variant per wire format, all on the same rows."""
    providers = [{"name": api, "api": api, "base_url": base_url} for api in APIS]
    variants = [{"name": api, "provider": api, "model": "m", "params": {"max_tokens": 50}}
                for api in APIS]
    return write_job(folder, providers, variants, input)


def sent_images(body: dict[str, Any]) -> list[tuple[str, bytes | str]]:
    """(media type, bytes) of each image a body carries, or ("url", url), in its own format."""
    found: list[tuple[str, bytes | str]] = []
    for message in body.get("messages") or body.get("input") or []:
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            kind = part.get("type")
            if kind in ("image_url", "input_image"):
                url = part["image_url"]["url"] if kind == "image_url" else part["image_url"]
                if url.startswith("data:"):
                    header, _, data = url.partition(",")
                    assert header.endswith(";base64")
                    found.append((header[5:].split(";")[0], base64.b64decode(data)))
                else:
                    found.append(("url", url))
            elif kind == "image":
                source = part["source"]
                if source["type"] == "base64":
                    found.append((source["media_type"], base64.b64decode(source["data"])))
                else:
                    assert source["type"] == "url"
                    found.append(("url", source["url"]))
    return found


def test_image_bytes_round_trip_exactly_in_the_bodies_of_every_format(
    tmp_path: Path, server: ReplayServer
) -> None:
    # The input sits in its own folder: image paths are relative to it, not to the job file.
    data = tmp_path / "data"
    (data / "imgs").mkdir(parents=True)
    png = picture("PNG", (40, 30), seed=1)
    jpeg = picture("JPEG", (33, 21), seed=2)
    (data / "imgs" / "a.png").write_bytes(png)
    (data / "imgs" / "b.jpg").write_bytes(jpeg)
    inline = picture("GIF", (9, 7), seed=3)
    inline_url = "data:image/gif;base64," + base64.b64encode(inline).decode()
    web_url = "https://example.com/cat.webp"
    rows = [
        {"id": "one", "text": "describe one", "img": "imgs/a.png"},
        {"id": "many", "text": "describe many", "img": ["imgs/b.jpg", inline_url, web_url]},
        {"id": "none", "text": "describe none", "img": None},
    ]
    write_rows(data / "rows.jsonl", rows)
    for row in rows:
        server.add(row["text"], answer)
    job = sweep_job(tmp_path, server.base_url,
                    {"path": "data/rows.jsonl", "id": "id", "prompt": "text", "images": "img"})

    summary = batchrun.run(job)

    assert (summary.total, summary.ok) == (9, 9)
    expected = {
        "describe one": [("image/png", png)],
        "describe many": [("image/jpeg", jpeg), ("image/gif", inline), ("url", web_url)],
        "describe none": [],
    }
    for text, images in expected.items():
        received = sorted(server.received[text], key=lambda seen: seen.path)
        assert [seen.path for seen in received] == ["/v1/chat/completions", "/v1/messages",
                                                    "/v1/responses"]
        for seen in received:
            assert sent_images(seen.body) == images, seen.path
    # The text stays the first part of the same user message, in each format's shape.
    openai, anthropic, responses = sorted(server.received["describe one"],
                                          key=lambda seen: seen.path)
    assert openai.body["messages"][0]["content"][0] == {"type": "text", "text": "describe one"}
    assert anthropic.body["messages"][0]["content"][0] == {"type": "text", "text": "describe one"}
    assert responses.body["input"][0]["content"][0] == {"type": "input_text",
                                                       "text": "describe one"}
    # A row without images is sent as plain text, exactly as before images existed.
    assert sorted(server.received["describe none"], key=lambda seen: seen.path)[0].body[
        "messages"] == [{"role": "user", "content": "describe none"}]


def test_image_url_parts_of_a_messages_column_are_sent_and_translated(
    tmp_path: Path, server: ReplayServer
) -> None:
    png = picture("PNG", (12, 12), seed=4)
    (tmp_path / "p.png").write_bytes(png)
    conversation = [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": [
            {"type": "text", "text": "which colour"},
            {"type": "image_url", "image_url": {"url": "p.png", "detail": "low"}},
        ]},
    ]
    write_rows(tmp_path / "rows.jsonl", [{"id": "c", "m": conversation}])
    server.add("which colour", answer)
    job = sweep_job(tmp_path, server.base_url,
                    {"path": "rows.jsonl", "id": "id", "messages": "m"})

    assert batchrun.run(job).ok == 3

    received = {seen.path: seen.body for seen in server.received["which colour"]}
    assert all(sent_images(body) == [("image/png", png)] for body in received.values())
    openai = received["/v1/chat/completions"]["messages"][1]["content"][1]
    assert openai["image_url"]["detail"] == "low"
    assert received["/v1/responses"]["input"][1]["content"][1]["detail"] == "low"
    anthropic = received["/v1/messages"]
    assert anthropic["system"] == "Answer in one word."
    assert anthropic["messages"][0]["content"][1]["type"] == "image"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "batchrun", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.parametrize("command", ["run", "validate"])
def test_a_missing_image_is_exit_2_naming_the_row_and_the_path_before_anything_is_sent(
    tmp_path: Path, server: ReplayServer, command: str
) -> None:
    (tmp_path / "ok.png").write_bytes(picture("PNG", (4, 4), seed=5))
    write_rows(tmp_path / "rows.jsonl", [
        {"id": "a", "text": "fine", "img": "ok.png"},
        {"id": "b", "text": "broken", "img": ["ok.png", "gone/missing.png"]},
    ])
    server.add("fine", answer)
    server.add("broken", answer)
    job = sweep_job(tmp_path, server.base_url,
                    {"path": "rows.jsonl", "id": "id", "prompt": "text", "images": "img"})

    result = cli(command, str(job), *(["--no-progress"] if command == "run" else []),
                 cwd=tmp_path)

    assert result.returncode == 2, result.stderr
    assert "rows.jsonl:2" in result.stderr
    assert "gone/missing.png" in result.stderr
    assert "no such image file" in result.stderr
    assert sum(server.requests.values()) == 0
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_not_an_image_and_a_broken_data_url_are_refused_by_the_scan(
    tmp_path: Path
) -> None:
    (tmp_path / "notes.png").write_text("not a picture")
    write_rows(tmp_path / "rows.jsonl", [{"id": "a", "text": "t", "img": "notes.png"}])
    job = sweep_job(tmp_path, "http://127.0.0.1:9/v1",
                    {"path": "rows.jsonl", "id": "id", "prompt": "text", "images": "img"})
    result = cli("validate", str(job), cwd=tmp_path)
    assert result.returncode == 2
    assert "rows.jsonl:1" in result.stderr and "not a PNG, JPEG, GIF or WebP" in result.stderr

    write_rows(tmp_path / "rows.jsonl", [{"id": "a", "text": "t", "img": "data:image/png,raw"}])
    result = cli("validate", str(job), cwd=tmp_path)
    assert result.returncode == 2 and "must be base64" in result.stderr


def test_an_images_cell_that_is_not_a_path_or_a_list_of_them_names_the_row(tmp_path: Path) -> None:
    write_rows(tmp_path / "rows.jsonl", [{"id": "a", "text": "t", "img": 7}])
    job = Job.from_toml(sweep_job(tmp_path, "http://127.0.0.1:9/v1", {
        "path": "rows.jsonl", "id": "id", "prompt": "text", "images": "img"}))
    with pytest.raises(InputError, match=r"rows\.jsonl:1: \[input\] images column 'img' holds 7"):
        list(iter_rows(job.input, job.base_dir))


def test_images_need_a_text_source_and_do_not_apply_to_batch_bodies(tmp_path: Path) -> None:
    def load(input: dict[str, Any]) -> Job:
        return Job.from_toml(sweep_job(tmp_path, "http://127.0.0.1:9/v1", input))

    with pytest.raises(JobError, match=r'"images" are added to the user message'):
        load({"path": "rows.jsonl", "images": "img"})
    with pytest.raises(JobError, match=r'"images" does not apply to format = "openai-batch"'):
        load({"path": "rows.jsonl", "format": "openai-batch", "images": "img"})
    line = {"custom_id": "x", "body": {"messages": [{"role": "user", "content": "hi"}]}}
    write_rows(tmp_path / "rows.jsonl", [line])
    job = load({"path": "rows.jsonl", "images": "img", "prompt": "text"})
    with pytest.raises(InputError, match=r"\[input\] images does not apply to OpenAI batch"):
        list(iter_rows(job.input, job.base_dir))


def test_rows_hold_image_paths_and_files_are_read_only_when_their_requests_are_built(
    tmp_path: Path
) -> None:
    raw = picture("PNG", (8, 8), seed=6)
    (tmp_path / "a.png").write_bytes(raw)
    write_rows(tmp_path / "rows.jsonl", [{"id": "a", "text": "t", "img": "a.png"}])
    job = Job.from_toml(sweep_job(tmp_path, "http://127.0.0.1:9/v1", {
        "path": "rows.jsonl", "id": "id", "prompt": "text", "images": "img"}))
    [[row]] = list(iter_rows(job.input, job.base_dir))
    assert row.messages == [{"role": "user", "content": [
        {"type": "text", "text": "t"}, {"type": "image_url", "image_url": {"url": "a.png"}}]}]
    families = {p.name: p.api for p in job.providers}
    requests = list(requests_for_row(row, job.variants, families))
    url = requests[0].body["messages"][0]["content"][1]["image_url"]["url"]
    assert base64.b64decode(url.split(",", 1)[1]) == raw
    # Every variant shares the one encoded copy of the row's image.
    assert all(r.body["messages"] is requests[0].body["messages"] for r in requests)
    # A file gone by the time its request is built is an input error naming row and path.
    (tmp_path / "a.png").unlink()
    with pytest.raises(InputError, match=r"rows\.jsonl:1: image 'a\.png': no such image file"):
        list(requests_for_row(row, job.variants, families))


def test_a_parquet_list_column_of_images_is_read(tmp_path: Path) -> None:
    raw = picture("WEBP", (16, 9), seed=7)
    (tmp_path / "w.webp").write_bytes(raw)
    pq.write_table(pa.Table.from_pylist([
        {"id": "a", "text": "t", "img": ["w.webp", "w.webp"]},
        {"id": "b", "text": "u", "img": None},
    ]), tmp_path / "rows.parquet")
    job = Job.from_toml(sweep_job(tmp_path, "http://127.0.0.1:9/v1", {
        "path": "rows.parquet", "id": "id", "prompt": "text", "images": "img"}))
    rows = [row for batch in iter_rows(job.input, job.base_dir) for row in batch]
    families = {p.name: p.api for p in job.providers}
    body = next(requests_for_row(rows[0], job.variants, families)).body
    assert sent_images(body) == [("image/webp", raw), ("image/webp", raw)]
    assert rows[1].messages == [{"role": "user", "content": "u"}]


def test_prompt_token_estimates_add_each_familys_image_tokens(tmp_path: Path) -> None:
    # 1024 x 1024: OpenAI's tiles give 85 + 4 x 170 = 765; Anthropic's area rule 1,399.
    (tmp_path / "big.png").write_bytes(picture("PNG", (1024, 1024), seed=8))
    info = sniff((tmp_path / "big.png").read_bytes())
    assert info is not None
    assert (image_tokens(info, "openai"), image_tokens(info, "anthropic")) == (765, 1399)
    rows = [{"id": f"r{i}", "text": f"row {i}", "img": ["big.png"] * (i % 2 + 1)}
            for i in range(5)]
    write_rows(tmp_path / "rows.jsonl", rows)
    images = 3 * 1 + 2 * 2  # rows 0, 2, 4 carry one image, rows 1 and 3 two
    job = Job.from_toml(sweep_job(tmp_path, "http://127.0.0.1:9/v1", {
        "path": "rows.jsonl", "id": "id", "prompt": "text", "images": "img"}))
    with_images_estimate = estimate_offline(job)
    text_estimate = estimate_offline(sweep_job(
        tmp_path, "http://127.0.0.1:9/v1", {"path": "rows.jsonl", "id": "id", "prompt": "text"}))

    added = {
        v.name: v.prompt_tokens - t.prompt_tokens
        for v, t in zip(with_images_estimate.variants, text_estimate.variants, strict=True)
    }
    assert added == {"openai": images * 765, "anthropic": images * 1399,
                     "responses": images * 765}
    # The same numbers are what a run reserves against tokens/min and counts in the budget.
    [batch] = list(iter_rows(job.input, job.base_dir))
    families = {p.name: p.api for p in job.providers}
    first = {r.variant: r.prompt_tokens_est for r in requests_for_row(batch[0], job.variants,
                                                                          families)}
    assert first["anthropic"] - first["openai"] == 1399 - 765


def test_a_parquet_messages_column_with_image_parts_sends_no_null_fields(tmp_path: Path) -> None:
    raw = picture("PNG", (3, 3), seed=9)
    (tmp_path / "p.png").write_bytes(raw)
    # Parquet stores the parts as structs, so each part gets every field, null where it had none.
    pq.write_table(pa.Table.from_pylist([{"id": "a", "m": [{"role": "user", "content": [
        {"type": "text", "text": "look", "image_url": None},
        {"type": "image_url", "text": None, "image_url": {"url": "p.png", "detail": None}},
    ]}]}]), tmp_path / "rows.parquet")
    job = Job.from_toml(sweep_job(tmp_path, "http://127.0.0.1:9/v1", {
        "path": "rows.parquet", "id": "id", "messages": "m"}))
    [[row]] = list(iter_rows(job.input, job.base_dir))
    families = {p.name: p.api for p in job.providers}
    body = next(requests_for_row(row, job.variants, families)).body
    text, image = body["messages"][0]["content"]
    assert text == {"type": "text", "text": "look"}
    assert image == {"type": "image_url", "image_url": {
        "url": "data:image/png;base64," + base64.b64encode(raw).decode()}}
