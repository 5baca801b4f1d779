"""Batch inputs: globs, directories and tables become items, bound through the contract."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from promptdag.batch.sources import content_hash, item_inputs, open_source, read_constants
from promptdag.contract import load_contract
from promptdag.errors import ConfigError, InputError, LimitExceededError
from tests.promptdag.batch.projects import REPO, write_greet_project, write_jsonl

SUMMARIZE = load_contract(REPO).pipeline("summarize")
TRIAGE = load_contract(REPO / "examples" / "ticket-triage").pipeline("triage")


@pytest.fixture
def greet(tmp_path: Path):
    return load_contract(write_greet_project(tmp_path / "greet")).pipeline("greet")


def test_a_directory_lists_the_files_the_pipeline_takes_bound_by_the_contract(
    tmp_path: Path,
) -> None:
    (tmp_path / "b.pdf").write_bytes(b"%PDF-1.4 not really")
    (tmp_path / "a.txt").write_text("Some text.", encoding="utf-8")
    (tmp_path / "notes.csv").write_text("x\n1\n", encoding="utf-8")
    (tmp_path / ".hidden.txt").write_text("no", encoding="utf-8")
    source = open_source(SUMMARIZE, str(tmp_path))
    items = list(source.items())
    assert [Path(i.id).name for i in items] == ["a.txt", "b.pdf"]
    assert [i.index for i in items] == [0, 1]
    text = item_inputs(items[0], SUMMARIZE, {})
    pdf = item_inputs(items[1], SUMMARIZE, {"user_query": "What?"})
    assert text == {"text": "Some text."}
    assert pdf == {
        "pdf_bytes": b"%PDF-1.4 not really",
        "source_name": "b.pdf",
        "user_query": "What?",
    }


def test_a_glob_takes_every_match_and_an_empty_one_says_what_to_give(tmp_path: Path) -> None:
    for name in ("x1.txt", "x2.txt", "y.txt"):
        (tmp_path / name).write_text(name, encoding="utf-8")
    source = open_source(SUMMARIZE, str(tmp_path / "x*.txt"))
    assert source.kind == "files" and source.count == 2
    with pytest.raises(InputError, match="no file matches"):
        open_source(SUMMARIZE, str(tmp_path / "*.pdf"))


def test_a_pipeline_without_a_file_input_refuses_files(tmp_path: Path, greet) -> None:
    (tmp_path / "a.txt").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="takes no file"):
        open_source(greet, str(tmp_path / "*.txt"))


def test_a_jsonl_table_names_rows_by_their_id_column_else_by_number(tmp_path: Path) -> None:
    with_ids = write_jsonl(
        tmp_path / "t.jsonl", [{"id": "a", "ticket": "one"}, {"id": 7, "ticket": "two"}]
    )
    items = list(open_source(TRIAGE, str(with_ids)).items())
    assert [(i.id, i.values) for i in items] == [("a", {"ticket": "one"}), ("7", {"ticket": "two"})]
    plain = write_jsonl(tmp_path / "p.jsonl", [{"ticket": "one"}, {"ticket": "two"}])
    assert [i.id for i in open_source(TRIAGE, str(plain)).items()] == ["p.jsonl#1", "p.jsonl#2"]


def test_a_bad_jsonl_line_is_that_items_error_not_the_batchs(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"ticket": "fine"}\nnot json\n[1, 2]\n', encoding="utf-8")
    items = list(open_source(TRIAGE, str(path)).items())
    assert len(items) == 3 and items[0].problem is None
    with pytest.raises(InputError, match="line 2 is not JSON"):
        item_inputs(items[1], TRIAGE, {})
    with pytest.raises(InputError, match="line 3 is not a JSON object"):
        item_inputs(items[2], TRIAGE, {})


def test_duplicate_ids_and_unknown_columns_are_refused_before_the_batch_starts(
    tmp_path: Path,
) -> None:
    dup = write_jsonl(
        tmp_path / "d.jsonl", [{"id": "a", "ticket": "x"}, {"id": "a", "ticket": "y"}]
    )
    with pytest.raises(InputError, match="id 'a' is in rows 1 and 2"):
        open_source(TRIAGE, str(dup))
    path = tmp_path / "t.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["ticket", "priority"], ["x", "1"]])
    with pytest.raises(InputError, match=r"priority are not inputs of pipeline 'triage'"):
        open_source(TRIAGE, str(path))


def test_csv_and_parquet_rows_become_inputs_with_empty_cells_left_out(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["key", "text", "user_query"], ["k1", "Hello.", ""]])
    items = list(open_source(SUMMARIZE, str(path), id_column="key").items())
    assert [(i.id, i.values) for i in items] == [("k1", {"text": "Hello."})]
    table = pa.table({"text": ["One.", "Two."], "user_query": [None, "Why?"]})
    pq.write_table(table, tmp_path / "t.parquet")
    rows = list(open_source(SUMMARIZE, str(tmp_path / "t.parquet")).items())
    assert [r.values for r in rows] == [{"text": "One."}, {"text": "Two.", "user_query": "Why?"}]
    assert [r.id for r in rows] == ["t.parquet#1", "t.parquet#2"]


def test_an_input_set_by_the_row_and_for_every_item_is_that_items_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "x", "user_query": "a"}])
    item = next(open_source(SUMMARIZE, str(path)).items())
    with pytest.raises(InputError, match="sets user_query, which --input gives every item"):
        item_inputs(item, SUMMARIZE, {"user_query": "b"})


def test_a_file_over_its_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("x" * 100, encoding="utf-8")
    item = next(open_source(TRIAGE, str(path)).items())
    capped = TRIAGE.inputs["ticket"].__class__(
        **{**TRIAGE.inputs["ticket"].__dict__, "max_chars": 10}
    )
    spec = TRIAGE.__class__(**{**TRIAGE.__dict__, "inputs": {"ticket": capped}})
    with pytest.raises(LimitExceededError, match="over the cap of 40 bytes"):
        item_inputs(item, spec, {})


def test_constants_read_files_with_at(tmp_path: Path) -> None:
    (tmp_path / "q.txt").write_text("What is new?", encoding="utf-8")
    assert read_constants(SUMMARIZE, ["user_query=plain", "content_type=a memo"]) == {
        "user_query": "plain",
        "content_type": "a memo",
    }
    assert read_constants(SUMMARIZE, [f"text=@{tmp_path / 'q.txt'}"]) == {"text": "What is new?"}


def test_the_content_hash_follows_the_inputs_and_only_them() -> None:
    a = content_hash({"text": "x", "n": 1})
    assert a == content_hash({"n": 1, "text": "x"})
    assert a != content_hash({"text": "y", "n": 1})
    assert content_hash({"f": b"abc"}) != content_hash({"f": "abc"})
    assert len(a) == 64
