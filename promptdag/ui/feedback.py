"""Feedback on recorded runs, from the traces page: a thumbs up or down and a comment per
request, kept next to the traces (`<data dir>/feedback.sqlite`, private like them), keyed by the
request id and the request's subject, so `promptdag traces erase --subject` erases it too, and
exportable as eval cases (`promptdag replay ID --to-case SUITE`)."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from promptdag.config import data_dir
from promptdag.datafiles import private_file
from promptdag.errors import InputError

__all__ = ["FEEDBACK_FILE", "all_feedback", "erase_feedback", "feedback_for", "set_feedback"]

FEEDBACK_FILE = "feedback.sqlite"
MAX_COMMENT_CHARS = 4000
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS feedback (request_id TEXT PRIMARY KEY, subject_id TEXT, "
    "rating INTEGER NOT NULL CHECK (rating IN (-1, 0, 1)), comment TEXT NOT NULL, "
    "updated_ts REAL NOT NULL)"
)


def _path(where: Path) -> Path:
    """`where` itself when it is the feedback file, else the project's."""
    return where if where.name == FEEDBACK_FILE else data_dir(where) / FEEDBACK_FILE


@contextlib.contextmanager
def _db(path: Path, write: bool) -> Iterator[sqlite3.Connection | None]:
    if not write and not path.is_file():
        yield None
        return
    if write:
        private_file(path)
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("PRAGMA secure_delete=ON")
        if write:
            conn.execute(_SCHEMA)
        yield conn
    finally:
        conn.close()


def set_feedback(
    where: Path, request_id: str, rating: int, comment: str, subject_id: str | None = None
) -> None:
    """Record (or replace) the feedback on one request: rating -1, 0 or 1 and a comment."""
    if rating not in (-1, 0, 1):
        raise InputError(f"rating {rating!r}: use 1 (thumbs up), -1 (thumbs down) or 0.")
    if len(comment) > MAX_COMMENT_CHARS:
        raise InputError(f"the comment has {len(comment)} characters; at most {MAX_COMMENT_CHARS}.")
    with _db(_path(where), write=True) as conn:
        assert conn is not None
        conn.execute(
            "INSERT OR REPLACE INTO feedback VALUES (?, ?, ?, ?, ?)",
            (request_id, subject_id, rating, comment, time.time()),
        )


def feedback_for(where: Path, request_id: str) -> dict[str, Any] | None:
    """The feedback on one request, or None."""
    with _db(_path(where), write=False) as conn:
        if conn is None or not _has_table(conn):
            return None
        row = conn.execute(
            "SELECT rating, comment, updated_ts FROM feedback WHERE request_id = ?", (request_id,)
        ).fetchone()
    return None if row is None else {"rating": row[0], "comment": row[1], "updated_ts": row[2]}


def all_feedback(where: Path) -> dict[str, dict[str, Any]]:
    """Every request's feedback, by request id."""
    with _db(_path(where), write=False) as conn:
        if conn is None or not _has_table(conn):
            return {}
        rows = conn.execute("SELECT request_id, rating, comment, updated_ts FROM feedback")
        return {r[0]: {"rating": r[1], "comment": r[2], "updated_ts": r[3]} for r in rows}


def erase_feedback(path: Path, subject_id: str) -> int:
    """Delete the feedback on every request of `subject_id`; how many."""
    with _db(path, write=False) as conn:
        if conn is None or not _has_table(conn):
            return 0
        deleted = conn.execute("DELETE FROM feedback WHERE subject_id = ?", (subject_id,)).rowcount
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return int(deleted)


def _has_table(conn: sqlite3.Connection) -> bool:
    return bool(
        conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='feedback'"
        ).fetchone()
    )
