"""The mock's batch APIs: OpenAI Files + Batch, Anthropic Message Batches, through the real SDKs.

Every test runs a real mock on loopback with batches of a fraction of a second; the official
`openai` and `anthropic` clients must create, poll, list, cancel and read results from it, and
each injected batch failure must look as the real API's does.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import aiohttp
import anthropic
import openai
import pytest
from openai.types.chat import ChatCompletion

from batchrun import cli
from batchrun.errors import UsageError
from batchrun.mock import MockConfig, MockThread, expected_content
from batchrun.mock.batch_routes import match

T = TypeVar("T")
OPENAI_DONE = {"completed", "failed", "expired", "cancelled"}
MakeMock = Callable[..., MockThread]


@pytest.fixture
def make_mock() -> Iterator[MakeMock]:
    """Start mocks with the given MockConfig fields (batches of 0.2 s unless told)."""
    started: list[MockThread] = []

    def start(**fields: Any) -> MockThread:
        thread = MockThread(MockConfig(**{"batch_seconds": 0.2, **fields}))
        thread.__enter__()
        started.append(thread)
        return thread

    yield start
    for thread in started:
        thread.__exit__(None, None, None)


# One client per SDK for the module: building one costs a tenth of a second (its SSL context),
# and `copy` points it at each test's mock while sharing the connection pool.
_ROOTS: dict[str, Any] = {}


@pytest.fixture(scope="module", autouse=True)
def sdk_clients() -> Iterator[None]:
    _ROOTS["openai"] = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="-",
                                     max_retries=0)
    _ROOTS["anthropic"] = anthropic.Anthropic(base_url="http://127.0.0.1:9", api_key="-",
                                              max_retries=0)
    yield
    for client in _ROOTS.values():
        client.close()
    _ROOTS.clear()


def oai(mock: MockThread, key: str = "test") -> openai.OpenAI:
    client: openai.OpenAI = _ROOTS["openai"].copy(base_url=mock.base_url, api_key=key)
    return client


def claude(mock: MockThread, key: str = "test") -> anthropic.Anthropic:
    client: anthropic.Anthropic = _ROOTS["anthropic"].copy(
        base_url=mock.base_url.removesuffix("/v1"), api_key=key)
    return client


def chat_body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "mock-1", "messages": [{"role": "user", "content": text}], **extra}


def line(custom_id: str, body: dict[str, Any], url: str = "/v1/chat/completions") -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def upload(client: openai.OpenAI, lines: list[dict[str, Any]], name: str = "in.jsonl") -> str:
    content = "".join(json.dumps(obj) + "\n" for obj in lines).encode()
    return client.files.create(file=(name, io.BytesIO(content)), purpose="batch").id


def submit(client: openai.OpenAI, lines: list[dict[str, Any]],
           endpoint: str = "/v1/chat/completions") -> str:
    file_id = upload(client, lines)
    return client.batches.create(input_file_id=file_id, endpoint=endpoint,  # type: ignore[arg-type]
                                 completion_window="24h").id


def reviews(count: int, prefix: str = "r") -> list[dict[str, Any]]:
    return [line(f"{prefix}{i}", chat_body(f"review number {i}")) for i in range(count)]


def until(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 3.0) -> T:
    """Poll `read` every 20 ms until `done` says so."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def finished(client: openai.OpenAI, batch_id: str) -> Any:
    batch = until(lambda: client.batches.retrieve(batch_id), lambda b: b.status in OPENAI_DONE)
    assert batch.status in OPENAI_DONE
    return batch


def ended(client: anthropic.Anthropic, batch_id: str) -> Any:
    batch = until(lambda: client.messages.batches.retrieve(batch_id),
                  lambda b: b.processing_status == "ended")
    assert batch.processing_status == "ended"
    return batch


