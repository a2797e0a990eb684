"""The SSE decoder: framing rules of the event-stream format, whatever the chunk boundaries."""

from __future__ import annotations

import random

import pytest

from batchrun.parse import SSEDecoder, SSEEvent


def decode(*chunks: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.close()


def decode_bytewise(raw: bytes) -> list[SSEEvent]:
    return decode(*(raw[i : i + 1] for i in range(len(raw))))


def test_data_with_and_without_the_space_after_the_colon() -> None:
    assert decode(b"data: a\n\ndata:b\n\ndata:  c\n\n") == [
        SSEEvent(None, "a"),
        SSEEvent(None, "b"),
        SSEEvent(None, " c"),  # only one space is removed
    ]


def test_several_data_lines_are_joined_with_newlines() -> None:
    assert decode(b'data: {\ndata: "a": 1\ndata: }\n\n') == [SSEEvent(None, '{\n"a": 1\n}')]


def test_event_name_belongs_to_its_event_only() -> None:
    raw = b"event: message_start\ndata: 1\n\ndata: 2\n\nevent:ping\ndata: 3\n\n"
    assert decode(raw) == [
        SSEEvent("message_start", "1"),
        SSEEvent(None, "2"),
        SSEEvent("ping", "3"),
    ]


def test_comments_are_dropped() -> None:
    raw = b": keep-alive\n\n: OPENROUTER PROCESSING\n\ndata: x\n: PROCESSING\n\n:\n\n"
    assert decode(raw) == [SSEEvent(None, "x")]


def test_id_retry_and_unknown_fields_are_ignored() -> None:
    raw = b"id: 7\nretry: 1000\nfoo: bar\ndata: x\n\nid: 8\n\n"
    assert decode(raw) == [SSEEvent(None, "x")]


def test_blank_lines_without_data_dispatch_nothing() -> None:
    assert decode(b"\n\n\r\n\r\nevent: ping\n\n\n") == []


def test_an_empty_data_line_still_makes_an_event() -> None:
    assert decode(b"data:\n\ndata\n\n") == [SSEEvent(None, ""), SSEEvent(None, "")]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["LF", "CRLF", "CR"])
def test_every_line_ending_gives_the_same_events(eol: bytes) -> None:
    raw = eol.join([b"event: e", b"data: 1", b"data: 2", b"", b": c", b"data: 3", b"", b""])
    expected = [SSEEvent("e", "1\n2"), SSEEvent(None, "3")]
    assert decode(raw) == expected
    assert decode_bytewise(raw) == expected


def test_crlf_split_between_cr_and_lf_is_one_line_end() -> None:
    assert decode(b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n") == [
        SSEEvent(None, "a"),
        SSEEvent(None, "b"),
    ]


def test_a_lone_cr_at_a_chunk_end_followed_by_data_is_a_line_end() -> None:
    assert decode(b"data: a\r", b"\rdata: b\r\r") == [SSEEvent(None, "a"), SSEEvent(None, "b")]


def test_multibyte_character_split_across_chunks_is_kept_whole() -> None:
    raw = "data: 北京“燕京”😊\n\n".encode()
    cut = raw.index("京".encode()) + 1  # inside the three bytes of 京
    assert decode(raw[:cut], raw[cut:]) == [SSEEvent(None, "北京“燕京”😊")]
    assert decode_bytewise(raw) == [SSEEvent(None, "北京“燕京”😊")]


def test_several_events_in_one_chunk_come_out_in_order() -> None:
    raw = b"".join(f"data: {i}\n\n".encode() for i in range(50))
    assert [e.data for e in decode(raw)] == [str(i) for i in range(50)]


def test_random_chunk_boundaries_never_change_the_events() -> None:
    raw = (
        ': hi\r\nevent: a\r\ndata: {"x": "é"}\r\n\r\n'
        "data: one\ndata: two\n\n"
        "event: b\rdata: 😊\r\r"
        "data:[DONE]\n\n"
    ).encode()
    expected = decode(raw)
    assert expected == [
        SSEEvent("a", '{"x": "é"}'),
        SSEEvent(None, "one\ntwo"),
        SSEEvent("b", "😊"),
        SSEEvent(None, "[DONE]"),
    ]
    rng = random.Random(20240601)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(raw)), rng.randint(1, 12)))
        pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
        assert decode(*pieces) == expected


def test_events_are_returned_by_the_feed_that_completes_them() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: par") == []
    assert decoder.feed(b"tial\n") == []
    assert decoder.feed(b"\ndata: next") == [SSEEvent(None, "partial")]
    assert decoder.close() == [SSEEvent(None, "next")]


def test_close_flushes_an_event_without_its_blank_line() -> None:
    assert decode(b"event: last\ndata: x\n") == [SSEEvent("last", "x")]
    assert decode(b"data: no newline at all") == [SSEEvent(None, "no newline at all")]


def test_close_with_nothing_pending_returns_nothing() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: x\n\n")
    assert decoder.close() == []


def test_empty_chunks_are_harmless() -> None:
    assert decode(b"", b"data: x\r", b"", b"\n", b"", b"\n") == [SSEEvent(None, "x")]


def test_byte_order_mark_at_the_start_is_skipped() -> None:
    assert decode(b"\xef\xbb", b"\xbfdata: x\n\n") == [SSEEvent(None, "x")]


def test_invalid_utf8_is_replaced_not_raised() -> None:
    assert decode(b"data: \xff\xfe ok\n\n") == [SSEEvent(None, "\ufffd\ufffd ok")]


def test_a_long_line_in_many_small_chunks_is_reassembled() -> None:
    payload = "x" * 200_000
    raw = f"data: {payload}\n\n".encode()
    assert decode(*(raw[i : i + 512] for i in range(0, len(raw), 512))) == [SSEEvent(None, payload)]
