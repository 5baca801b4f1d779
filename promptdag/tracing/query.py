"""Traces read back into pandas, from a read-only connection (safe while the service writes):
recent requests, one request with its LLM calls, per-group stats, and CSV/parquet export.

Stats are over requests: count, p50/p95 latency (linear interpolation between the closest
ranks, as numpy and pandas do), input/output tokens (sum and mean), cost (sum of the known
costs) and the share of requests that failed: in all (`error_rate`), through the request's
fault (`input_error_rate`: a 4xx, such as invalid input or a cap) and through the model's or
the server's (`server_error_rate`: a 5xx). A request's class comes from its recorded
`http_status`; rows written before trace schema v3 have none and are classed by error type
(promptdag's input errors are 4xx, anything else 5xx).
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd

from promptdag import errors
from promptdag.errors import InputError
from promptdag.tracing.store import TraceStore

__all__ = [
    "EXPORT_FORMATS",
    "EXPORT_TABLES",
    "LIST_COLUMNS",
    "STATS_GROUPS",
    "export",
    "list_requests",
    "parse_since",
    "show_request",
    "stats",
]

_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
STATS_GROUPS = {"variant": "variant", "prompt_version": "prompt_set", "model": "model"}
EXPORT_FORMATS = ("csv", "parquet")
EXPORT_TABLES = ("requests", "llm_calls")
LIST_COLUMNS = (
    *("request_id", "started_at", "source", "variant", "status", "http_status", "latency_s"),
    *("calls", "input_tokens", "output_tokens", "cost_usd", "key_id", "error_type"),
)
_INPUT_ERRORS = frozenset(
    name
    for name in errors.__all__
    if isinstance(cls := getattr(errors, name), type) and issubclass(cls, InputError)
)


def parse_since(text: str) -> timedelta:
    """`30m`, `1h`, `2d`, `1w`, `90s` → a timedelta; anything else is a ValueError saying so."""
    match = _SINCE.match(text)
    if not match:
        raise ValueError(
            f"--since {text!r} is not a duration: use a number and a unit s, m, h, d or w "
            "(e.g. 30m, 1h, 2d)."
        )
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


@contextlib.contextmanager
def _reader(db: str | Path | TraceStore) -> Iterator[sqlite3.Connection]:
    conn = (db if isinstance(db, TraceStore) else TraceStore(db)).connect()
    try:
        yield conn
    finally:
        conn.close()


def _since(since: timedelta | None, column: str = "started_ts") -> tuple[str, list[Any]]:
    if since is None:
        return "", []
    return f" WHERE {column} >= ?", [time.time() - since.total_seconds()]


def list_requests(
    db: str | Path | TraceStore, since: timedelta | None = None, limit: int = 50
) -> pd.DataFrame:
    """The most recent requests first, at most `limit`."""
    where, params = _since(since)
    with _reader(db) as conn:
        have = _columns(conn)
        columns = ", ".join(c if c in have else f"NULL AS {c}" for c in LIST_COLUMNS)
        sql = f"SELECT {columns} FROM requests{where} ORDER BY started_ts DESC LIMIT ?"
        return pd.read_sql(sql, conn, params=[*params, limit])


def _columns(conn: sqlite3.Connection) -> set[str]:
    """The columns of the requests table (older schemas lack the newer ones)."""
    return {row[1] for row in conn.execute("PRAGMA table_info(requests)")}


def show_request(
    db: str | Path | TraceStore, request_id: str
) -> tuple[dict[str, Any], pd.DataFrame]:
    """One request (by id, or a unique prefix of at least 6 characters) and its calls in order."""
    pattern = request_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    with _reader(db) as conn:
        found = _requests_where(conn, "request_id = ?", request_id)
        if found.empty and len(request_id) >= 6:
            found = _requests_where(conn, "request_id LIKE ? ESCAPE '\\'", pattern + "%")
        if len(found) != 1:
            _not_one(request_id, len(found), db)
        request = found.iloc[0].to_dict()
        calls = pd.read_sql(
            "SELECT * FROM llm_calls WHERE request_id = ? ORDER BY call_index",
            conn,
            params=[request["request_id"]],
        )
    if isinstance(request.get("prompt_versions"), str):
        request["prompt_versions"] = json.loads(request["prompt_versions"])
    return request, calls


def _requests_where(conn: sqlite3.Connection, where: str, value: str) -> pd.DataFrame:
    return pd.read_sql(f"SELECT * FROM requests WHERE {where} LIMIT 2", conn, params=[value])


def _not_one(request_id: str, found: int, db: str | Path | TraceStore) -> NoReturn:
    where = db.path if isinstance(db, TraceStore) else db
    if found == 0:
        raise InputError(
            f"no request {request_id!r} in {where}. `promptdag traces list` shows recent ones."
        )
    raise InputError(f"request id prefix {request_id!r} matches several requests: give more of it.")


def stats(
    db: str | Path | TraceStore,
    by: str = "variant",
    since: timedelta | None = None,
    pipeline: str | None = None,
) -> pd.DataFrame:
    """Per group of `by` (variant, prompt_version, model): requests, p50/p95 latency (s), tokens
    (sum and mean), cost (sum) and error rates: all, input (4xx), model and server (5xx); of
    one `pipeline`'s requests only when given."""
    if by not in STATS_GROUPS:
        raise ValueError(f"--by {by!r} is not a grouping. Use one of: {', '.join(STATS_GROUPS)}.")
    where, params = _since(since)
    if pipeline:
        where += (" AND" if where else " WHERE") + " pipeline = ?"
        params.append(pipeline)
    with _reader(db) as conn:
        status = "http_status" if "http_status" in _columns(conn) else "NULL AS http_status"
        sql = (
            f"SELECT {STATS_GROUPS[by]} AS {by}, status, {status}, error_type, latency_s, "
            f"input_tokens, output_tokens, cost_usd FROM requests{where}"
        )
        df = pd.read_sql(sql, conn, params=params)
    df[by] = df[by].fillna("(none)")
    failed = df["status"] == "error"
    by_type = df["error_type"].isin(_INPUT_ERRORS)
    by_status = df["http_status"].between(400, 499)
    input_error = failed & by_status.where(df["http_status"].notna(), by_type).astype(bool)
    df["failed"] = failed.astype(float)
    df["input_failed"] = input_error.astype(float)
    df["server_failed"] = (failed & ~input_error).astype(float)
    groups = df.groupby(by, sort=True)
    out = pd.DataFrame(
        {
            "requests": groups.size(),
            "p50_latency_s": groups["latency_s"].quantile(0.5),
            "p95_latency_s": groups["latency_s"].quantile(0.95),
            "input_tokens": groups["input_tokens"].sum(),
            "input_tokens_mean": groups["input_tokens"].mean(),
            "output_tokens": groups["output_tokens"].sum(),
            "output_tokens_mean": groups["output_tokens"].mean(),
            "cost_usd": groups["cost_usd"].sum(min_count=1),
            "error_rate": groups["failed"].mean(),
            "input_error_rate": groups["input_failed"].mean(),
            "server_error_rate": groups["server_failed"].mean(),
        }
    )
    return out.reset_index()


def export(
    db: str | Path | TraceStore,
    path: str | Path,
    fmt: str = "csv",
    table: str = "requests",
    since: timedelta | None = None,
) -> int:
    """Write a whole table (or its rows since `since`) to CSV or parquet; returns the row count."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"--format {fmt!r}: use one of {', '.join(EXPORT_FORMATS)}.")
    if table not in EXPORT_TABLES:
        raise ValueError(f"--table {table!r}: use one of {', '.join(EXPORT_TABLES)}.")
    where, params = _since(since, "r.started_ts")
    sql = (
        f"SELECT * FROM requests r{where} ORDER BY r.started_ts"
        if table == "requests"
        else "SELECT c.* FROM llm_calls c JOIN requests r USING (request_id)"
        f"{where} ORDER BY r.started_ts, c.call_index"
    )
    with _reader(db) as conn:
        df = pd.read_sql(sql, conn, params=params)
    if fmt == "csv":
        df.to_csv(path, index=False)
    else:
        df.to_parquet(path, index=False)
    return len(df)
