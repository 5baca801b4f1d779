"""A response cache keyed on the exact LLM request (backend, model, messages, parameters), in
SQLite under the data directory. Modes: `off`, `use` (read, and write what is missing) and
`replay-only` (read; a miss is an error: the deterministic CI mode).

What it keeps, and from whom:

- **Only complete answers.** `put` refuses a response cut off (`finish_reason` "length"),
  withheld ("content_filter") or refused (`refusal`), and `get` never serves one (an entry
  written by an older promptdag is deleted instead): a model that recovers is asked again.
- **Private files.** The database is created 0600 (its WAL and shared-memory files follow
  the database's mode), and its directory 0700 when the cache creates it; an existing cache
  file is set to 0600 when opened. An existing directory's mode is left alone.
- **Namespaces.** Every key includes a namespace, so requests of two namespaces never share an
  entry: one tenant cannot learn from a cache hit that another sent the same document. The LLM
  client takes it from `with cache_namespace(ns):` when set, else from the request's API key
  id (`RequestContext.key_id`, which the service sets per request): a service is namespaced per
  key with nothing more to wire. Without a namespace (the CLI, CI) the key is
  `request_key(request)`, unchanged, so recorded caches stay valid.
- **Retention.** `retain_days` deletes entries older than that when the file is opened and at
  most hourly after.
- **Redaction.** With `redact` the cache writes nothing (it still serves entries already
  there). A cached response is document-derived text (a summary quotes its document), and
  redaction means no document text at rest, as in the traces; a cache of hashes only could
  replay nothing. So a redacting service pays for every call; `llm_cache=off` says the same
  explicitly.
- **Subjects.** An entry written during a request with a subject id records it (`subject`),
  so `erase_subject` (`promptdag traces erase --subject ID`) deletes that subject's entries.
- **No credentials.** The request stored (and hashed) has credentials in its base URL
  redacted by the LLM client (promptdag.redaction).

`ResponseCache(path, mode, redact=..., retain_days=...)`, or `set_privacy(...)` on a built
pipeline's cache (`pipeline.llm.cache`), as the service does with its `--redact` and
`--retain-days`.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from promptdag.datafiles import private_file, set_pragmas
from promptdag.errors import ConfigError

__all__ = [
    "CACHE_FILE",
    "CACHE_MODES",
    "INCOMPLETE_FINISH_REASONS",
    "ResponseCache",
    "cache_key",
    "cache_namespace",
    "current_namespace",
    "erase_subject",
    "incomplete_reason",
    "request_key",
]

CACHE_FILE = "llm-cache.sqlite"
CACHE_MODES = ("off", "use", "replay-only")
INCOMPLETE_FINISH_REASONS = ("length", "content_filter")
_PRUNE_EVERY_S = 3600.0
_TABLE = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    created REAL NOT NULL,
    namespace TEXT,
    subject TEXT
)"""
_ADDED_COLUMNS = ("namespace TEXT", "subject TEXT")  # absent from files of promptdag ≤ 0.2
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS responses_created ON responses (created)",
    "CREATE INDEX IF NOT EXISTS responses_subject ON responses (subject)",
)

_NAMESPACE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "promptdag_cache_namespace", default=None
)


def request_key(request: dict[str, Any]) -> str:
    """sha256 of the request as canonical JSON: equal requests, equal keys."""
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def cache_key(request: dict[str, Any], namespace: str | None = None) -> str:
    """The key of `request` in `namespace`: `request_key(request)` without one."""
    return request_key({**request, "namespace": namespace} if namespace else request)


@contextlib.contextmanager
def cache_namespace(namespace: str | None) -> Iterator[None]:
    """Every LLM call inside (and in the tasks it starts) reads and writes the cache in
    `namespace` (None: the shared default namespace)."""
    token = _NAMESPACE.set(namespace or None)
    try:
        yield
    finally:
        _NAMESPACE.reset(token)


def current_namespace() -> str | None:
    return _NAMESPACE.get()