def jsonl(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    return [json.loads(x) for x in client.files.content(file_id).text.splitlines()]


# --- OpenAI through the official SDK ----------------------------------------------------------


def test_openai_sdk_runs_a_batch_whose_answers_equal_the_online_ones(make_mock: MakeMock) -> None:
    mock = make_mock(batch_seconds=0.3)
    client = oai(mock)
    lines = reviews(4)
    file_id = upload(client, lines)
    stored = client.files.retrieve(file_id)
    assert (stored.purpose, stored.filename, stored.object) == ("batch", "in.jsonl", "file")
    created = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                    completion_window="24h", metadata={"job": "t"})
    assert created.status == "validating" and created.request_counts is not None
    assert created.request_counts.total == 0 and created.metadata == {"job": "t"}
    running = until(lambda: client.batches.retrieve(created.id),
                    lambda b: b.request_counts is not None and b.request_counts.completed > 0)
    assert running.status == "in_progress" and running.in_progress_at is not None
    assert running.request_counts is not None and running.request_counts.total == 4
    batch = finished(client, created.id)
    assert batch.status == "completed" and batch.error_file_id is None
    assert batch.request_counts is not None and batch.request_counts.completed == 4
    assert batch.completed_at and batch.finalizing_at and batch.model == "mock-1"
    assert batch.usage is not None and batch.usage.total_tokens > 0
    output = jsonl(client, batch.output_file_id)
    assert [o["custom_id"] for o in output] == ["r0", "r1", "r2", "r3"]
    for out, sent in zip(output, lines, strict=True):
        assert out["error"] is None and out["id"].startswith("batch_req_")
        assert out["response"]["status_code"] == 200 and out["response"]["request_id"]
        online = client.chat.completions.with_raw_response.create(**sent["body"]).http_response
        answer, same = out["response"]["body"], online.json()
        assert answer["choices"][0]["message"]["content"] == expected_content(sent["body"])
        assert {k: v for k, v in answer.items() if k not in ("id", "created")} == {
            k: v for k, v in same.items() if k not in ("id", "created")}
        assert ChatCompletion.model_validate(answer).usage is not None  # the SDK's own type
    assert client.files.retrieve(batch.output_file_id).purpose == "batch_output"
    assert mock.stats_snapshot()["batch_lines_billed"] == 4


def test_openai_responses_batch_answers_as_the_online_route(make_mock: MakeMock) -> None:
    mock = make_mock(reasoning="field")
    client = oai(mock)
    body = {"model": "mock-reasoner-1", "input": "Is this good?", "max_output_tokens": 400}
    batch = finished(client, submit(client, [line("a", body, "/v1/responses")], "/v1/responses"))
    answer = jsonl(client, batch.output_file_id)[0]["response"]["body"]
    online = client.responses.with_raw_response.create(**body).http_response.json()
    assert answer["object"] == "response" and answer["usage"] == online["usage"]
    assert [i["type"] for i in answer["output"]] == ["reasoning", "message"]
    assert answer["output"][1]["content"][0]["text"] == online["output"][1]["content"][0]["text"]


def test_openai_sdk_lists_newest_first_with_cursors_and_cancels(make_mock: MakeMock) -> None:
    mock = make_mock(batch_seconds=0.5)
    client = oai(mock)
    ids = [submit(client, reviews(10, prefix=f"b{n}-")) for n in range(3)]
    page = client.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2] and page.has_more is True
    assert [b.id for b in client.batches.list(limit=2, after=ids[1]).data] == [ids[0]]
    assert [b.id for b in client.batches.list(limit=1)] == ids[::-1]  # auto-paginated
    until(lambda: client.batches.retrieve(ids[0]),
          lambda b: b.request_counts is not None and b.request_counts.completed >= 2)
    cancelling = client.batches.cancel(ids[0])
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    assert client.batches.cancel(ids[0]).status == "cancelling"  # again: no change
    batch = finished(client, ids[0])
    assert batch.status == "cancelled" and batch.cancelled_at is not None
    assert batch.request_counts is not None
    done = batch.request_counts.completed
    assert 2 <= done < 10 and len(jsonl(client, batch.output_file_id)) == done
    errors = jsonl(client, batch.error_file_id)
    assert len(errors) == 10 - done and errors[0]["response"] is None
    assert errors[0]["error"]["code"] == "batch_cancelled"
    with pytest.raises(openai.ConflictError, match="Cannot cancel a batch with status"):
        client.batches.cancel(ids[0])
    assert mock.stats_snapshot()["batch_jobs"][ids[0]] == {
        "api": "openai", "lines": 10, "billed": done, "status": "cancelled"}


