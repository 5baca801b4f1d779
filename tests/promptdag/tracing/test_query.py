"""Reading traces into pandas: exact stats on known rows, list/show, export round trips and
`--since` parsing."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from promptdag.errors import InputError
from promptdag.tracing.query import export, list_requests, parse_since, show_request, stats
from promptdag.tracing.store import (
    CALL_COLUMNS,
    REQUEST_COLUMNS,
    SCHEMA_VERSION,
    NoTracesError,
    TraceWriter,
)
from tests.promptdag.tracing.rows import KNOWN, request_row


def test_stats_per_variant_are_exact(known_db: Path) -> None:
    df = stats(known_db).set_index("variant")
    assert list(df.index) == ["(none)", "A", "B"]
    a, b = df.loc["A"], df.loc["B"]
    assert a["requests"] == 5 and b["requests"] == 2 and df.loc["(none)", "requests"] == 1
    assert a["p50_latency_s"] == pytest.approx(3.0) and a["p95_latency_s"] == pytest.approx(4.8)
    assert b["p50_latency_s"] == pytest.approx(15.0) and b["p95_latency_s"] == pytest.approx(19.5)
    assert a["input_tokens"] == 150 and a["input_tokens_mean"] == pytest.approx(30.0)
    assert a["output_tokens"] == 15 and a["output_tokens_mean"] == pytest.approx(3.0)
    assert a["cost_usd"] == pytest.approx(0.4)  # the one unknown cost is left out
    assert b["cost_usd"] == pytest.approx(3.0)
    assert a["error_rate"] == pytest.approx(0.2) and b["error_rate"] == 0.0


def test_stats_by_prompt_version_and_model(known_db: Path) -> None:
    by_prompts = stats(known_db, by="prompt_version").set_index("prompt_version")
    assert by_prompts["requests"].to_dict() == {"p@v1": 6, "p@v2": 2}
    by_model = stats(known_db, by="model").set_index("model")
    assert by_model["requests"].to_dict() == {"gpt-4o-mini": 2, "offline-extractive": 6}
    assert by_model.loc["offline-extractive", "error_rate"] == pytest.approx(1 / 6)


def test_stats_since_leaves_older_requests_out(known_db: Path) -> None:
    df = stats(known_db, since=timedelta(days=1))
    assert set(df["variant"]) == {"A", "B"}


def test_stats_reject_an_unknown_grouping(known_db: Path) -> None:
    with pytest.raises(ValueError, match=r"--by 'colour' is not a grouping. Use one of: variant"):
        stats(known_db, by="colour")


def test_list_is_most_recent_first_and_limited(known_db: Path) -> None:
    df = list_requests(known_db, limit=3)
    assert len(df) == 3 and list(df["variant"]) == ["A", "A", "A"]
    assert list(df["latency_s"]) == [1.0, 2.0, 3.0]
    assert len(list_requests(known_db)) == len(KNOWN)
    assert len(list_requests(known_db, since=timedelta(hours=4, minutes=30))) == 4


def test_show_finds_a_request_by_id_or_prefix(known_db: Path) -> None:
    full = list_requests(known_db, limit=1)["request_id"][0]
    request, calls = show_request(known_db, full[:6])
    assert request["request_id"] == full and request["status"] == "ok"
    assert request["prompt_versions"]["chunk_summary_prompt"]["version"] == "v2"
    assert list(calls["call_index"]) == [0, 1]
    assert list(calls["step"]) == ["chunk_summary", "final_summary"]


def test_show_says_when_there_is_no_such_request_or_several(tmp_path: Path) -> None:
    db = tmp_path / "traces.sqlite"
    writer = TraceWriter(db).start()
    for request_id in ("abcdef01", "abcdef02"):
        asyncio.run(writer.submit(request_row(request_id)))
    writer.close()
    with pytest.raises(InputError, match="matches several requests"):
        show_request(db, "abcdef")
    with pytest.raises(InputError, match=r"no request 'abc' in .*`promptdag traces list`"):
        show_request(db, "abc")  # under 6 characters: exact ids only
    assert show_request(db, "abcdef02")[0]["request_id"] == "abcdef02"


@pytest.mark.parametrize(
    ("table", "columns"), [("requests", REQUEST_COLUMNS), ("llm_calls", CALL_COLUMNS)]
)
def test_export_csv_and_parquet_round_trip(
    known_db: Path, tmp_path: Path, table: str, columns: tuple[str, ...]
) -> None:
    rows = len(KNOWN) * (1 if table == "requests" else 2)
    assert export(known_db, tmp_path / "t.csv", "csv", table) == rows
    assert export(known_db, tmp_path / "t.parquet", "parquet", table) == rows
    csv = pd.read_csv(tmp_path / "t.csv")
    parquet = pd.read_parquet(tmp_path / "t.parquet")
    assert list(csv.columns) == list(columns) == list(parquet.columns)
    assert list(csv["request_id"]) == list(parquet["request_id"])
    assert csv["input_tokens"].sum() == parquet["input_tokens"].sum()


def test_export_since_and_bad_arguments(known_db: Path, tmp_path: Path) -> None:
    assert export(known_db, tmp_path / "c.csv", "csv", "llm_calls", timedelta(days=1)) == 14
    with pytest.raises(ValueError, match="--format 'xlsx': use one of csv, parquet"):
        export(known_db, tmp_path / "x", "xlsx")
    with pytest.raises(ValueError, match="--table 'spans': use one of requests, llm_calls"):
        export(known_db, tmp_path / "x", "csv", "spans")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("1h", 3600), ("2d", 172_800), ("1w", 604_800), ("90s", 90), ("1.5h", 5400)],
)
def test_since_durations(text: str, seconds: float) -> None:
    assert parse_since(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "1", "h", "5x", "-1h", "1 hour", "1h30m"])
def test_since_rejects_anything_else_naming_the_units(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a duration: use a number and a unit s, m, h, d"):
        parse_since(text)


def test_readers_need_a_database(tmp_path: Path) -> None:
    with pytest.raises(NoTracesError):
        list_requests(tmp_path / "nothing.sqlite")


def _write(db: Path, rows: list[dict]) -> None:
    writer = TraceWriter(db).start()

    async def main() -> None:
        for row in rows:
            await writer.submit(row)

    asyncio.run(main())
    writer.close()


def test_stats_separate_input_errors_from_model_and_server_errors(tmp_path: Path) -> None:
    db = tmp_path / "traces.sqlite"
    outcomes = [  # (status, http_status, error_type)
        ("ok", 200, None),
        ("ok", 200, None),
        ("error", 422, "InputError"),
        ("error", 413, "upload-too-large"),
        ("error", 408, "body-timeout"),
        ("error", 502, "LLMOutputError"),
        ("error", 503, "CancelledError"),
        ("error", 500, "KeyError"),
        # rows from before schema v3 carry no status: classed by error type
        ("error", None, "LimitExceededError"),
        ("error", None, "LLMUnavailableError"),
    ]
    _write(
        db,
        [
            request_row(f"req{i:04d}", status=s, http_status=code, error_type=t)
            for i, (s, code, t) in enumerate(outcomes)
        ],
    )
    row = stats(db).set_index("variant").loc["baseline"]
    assert row["requests"] == 10
    assert row["error_rate"] == pytest.approx(0.8)
    assert row["input_error_rate"] == pytest.approx(0.4)  # 422, 413, 408, LimitExceededError
    assert row["server_error_rate"] == pytest.approx(0.4)  # 502, 503, 500, LLMUnavailableError


def test_a_v2_database_is_read_as_it_is_and_migrated_by_the_next_writer(
    known_db: Path, tmp_path: Path
) -> None:
    conn = sqlite3.connect(known_db)
    for column in ("key_id", "http_status", "client_request_id"):
        conn.execute(f"ALTER TABLE requests DROP COLUMN {column}")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    df = stats(known_db).set_index("variant")  # read-only: no migration
    assert df.loc["A", "input_error_rate"] == pytest.approx(0.2)  # InputError, by its type
    assert df.loc["A", "server_error_rate"] == 0.0
    assert list_requests(known_db, limit=1)["http_status"].isna().all()
    _write(known_db, [request_row("after-migration", key_id="k1", http_status=200)])
    conn = sqlite3.connect(known_db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    assert conn.execute(
        "SELECT key_id, http_status FROM requests WHERE request_id = 'after-migration'"
    ).fetchone() == ("k1", 200)
    conn.close()
    assert len(list_requests(known_db)) == len(KNOWN) + 1