def incomplete_reason(response: Mapping[str, Any]) -> str | None:
    """Why a response (as the client stores it) is not a complete answer: "length",
    "content_filter", "refusal"; None when it is complete."""
    if response.get("refusal"):
        return "refusal"
    finish = response.get("finish_reason")
    return finish if finish in INCOMPLETE_FINISH_REASONS else None


def _check_days(retain_days: float | None) -> None:
    if retain_days is not None and not retain_days > 0:
        raise ConfigError([f"retain_days={retain_days:g}: use a number of days above 0."])


def _open(path: Path) -> sqlite3.Connection:
    private_file(path)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    try:
        set_pragmas(db, ("journal_mode=WAL", "synchronous=NORMAL", "secure_delete=ON"))
        db.execute("BEGIN IMMEDIATE")  # one process at a time creates or upgrades the table
        try:
            db.execute(_TABLE)
            have = {row[1] for row in db.execute("PRAGMA table_info(responses)")}
            for column in _ADDED_COLUMNS:
                if column.split()[0] not in have:
                    db.execute(f"ALTER TABLE responses ADD COLUMN {column}")
            for index in _INDEXES:
                db.execute(index)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    except BaseException:
        db.close()
        raise
    return db


class ResponseCache:
    """One SQLite file, safe to share between the threads and tasks of one process."""

    def __init__(
        self,
        path: Path,
        mode: str,
        *,
        redact: bool = False,
        retain_days: float | None = None,
    ):
        if mode not in CACHE_MODES:
            raise ConfigError(
                [f"llm_cache={mode!r} is not a cache mode. Use one of: {', '.join(CACHE_MODES)}."]
            )
        _check_days(retain_days)
        self.path = path
        self.mode = mode
        self.redact = redact
        self.retain_days = retain_days
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._next_prune = 0.0

    def set_privacy(self, *, redact: bool, retain_days: float | None) -> None:
        """Follow a service's `--redact` (write nothing) and `--retain-days` (prune older
        entries, at once if the file is open)."""
        _check_days(retain_days)
        with self._lock:
            self.redact, self.retain_days = redact, retain_days
            self._next_prune = 0.0

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = _open(self.path)
        if self.retain_days is not None and time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + _PRUNE_EVERY_S
            cutoff = time.time() - self.retain_days * 86_400
            self._db.execute("DELETE FROM responses WHERE created < ?", (cutoff,))
        return self._db

    def get(self, key: str) -> dict[str, Any] | None:
        """The complete response stored under `key`, else None."""
        with self._lock:
            db = self._conn()
            row = db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            response: dict[str, Any] = json.loads(row[0])
            if incomplete_reason(response) is not None:  # written before promptdag checked
                db.execute("DELETE FROM responses WHERE key = ?", (key,))
                return None
        return response

    def put(
        self,
        key: str,
        request: dict[str, Any],
        response: dict[str, Any],
        *,
        namespace: str | None = None,
        subject: str | None = None,
    ) -> bool:
        """Store a complete response; False (nothing stored) when it is incomplete or the
        cache redacts."""
        if self.redact or incomplete_reason(response) is not None:
            return False
        with self._lock:
            self._conn().execute(
                "INSERT OR REPLACE INTO responses "
                "(key, request, response, created, namespace, subject) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    key,
                    json.dumps(request, sort_keys=True),
                    json.dumps(response, sort_keys=True),
                    time.time(),
                    namespace,
                    subject,
                ),
            )
        return True

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn().execute("SELECT count(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def erase_subject(path: Path, subject: str) -> int:
    """Delete the entries recorded for `subject` from the cache file at `path` (0 when there is
    no file); the deleted pages are overwritten and the write-ahead log truncated."""
    if not path.is_file():
        return 0
    db = _open(path)
    try:
        deleted = db.execute("DELETE FROM responses WHERE subject = ?", (subject,)).rowcount
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(deleted)
    finally:
        db.close()