def test_openai_create_and_upload_refusals_have_the_real_shapes(make_mock: MakeMock) -> None:
    client = oai(make_mock())
    file_id = upload(client, reviews(1))
    with pytest.raises(openai.BadRequestError) as window:
        client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                              completion_window="1h")  # type: ignore[arg-type]
    assert window.value.code == "invalid_value" and window.value.param == "completion_window"
    assert "Supported values are: '24h'" in window.value.message
    with pytest.raises(openai.BadRequestError) as endpoint:
        client.batches.create(input_file_id=file_id, endpoint="/v1/embeddings",
                              completion_window="24h")
    assert endpoint.value.param == "endpoint"
    with pytest.raises(openai.BadRequestError) as metadata:
        client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                              completion_window="24h", metadata={"k": "v" * 513})
    assert metadata.value.param == "metadata"
    with pytest.raises(openai.NotFoundError, match="No such File object"):
        client.batches.create(input_file_id="file-nope", endpoint="/v1/chat/completions",
                              completion_window="24h")
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")
    with pytest.raises(openai.BadRequestError, match=r"Must be \.jsonl"):
        client.files.create(file=("in.txt", io.BytesIO(b"{}")), purpose="batch")
    other = client.files.create(file=("f.jsonl", io.BytesIO(b"{}\n")), purpose="user_data")
    with pytest.raises(openai.BadRequestError, match="purpose 'batch'"):
        client.batches.create(input_file_id=other.id, endpoint="/v1/chat/completions",
                              completion_window="24h")
    assert client.files.delete(other.id).deleted is True


def test_openai_invalid_input_file_fails_the_batch_with_line_errors(make_mock: MakeMock) -> None:
    client = oai(make_mock())
    lines = [
        json.dumps(line("a", chat_body("x"))),
        json.dumps(line("a", chat_body("y"))),  # duplicate custom_id
        json.dumps(line("b", chat_body("z"), "/v1/responses")),
        json.dumps(line("c", {**chat_body("w"), "model": "mock-reasoner-1"})),
        "{not json",
        json.dumps({"custom_id": "d", "method": "GET", "url": "/v1/chat/completions",
                    "body": chat_body("v")}),
        json.dumps({"custom_id": "e", "method": "POST", "url": "/v1/chat/completions"}),
    ]
    file_id = client.files.create(file=("bad.jsonl", io.BytesIO("\n".join(lines).encode())),
                                  purpose="batch").id
    batch = finished(client, client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h").id)
    assert batch.status == "failed" and batch.failed_at is not None
    assert batch.output_file_id is None and batch.in_progress_at is None
    assert batch.errors is not None and batch.errors.data is not None
    assert [(e.code, e.line) for e in batch.errors.data] == [
        ("duplicate_custom_id", 2), ("url_mismatch", 3), ("model_mismatch", 4),
        ("invalid_json_line", 5), ("invalid_value", 6), ("missing_required_parameter", 7)]
    empty = upload(client, [])
    failed = finished(client, client.batches.create(
        input_file_id=empty, endpoint="/v1/chat/completions", completion_window="24h").id)
    assert failed.errors is not None and failed.errors.data is not None
    assert failed.errors.data[0].code == "empty_file"


# --- Anthropic through the official SDK -------------------------------------------------------


def message_requests(count: int, prefix: str = "m") -> list[dict[str, Any]]:
    return [{"custom_id": f"{prefix}{i}",
             "params": {"model": "mock-1", "max_tokens": 64,
                        "messages": [{"role": "user", "content": f"review {i}"}]}}
            for i in range(count)]


def test_anthropic_sdk_runs_a_batch_whose_messages_equal_the_online_ones(
    make_mock: MakeMock,
) -> None:
    mock = make_mock()
    client = claude(mock)
    requests = message_requests(3)
    created = client.messages.batches.create(requests=requests)  # type: ignore[arg-type]
    assert created.processing_status == "in_progress" and created.type == "message_batch"
    assert created.request_counts.processing == 3 and created.results_url is None
    assert created.expires_at > created.created_at and created.ended_at is None
    batch = ended(client, created.id)
    assert batch.request_counts.succeeded == 3 and batch.request_counts.processing == 0
    assert batch.ended_at is not None and batch.results_url is not None
    assert batch.results_url.startswith(mock.base_url + "/messages/batches/")
    results = list(client.messages.batches.results(created.id))
    assert [r.custom_id for r in results] == ["m0", "m1", "m2"]
    for result, sent in zip(results, requests, strict=True):
        assert result.result.type == "succeeded"
        online = client.messages.create(**sent["params"])
        assert result.result.message.content == online.content
        assert result.result.message.usage == online.usage
    assert mock.stats_snapshot()["batch_jobs"][created.id]["status"] == "ended"


def test_anthropic_sdk_lists_pages_and_cancels(make_mock: MakeMock) -> None:
    client = claude(make_mock(batch_seconds=0.5))
    ids = [client.messages.batches.create(
        requests=message_requests(10, f"p{n}-")).id for n in range(3)]  # type: ignore[arg-type]
    page = client.messages.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2] and page.has_more
    assert page.first_id == ids[2] and page.last_id == ids[1]
    assert [b.id for b in client.messages.batches.list(limit=1)] == ids[::-1]
    assert [b.id for b in client.messages.batches.list(before_id=ids[0]).data] == ids[:0:-1]
    assert [b.id for b in client.messages.batches.list(after_id=ids[1]).data] == [ids[0]]
    time.sleep(0.15)
    canceling = client.messages.batches.cancel(ids[0])
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at
    assert canceling.request_counts.processing == 10
    batch = ended(client, ids[0])
    counts = batch.request_counts
    assert counts.canceled > 0 and counts.succeeded > 0
    assert counts.succeeded + counts.canceled == 10
    kinds = [r.result.type for r in client.messages.batches.results(ids[0])]
    assert kinds.count("canceled") == counts.canceled
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.cancel(ids[0])


