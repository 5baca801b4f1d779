"""promptdag's data files (the response cache, the trace store) hold prompts and answers, so
they are private to their owner: created 0600 in a 0700 directory, and tightened if found open.
SQLite gives its -wal and -shm files the database file's mode."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["private_file", "set_pragmas", "write_transaction"]


def private_file(path: Path) -> None:
    """Create `path` 0600 (its directory 0700 if missing), or make an existing one 0600."""
    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)


@contextlib.contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken at once (BEGIN IMMEDIATE): committed when the block ends,
    rolled back when it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def set_pragmas(conn: sqlite3.Connection, pragmas: Sequence[str], timeout_s: float = 30.0) -> None:
    """Run each `PRAGMA`, waiting out other processes that open the same new file at the same
    moment: switching a new database to WAL takes a lock that SQLite does not wait for (no busy
    handler), so two workers starting together got "database is locked" at once."""
    deadline = time.monotonic() + timeout_s
    for pragma in pragmas:
        pause = 0.005
        while True:
            try:
                conn.execute(f"PRAGMA {pragma}")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(2 * pause, 0.1)
