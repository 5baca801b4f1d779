"""The batch output: part files as rows arrive, one merged file at the end, resume state."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from promptdag.batch import store as store_module
from promptdag.batch.rows import OutputColumns, arrow_schema
from promptdag.batch.store import ResultStore
from promptdag.errors import ConfigError

COLUMNS = OutputColumns(("answer", "count"), "answer", {"answer": str, "count": int})
SCHEMA = arrow_schema(COLUMNS)


def _row(index: int, status: str = "ok", build: str = "b1", at: int = 0, **extra: Any) -> dict:
    base = {name: None for name in SCHEMA.names}
    base.update(
        input_index=index,
        input_id=f"in{index}",
        content_hash=f"h{index}",
        status=status,
        build_id=build,
        output_answer=f"answer {index}" if status == "ok" else None,
        output_count=index,
        llm_calls=1,
        finished_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=at),
    )
    base.update(extra)
    return base


def test_rows_are_in_part_files_at_once_and_merged_once_per_input_at_the_end(
    tmp_path: Path,
) -> None:
    store = ResultStore(tmp_path / "out.parquet")
    store.start("p", "b1", {"git": {}})
    writer = store.writer(SCHEMA, "run1")
    for i in (2, 0, 1):
        writer.add(_row(i, at=i))
    writer.close()
    assert writer.written == 3 and store.parts.is_dir()
    assert len(store.read()) == 3  # type: ignore[arg-type]
    assert store.compact(SCHEMA) == 3
    assert not store.parts.exists()
    table = pq.read_table(store.out)
    assert table["input_id"].to_pylist() == ["in0", "in1", "in2"]
    assert table.schema.field("output_count").type == "int64"
    assert b"promptdag.batch" in table.schema.metadata


def test_the_latest_row_of_an_input_wins_and_resume_knows_what_is_done(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "out.parquet")
    store.start("p", "b1", {})
    writer = store.writer(SCHEMA, "run1")
    writer.add(_row(0, at=1))
    writer.add(_row(1, status="error", at=1))
    writer.add(_row(2, build="b0", at=1))
    writer.close()
    store.compact(SCHEMA)
    previous = store.previous("p", "b1")
    assert previous.rows == 3
    assert previous.done == frozenset({("in0", "h0")})
    assert previous.ok_elsewhere == 1
    store.start("p", "b1", {})
    writer = store.writer(SCHEMA, "run2")
    writer.add(_row(1, at=5))  # the failed one, again, now ok
    writer.close()
    assert store.compact(SCHEMA) == 3
    table = pq.read_table(store.out)
    assert table["status"].to_pylist() == ["ok", "ok", "ok"]
    with pytest.raises(ConfigError, match="holds rows of pipeline 'p', not 'other'"):
        store.previous("other", "b1")


def test_many_parts_are_merged_while_the_batch_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "MERGE_AT", 4)
    store = ResultStore(tmp_path / "out.parquet")
    store.start("p", "b1", {})
    writer = store.writer(SCHEMA, "run1")
    for i in range(12):
        writer.add(_row(i, at=i))
        deadline = time.monotonic() + 30
        while writer.written <= i and time.monotonic() < deadline:  # one part per row
            time.sleep(0.005)
    writer.close()
    parts = sorted(store.parts.glob("part-*.parquet"))
    assert 1 <= len(parts) <= 4
    assert max(pq.read_metadata(p).num_rows for p in parts) > 1  # merged
    rows = store.read().to_pylist()  # type: ignore[union-attr]
    assert sorted(r["input_id"] for r in rows) == sorted(f"in{i}" for i in range(12))


def test_a_part_that_cannot_be_written_stops_the_batch(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "out.parquet")
    store.start("p", "b1", {})
    writer = store.writer(SCHEMA, "run1")
    writer.add({**_row(0), "output_count": "not a number"})
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        writer.close()