def test_anthropic_refuses_bad_custom_ids_and_answers_bad_params_errored(
    make_mock: MakeMock,
) -> None:
    client = claude(make_mock())
    good = message_requests(1)[0]
    for bad, words in (({**good, "custom_id": "has space"}, "should match pattern"),
                       ({**good, "custom_id": "x" * 65}, "should match pattern"),
                       ({"custom_id": "a"}, "requests.0.params: Field required")):
        with pytest.raises(anthropic.BadRequestError, match=words) as refused:
            client.messages.batches.create(requests=[bad])  # type: ignore[list-item]
        assert refused.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError, match="Duplicate custom_id"):
        client.messages.batches.create(requests=[good, good])  # type: ignore[list-item]
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve("msgbatch_nope")
    no_max = {"custom_id": "n", "params": {"model": "mock-1", "messages": good["params"][
        "messages"]}}
    created = client.messages.batches.create(requests=[good, no_max])  # type: ignore[list-item]
    ended(client, created.id)
    errored = {r.custom_id: r.result for r in client.messages.batches.results(created.id)}
    assert errored["m0"].type == "succeeded" and errored["n"].type == "errored"
    assert errored["n"].error.error.type == "invalid_request_error"  # type: ignore[union-attr]


# --- injected failures ------------------------------------------------------------------------


def test_injected_validation_failure_fails_the_first_batch_of_each_api(
    make_mock: MakeMock,
) -> None:
    mock = make_mock(batch_seconds=0.1, batch_validation_failures=1)
    client, messages = oai(mock), claude(mock)
    failed = finished(client, submit(client, reviews(2)))
    assert failed.status == "failed" and failed.errors is not None and failed.errors.data
    assert failed.errors.data[0].code == "token_limit_exceeded"
    assert failed.request_counts is not None and failed.request_counts.total == 0
    second = submit(client, reviews(2))
    with pytest.raises(anthropic.BadRequestError, match="failed validation"):
        messages.messages.batches.create(requests=message_requests(2))  # type: ignore[arg-type]
    created = messages.messages.batches.create(requests=message_requests(2))  # type: ignore[arg-type]
    assert finished(client, second).status == "completed"
    ended(messages, created.id)
    assert mock.stats_snapshot()["batch_lines_billed"] == 4


def test_expiry_leaves_partial_output_and_expired_lines(make_mock: MakeMock) -> None:
    mock = make_mock(batch_seconds=0.1, batch_expire_share=0.5)
    client, messages = oai(mock), claude(mock)
    batch_id = submit(client, reviews(4))
    created = messages.messages.batches.create(requests=message_requests(4))  # type: ignore[arg-type]
    batch = finished(client, batch_id)
    assert batch.status == "expired" and batch.expired_at is not None
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 0)
    assert [o["custom_id"] for o in jsonl(client, batch.output_file_id)] == ["r0", "r1"]
    errors = jsonl(client, batch.error_file_id)
    assert [(e["custom_id"], e["error"]["code"]) for e in errors] == [
        ("r2", "batch_expired"), ("r3", "batch_expired")]
    counts = ended(messages, created.id).request_counts
    assert (counts.succeeded, counts.expired) == (2, 2)
    kinds = [r.result.type for r in messages.messages.batches.results(created.id)]
    assert kinds == ["succeeded", "succeeded", "expired", "expired"]
    assert mock.stats_snapshot()["batch_lines_billed"] == 4


