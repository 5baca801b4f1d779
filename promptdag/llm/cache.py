"""A response cache keyed on the exact LLM request (backend, model, messages, parameters), in
SQLite under the data directory. Modes: `off`, `use` (read, and write what is missing) and
`replay-only` (read; a miss is an error: the deterministic CI mode)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from promptdag.errors import ConfigError

__all__ = ["CACHE_MODES", "ResponseCache", "request_key"]

CACHE_MODES = ("off", "use", "replay-only")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    created REAL NOT NULL
)"""


def request_key(request: dict[str, Any]) -> str:
    """sha256 of the request as canonical JSON: equal requests, equal keys."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class ResponseCache:
    """One SQLite file, safe to share between the threads and tasks of one process."""

    def __init__(self, path: Path, mode: str):
        if mode not in CACHE_MODES:
            raise ConfigError(
                [f"llm_cache={mode!r} is not a cache mode. Use one of: {', '.join(CACHE_MODES)}."]
            )
        self.path = path
        self.mode = mode
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=30
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            self._db = db
        return self._db

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = (
                self._conn()
                .execute("SELECT response FROM responses WHERE key = ?", (key,))
                .fetchone()
            )
        return json.loads(row[0]) if row else None

    def put(self, key: str, request: dict[str, Any], response: dict[str, Any]) -> None:
        with self._lock:
            self._conn().execute(
                "INSERT OR REPLACE INTO responses (key, request, response, created) VALUES (?, ?, ?, ?)",
                (
                    key,
                    json.dumps(request, sort_keys=True),
                    json.dumps(response, sort_keys=True),
                    time.time(),
                ),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn().execute("SELECT count(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
