"""Input reading: JSONL / Parquet / folder / glob -> rows, validation and its error messages."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from batchrun.errors import InputError, JobError
from batchrun.results.export import read_input_frame as read_frame
from batchrun.sources import (
    InputRow,
    input_columns,
    iter_rows,
    list_files,
    scan,
)

try:
    from batchrun.job import InputSpec
except ImportError:  # pragma: no cover - only while job.py is absent
    InputSpec = None  # type: ignore[assignment,misc]


def spec(path: str, **kw: Any) -> Any:
    if InputSpec is not None:
        return InputSpec(path=path, **kw)
    from types import SimpleNamespace

    base = dict(id=None, prompt=None, messages=None, template=None, system=None, format="auto")
    return SimpleNamespace(path=path, **{**base, **kw})


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def write_parquet(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def rows(s: Any, base: Path, keep: tuple[str, ...] = (), batch_size: int = 2048) -> list[InputRow]:
    return [r for batch in iter_rows(s, base, keep, batch_size) for r in batch]


def message(err: pytest.ExceptionInfo[BaseException]) -> str:
    return str(err.value)


REVIEWS = [
    {"rid": "a", "text": "good", "gold": 1},
    {"rid": "b", "text": "bad", "gold": 0},
    {"rid": "c", "text": "meh", "gold": 1},
]


def test_jsonl_and_parquet_give_identical_rows_apart_from_where(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "r.jsonl", REVIEWS)
    write_parquet(tmp_path / "r.parquet", REVIEWS)
    kw = dict(id="rid", prompt="text", system="One word.")
    from_jsonl = rows(spec("r.jsonl", **kw), tmp_path, ("gold",))
    from_parquet = rows(spec("r.parquet", **kw), tmp_path, ("gold",))
    strip = [(r.id, r.messages, r.body, r.keep) for r in from_jsonl]
    assert strip == [(r.id, r.messages, r.body, r.keep) for r in from_parquet]
    assert strip[0] == (
        "a",
        [{"role": "system", "content": "One word."}, {"role": "user", "content": "good"}],
        None,
        {"gold": 1},
    )
    assert [r.where for r in from_jsonl] == ["r.jsonl:1", "r.jsonl:2", "r.jsonl:3"]
    assert [r.where for r in from_parquet] == [
        "r.parquet row 0",
        "r.parquet row 1",
        "r.parquet row 2",
    ]


def test_jsonl_and_parquet_messages_columns_give_identical_rows(tmp_path: Path) -> None:
    recs = [
        {"m": [{"role": "user", "content": "hi"}]},
        {
            "m": [
                {"role": "user", "content": "a", "name": "x"},
                {"role": "assistant", "content": "b"},
            ]
        },
    ]
    write_jsonl(tmp_path / "m.jsonl", recs)
    write_parquet(tmp_path / "m.parquet", recs)
    from_jsonl = rows(spec("m.jsonl", messages="m"), tmp_path)
    from_parquet = rows(spec("m.parquet", messages="m"), tmp_path)
    # Parquet structs give every message a "name" (null where absent); the nulls are dropped.
    assert [r.messages for r in from_parquet] == [r.messages for r in from_jsonl]
    assert from_jsonl[1].messages == recs[1]["m"]


def test_folder_reads_jsonl_and_parquet_sorted_by_name_and_ignores_other_files(
    tmp_path: Path,
) -> None:
    write_parquet(tmp_path / "d" / "b.parquet", [{"text": "from b"}])
    write_jsonl(tmp_path / "d" / "a.jsonl", [{"text": "from a"}])
    (tmp_path / "d" / "notes.txt").write_text("not input")
    (tmp_path / "d" / "sub").mkdir()
    write_jsonl(tmp_path / "d" / "sub" / "c.jsonl", [{"text": "nested, not read"}])
    s = spec("d", prompt="text")
    assert list_files(s, tmp_path) == (tmp_path / "d" / "a.jsonl", tmp_path / "d" / "b.parquet")
    got = rows(s, tmp_path)
    assert [(r.id, r.messages[0]["content"]) for r in got] == [("0", "from a"), ("1", "from b")]


def test_glob_matches_sorted_relative_to_base_dir(tmp_path: Path) -> None:
    for name in ("part-2.jsonl", "part-1.jsonl", "other.jsonl"):
        write_jsonl(tmp_path / "d" / name, [{"text": name}])
    s = spec("d/part-*.jsonl", prompt="text")
    assert list_files(s, tmp_path) == (
        tmp_path / "d" / "part-1.jsonl",
        tmp_path / "d" / "part-2.jsonl",
    )
    assert [r.messages[0]["content"] for r in rows(s, tmp_path)] == ["part-1.jsonl", "part-2.jsonl"]


def test_absolute_path_ignores_base_dir(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "r.jsonl", REVIEWS)
    assert list_files(spec(str(path)), tmp_path / "elsewhere") == (path,)


def test_row_numbers_count_across_files_in_sorted_order(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d" / "1.jsonl", REVIEWS[:2])
    write_jsonl(tmp_path / "d" / "2.jsonl", REVIEWS)
    got = rows(spec("d", prompt="text"), tmp_path, batch_size=2)
    assert [r.id for r in got] == ["0", "1", "2", "3", "4"]
    assert got[2].where == "d/2.jsonl:1"


def test_id_column_values_become_strings(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "a.jsonl", [{"n": 17, "text": "x"}, {"n": "r2", "text": "y"}])
    write_parquet(tmp_path / "b.parquet", [{"n": 17, "text": "x"}])
    assert [r.id for r in rows(spec("a.jsonl", id="n", prompt="text"), tmp_path)] == ["17", "r2"]
    assert [r.id for r in rows(spec("b.parquet", id="n", prompt="text"), tmp_path)] == ["17"]


def test_template_formats_columns_and_may_use_the_prompt_column(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "r.jsonl", REVIEWS[:1])
    s = spec("r.jsonl", prompt="text", template="Review {rid}: {text!r} ({gold:>3})")
    assert rows(s, tmp_path)[0].messages == [{"role": "user", "content": "Review a: 'good' (  1)"}]


def test_non_string_prompt_is_refused_naming_the_line_and_the_column(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "r.jsonl", [{"q": "fine"}, {"q": 42}])
    with pytest.raises(InputError, match=r"^r\.jsonl:2: prompt column 'q' is a number \(42\)"):
        rows(spec("r.jsonl", prompt="q"), tmp_path)


def test_system_is_prepended_to_a_messages_column(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "m.jsonl", [{"m": [{"role": "user", "content": "hi"}]}])
    got = rows(spec("m.jsonl", messages="m", system="Be brief."), tmp_path)[0]
    assert got.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]


def test_blank_lines_and_a_byte_order_mark_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "r.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "a"}\n\n   \n{"text": "b"}')
    got = rows(spec("r.jsonl", prompt="text"), tmp_path)
    assert [(r.id, r.where) for r in got] == [("0", "r.jsonl:1"), ("1", "r.jsonl:4")]


def test_openai_batch_input_is_detected_and_passes_bodies_through(tmp_path: Path) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    line = {"custom_id": "req-1", "method": "POST", "url": "/v1/chat/completions", "body": body}
    write_jsonl(tmp_path / "b.jsonl", [line, {**line, "custom_id": 2}])
    got = rows(spec("b.jsonl"), tmp_path, ("custom_id", "url"))
    assert got[0] == InputRow(
        "req-1", None, body, {"custom_id": "req-1", "url": "/v1/chat/completions"}, "b.jsonl:1"
    )
    assert got[1].id == "2"
    assert scan(spec("b.jsonl"), tmp_path).rows == 2


def test_openai_batch_keep_columns_are_limited_to_its_fields(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "b.jsonl", [{"custom_id": "x", "body": {}}])
    with pytest.raises(InputError, match=r"keep_columns 'gold'.*custom_id, method and url"):
        rows(spec("b.jsonl"), tmp_path, ("gold",))


def test_openai_batch_line_without_body_names_the_line(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "b.jsonl", [{"custom_id": "x", "body": {}}, {"custom_id": "y"}])
    with pytest.raises(InputError, match=r'^b\.jsonl:2: an OpenAI batch line needs "custom_id"'):
        rows(spec("b.jsonl"), tmp_path)


def test_rows_format_overrides_batch_detection(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "b.jsonl", [{"custom_id": "x", "body": {}, "text": "t"}])
    got = rows(spec("b.jsonl", prompt="text", format="rows"), tmp_path)[0]
    assert (got.body, got.messages) == (None, [{"role": "user", "content": "t"}])


# --- errors name the file and the line (or the id) and what to do ----------------------------


def test_malformed_jsonl_line_names_file_line_and_parser_message(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "data" / "x.jsonl", [{"text": "a"}] * 16)
    with path.open("ab") as f:
        f.write(b'{"text": "b",}\n')
    with pytest.raises(InputError) as err:
        scan(spec("data/x.jsonl", prompt="text"), tmp_path)
    assert message(err).startswith("data/x.jsonl:17: not a JSON object (trailing comma")
    assert message(err).endswith("fix or remove the line")


def test_jsonl_line_that_is_not_an_object_is_rejected(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "x.jsonl", [{"text": "a"}, ["a", "list"]])
    with pytest.raises(InputError, match=r"^x\.jsonl:2: not a JSON object \(a list\)"):
        rows(spec("x.jsonl", prompt="text"), tmp_path)


def test_missing_id_names_the_line_and_lists_columns(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "x.jsonl", [REVIEWS[0], {"text": "no id"}])
    with pytest.raises(InputError) as err:
        scan(spec("x.jsonl", id="rid", prompt="text"), tmp_path)
    assert message(err).startswith("x.jsonl:2: [input] id 'rid' is not a column")
    assert "columns are: text" in message(err)


def test_null_id_names_the_line(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "x.jsonl", [REVIEWS[0], {"rid": None, "text": "null id"}])
    with pytest.raises(InputError, match=r"^x\.jsonl:2: id 'rid' is null; .*\[input\] id"):
        scan(spec("x.jsonl", id="rid", prompt="text"), tmp_path)


def test_null_id_in_parquet_names_the_row(tmp_path: Path) -> None:
    write_parquet(tmp_path / "x.parquet", [REVIEWS[0], {"rid": None, "text": "t", "gold": 0}])
    with pytest.raises(InputError, match=r"^x\.parquet row 1: id 'rid' is null"):
        scan(spec("x.parquet", id="rid", prompt="text"), tmp_path)


def test_null_prompt_names_the_line(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "x.jsonl", [{"text": "a"}, {"text": None}])
    with pytest.raises(InputError, match=r"^x\.jsonl:2: prompt 'text' is null"):
        scan(spec("x.jsonl", prompt="text"), tmp_path)


def test_duplicate_id_across_two_files_names_both_places(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "data" / "a.jsonl", [{"rid": f"r{i}", "text": "t"} for i in range(1, 20)]
    )
    write_jsonl(
        tmp_path / "data" / "b.jsonl",
        [{"rid": "x", "text": "t"}, {"rid": "y", "text": "t"}, {"rid": "r17", "text": "t"}],
    )
    with pytest.raises(InputError) as err:
        scan(spec("data/*.jsonl", id="rid", prompt="text"), tmp_path)
    assert message(err) == (
        'duplicate id "r17" at data/a.jsonl:17 and data/b.jsonl:3; ids must be unique — '
        "fix the data or drop [input] id to use row numbers"
    )


def test_duplicate_custom_id_in_openai_batch_input_is_rejected(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "b.jsonl", [{"custom_id": "q", "body": {}}] * 2)
    with pytest.raises(InputError, match=r'^duplicate id "q" at b\.jsonl:1 and b\.jsonl:2'):
        scan(spec("b.jsonl"), tmp_path)


def test_missing_parquet_column_names_file_setting_and_columns(tmp_path: Path) -> None:
    write_parquet(tmp_path / "x.parquet", REVIEWS)
    with pytest.raises(InputError) as err:
        scan(spec("x.parquet", prompt="body"), tmp_path)
    assert message(err).startswith("x.parquet: [input] prompt 'body' is not a column")
    assert "the columns are: rid, text, gold" in message(err)


def test_missing_keep_column_is_named(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "x.jsonl", REVIEWS)
    with pytest.raises(
        InputError, match=r"^x\.jsonl:1: keep_columns entry 'label' is not a column"
    ):
        scan(spec("x.jsonl", prompt="text"), tmp_path, ("label",))


def test_missing_column_in_the_second_parquet_file_is_found_by_scan(tmp_path: Path) -> None:
    write_parquet(tmp_path / "d" / "1.parquet", REVIEWS)
    write_parquet(tmp_path / "d" / "2.parquet", [{"rid": "z", "body": "t"}])
    with pytest.raises(InputError, match=r"^d/2\.parquet: \[input\] prompt 'text' is not a column"):
        scan(spec("d", prompt="text"), tmp_path)


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_template_field_that_is_not_a_column_is_named_with_the_columns(
    tmp_path: Path, suffix: str
) -> None:
    writer = write_jsonl if suffix == "jsonl" else write_parquet
    writer(tmp_path / f"x.{suffix}", REVIEWS)
    with pytest.raises(InputError) as err:
        scan(spec(f"x.{suffix}", template="{text} / {title}"), tmp_path)
    assert f"x.{suffix}" in message(err)
    assert "template field {title} is not a column; the columns are: rid, text, gold" in message(
        err
    )


def test_positional_template_field_is_a_job_error(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "x.jsonl", REVIEWS)
    with pytest.raises(JobError, match="positional field"):
        scan(spec("x.jsonl", template="Review: {}"), tmp_path)


def test_messages_that_are_not_role_content_objects_name_the_line(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "m.jsonl", [{"m": [{"role": "user", "content": "ok"}]}, {"m": "hi"}])
    with pytest.raises(InputError, match=r"^m\.jsonl:2: column 'm' must be a non-empty list"):
        scan(spec("m.jsonl", messages="m"), tmp_path)


def test_rows_input_without_prompt_messages_or_template_says_what_to_set(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "x.jsonl", REVIEWS)
    with pytest.raises(InputError, match="set \\[input\\] prompt, messages or template"):
        scan(spec("x.jsonl"), tmp_path)


def test_no_files_matched_names_the_pattern(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no files match 'data/\*\.jsonl'.*\[input\] path"):
        list_files(spec("data/*.jsonl"), tmp_path)


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^data/x\.jsonl: no such file or folder; check"):
        list_files(spec("data/x.jsonl"), tmp_path)


def test_unsupported_suffix_says_to_convert(tmp_path: Path) -> None:
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(InputError, match=r"^x\.csv: unsupported file type; convert"):
        list_files(spec("x.csv"), tmp_path)
    with pytest.raises(InputError, match=r"matches x\.csv, which is neither"):
        list_files(spec("x.*"), tmp_path)


def test_empty_folder_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(InputError, match=r"^d: the folder holds no \.jsonl or \.parquet files"):
        list_files(spec("d"), tmp_path)


def test_a_file_that_is_not_parquet_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match=r"^x\.parquet: cannot read as Parquet"):
        scan(spec("x.parquet", prompt="text"), tmp_path)


# --- streaming and memory -----------------------------------------------------------------------


def test_iter_rows_is_lazy_and_yields_early_batches_before_a_later_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    lines = [orjson.dumps({"text": f"t{i}"}) for i in range(1, 10_001)]
    lines[4999] = b"{oops"
    path.write_bytes(b"\n".join(lines) + b"\n")
    batches = iter_rows(spec("big.jsonl", prompt="text"), tmp_path, (), batch_size=2048)
    first = next(batches)
    assert [r.where for r in first[:2]] == ["big.jsonl:1", "big.jsonl:2"]
    assert len(first) == 2048
    assert len(next(batches)) == 2048
    with pytest.raises(InputError, match=r"^big\.jsonl:5000: not a JSON object"):
        next(batches)


def test_parquet_is_read_in_batches(tmp_path: Path) -> None:
    write_parquet(tmp_path / "x.parquet", [{"text": str(i)} for i in range(5000)])
    sizes = [len(b) for b in iter_rows(spec("x.parquet", prompt="text"), tmp_path, (), 2048)]
    assert sizes == [2048, 2048, 904]


def test_scan_of_200k_rows_uses_bounded_memory(tmp_path: Path) -> None:
    n = 200_000
    path = tmp_path / "big.jsonl"
    with path.open("wb") as f:
        for i in range(n):
            f.write(
                b'{"rid": "row-%d", "text": "some review text number %d", "gold": 1}\n' % (i, i)
            )
    s = spec("big.jsonl", id="rid", prompt="text")
    tracemalloc.start()
    try:
        result = scan(s, tmp_path, ("gold",))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.rows == n
    assert result.columns == ("rid", "text", "gold")
    assert peak < 10 * 2**20  # the file alone is ~12 MB; ids hashed to 8 bytes each


def test_scan_of_an_empty_file_says_the_input_has_no_rows(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_bytes(b"\n")
    with pytest.raises(InputError, match=r"^the input has no rows \(x\.jsonl holds none\)"):
        scan(spec("x.jsonl", prompt="text"), tmp_path)
    assert list(iter_rows(spec("x.jsonl", prompt="text"), tmp_path)) == []


def test_scan_reports_files_rows_and_first_file_columns(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d" / "a.jsonl", REVIEWS)
    write_parquet(tmp_path / "d" / "b.parquet", [{"text": "x", "rid": "z", "gold": 0}])
    result = scan(spec("d", id="rid", prompt="text"), tmp_path)
    assert result.files == (tmp_path / "d" / "a.jsonl", tmp_path / "d" / "b.parquet")
    assert (result.rows, result.columns) == (4, ("rid", "text", "gold"))
    assert input_columns(spec("d/b.parquet"), tmp_path) == ("text", "rid", "gold")


# --- read_frame ---------------------------------------------------------------------------------


def test_read_frame_adds_a_string_id_from_the_id_column(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d" / "a.jsonl", [{"n": 1, "text": "x"}])
    write_parquet(tmp_path / "d" / "b.parquet", [{"n": 2, "text": "y"}])
    frame = read_frame(spec("d", id="n", prompt="text"), tmp_path)
    assert list(frame.columns) == ["id", "n", "text"]
    assert frame["id"].tolist() == ["1", "2"]
    assert frame["text"].tolist() == ["x", "y"]


def test_read_frame_uses_row_numbers_without_an_id_column(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d" / "a.jsonl", REVIEWS[:2])
    write_jsonl(tmp_path / "d" / "b.jsonl", REVIEWS[:1])
    frame = read_frame(spec("d", prompt="text"), tmp_path)
    assert frame["id"].tolist() == ["0", "1", "2"]
    assert frame["rid"].tolist() == ["a", "b", "a"]