def test_completed_without_output_file_still_bills_its_lines(make_mock: MakeMock) -> None:
    mock = make_mock(batch_seconds=0.1, batch_no_output_file=True)
    client = oai(mock)
    batch = finished(client, submit(client, reviews(3)))
    assert batch.status == "completed" and batch.output_file_id is None
    assert batch.error_file_id is None and batch.request_counts is not None
    assert batch.request_counts.completed == 3
    assert mock.stats_snapshot()["batch_lines_billed"] == 3


def test_per_line_500s_and_429s_go_to_the_error_file(make_mock: MakeMock) -> None:
    mock = make_mock(batch_seconds=0.1, batch_500_share=0.5, batch_429_share=0.5)
    client, messages = oai(mock), claude(mock)
    batch_id = submit(client, reviews(12))
    created = messages.messages.batches.create(requests=message_requests(12))  # type: ignore[arg-type]
    batch = finished(client, batch_id)
    assert batch.status == "completed" and batch.output_file_id is None
    assert batch.request_counts is not None and batch.request_counts.failed == 12
    errors = jsonl(client, batch.error_file_id)
    codes = {e["response"]["status_code"] for e in errors}
    assert codes == {500, 429} and all(e["error"] is None for e in errors)
    assert all("message" in e["response"]["body"]["error"] for e in errors)
    assert ended(messages, created.id).request_counts.errored == 12
    types = {r.result.error.error.type  # type: ignore[union-attr]
             for r in messages.messages.batches.results(created.id)}
    assert types == {"api_error", "rate_limit_error"}
    assert mock.stats_snapshot()["batch_lines_billed"] == 0


def test_a_directive_fails_a_line_once_and_its_resubmission_succeeds(make_mock: MakeMock) -> None:
    client = oai(make_mock(batch_seconds=0.1))
    lines = [line("x", chat_body("flaky [[mock:fail=500x1]]")), line("y", chat_body("fine"))]
    first = finished(client, submit(client, lines))
    assert [e["custom_id"] for e in jsonl(client, first.error_file_id)] == ["x"]
    again = finished(client, submit(client, lines[:1]))
    assert again.error_file_id is None and len(jsonl(client, again.output_file_id)) == 1


def test_finalizing_with_complete_counts_then_completed(make_mock: MakeMock) -> None:
    client = oai(make_mock(batch_seconds=0.3, batch_finalizing_share=0.6))
    batch_id = submit(client, reviews(3))
    final = until(lambda: client.batches.retrieve(batch_id), lambda b: b.status == "finalizing")
    assert final.status == "finalizing" and final.output_file_id is None
    assert final.request_counts is not None and final.request_counts.completed == 3
    assert finished(client, batch_id).output_file_id is not None


def test_shuffled_results_hold_the_same_lines_in_another_order(make_mock: MakeMock) -> None:
    mock = make_mock(batch_seconds=0.1, batch_shuffle_results=True)
    client, messages = oai(mock), claude(mock)
    batch_id = submit(client, reviews(20))
    created = messages.messages.batches.create(requests=message_requests(20))  # type: ignore[arg-type]
    order = [o["custom_id"] for o in jsonl(client, finished(client, batch_id).output_file_id)]
    assert sorted(order) == sorted(f"r{i}" for i in range(20))
    assert order != [f"r{i}" for i in range(20)]
    ended(messages, created.id)
    ids = [r.custom_id for r in messages.messages.batches.results(created.id)]
    assert sorted(ids) == sorted(f"m{i}" for i in range(20)) and ids != [f"m{i}" for i in range(20)]


def test_a_fresh_upload_is_not_found_at_first(make_mock: MakeMock) -> None:
    client = oai(make_mock(file_visible_after_ms=150))
    file_id = upload(client, reviews(1))
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(file_id)
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                              completion_window="24h")
    time.sleep(0.17)
    assert client.files.retrieve(file_id).id == file_id
    client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                          completion_window="24h")


# --- counters, keys, routes, CLI --------------------------------------------------------------


def test_stats_see_a_custom_id_held_by_two_live_batches(make_mock: MakeMock) -> None:
    mock = make_mock()
    client = oai(mock)
    first = submit(client, reviews(3))  # r0 r1 r2
    second = submit(client, [line("r2", chat_body("again")), line("r9", chat_body("new"))])
    live = mock.stats_snapshot()
    assert live["batch_live"]["r2"] == 2 and live["batch_overlaps"] == 1
    finished(client, first)
    finished(client, second)
    third = finished(client, submit(client, reviews(1)))  # r0 again, after its batch ended
    stats = mock.stats_snapshot()
    assert stats["batch_live"] == {} and stats["batch_live_max"]["r0"] == 1
    assert stats["batch_live_max"]["r2"] == 2 and stats["batch_overlaps"] == 1
    assert stats["batch_billed"]["r0"] == 2 and stats["billed_twice"] == 2  # r0 and r2
    assert stats["batch_lines_billed"] == 6 and stats["batches_ended"] == {"completed": 3}
    assert stats["batch_calls"]["batches.create"] == 3 and third.status == "completed"


def test_the_api_key_is_checked_on_batch_routes(make_mock: MakeMock) -> None:
    mock = make_mock(api_key="sekrit")
    with pytest.raises(openai.AuthenticationError):
        oai(mock, key="wrong").batches.list()
    with pytest.raises(anthropic.AuthenticationError):
        claude(mock, key="wrong").messages.batches.list()
    assert oai(mock, key="sekrit").batches.list().data == []
    client = claude(mock, key="sekrit")  # sends x-api-key and anthropic-version
    assert client.messages.batches.list().data == []


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_raw_http_results_wait_for_the_end_and_delete_needs_it() -> None:
    from batchrun.mock import MockProvider

    provider = MockProvider(MockConfig(batch_seconds=0.2))
    base = await provider.start()
    try:
        async with aiohttp.ClientSession() as session:
            url = base + "/messages/batches"
            async with session.post(url, json={"requests": message_requests(1)},
                                    headers={"anthropic-version": "2023-06-01"}) as response:
                batch = await response.json()
            async with session.get(f"{url}/{batch['id']}/results") as response:
                assert response.status == 400
                assert (await response.json())["error"]["type"] == "invalid_request_error"
            async with session.delete(f"{url}/{batch['id']}") as response:
                assert response.status == 400
    finally:
        await provider.stop()


def test_routes_match_by_suffix() -> None:
    assert match("POST", "/v1/messages/batches") == ("messages.batches.create", "", "/v1")
    assert match("GET", "/x/v1/batches/b1") == ("batches.retrieve", "b1", "/x/v1")
    assert match("GET", "/v1/files/f1/content") == ("files.content", "f1", "/v1")
    assert match("POST", "/v1/messages") is None and match("PUT", "/v1/batches") is None


def test_batch_config_is_validated() -> None:
    for fields in ({"batch_seconds": 0}, {"batch_finalizing_share": 0.9},
                   {"batch_500_share": 0.7, "batch_429_share": 0.4},
                   {"batch_expire_share": -0.1}, {"file_visible_after_ms": -1}):
        with pytest.raises(UsageError):
            MockConfig(**fields)  # type: ignore[arg-type]


def test_cli_mock_flags_reach_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[MockConfig] = []
    monkeypatch.setattr("batchrun.mock.serve", seen.append)
    code = cli.main(["mock", "--batch-seconds", "2", "--batch-finalizing-share", "0.3",
                     "--batch-expire-share", "0.2", "--batch-500-share", "0.1",
                     "--batch-429-share", "0.05", "--batch-no-output-file",
                     "--batch-shuffle-results", "--batch-validation-failures", "2",
                     "--file-visible-after-ms", "300"])
    assert code == 0
    config = seen[0]
    assert (config.batch_seconds, config.batch_finalizing_share, config.batch_expire_share) == (
        2.0, 0.3, 0.2)
    assert (config.batch_500_share, config.batch_429_share) == (0.1, 0.05)
    assert config.batch_no_output_file and config.batch_shuffle_results
    assert (config.batch_validation_failures, config.file_visible_after_ms) == (2, 300.0)
