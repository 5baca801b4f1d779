"""The trace store: one SQLite file (WAL) with a `requests` row per request and an `llm_calls`
row per LLM call.

`TraceWriter` owns the only writing connection, in a background thread: it commits everything
queued in one transaction (a group commit, `synchronous=FULL`, at most one per
`commit_interval_s` under load, each table's rows in a few multi-row INSERTs) and only then
resolves each submitter's future, so `await writer.submit(...)` returns once the rows are durable.
A transaction costs about as much CPU as the rows it stores (locks, the log's fsync, waking both
threads), so under load the writer lets submits gather for the rest of the interval rather than
committing each on its own; a submit with nobody else in flight is committed at once. A request
acknowledged after its submit is never lost, and a killed process leaves a consistent database
(SQLite's write-ahead log). The event loop never touches SQLite. `TraceStore` opens the file
read-only for `promptdag traces`. There is no column for headers or keys, and error messages
are scrubbed of anything that looks like a credential (keys, tokens, credentials in URLs).
`erase_subject` deletes one subject's requests and calls (`promptdag traces erase`).

Several processes may write one database (the workers of `promptdag serve --workers N`, each
with its own `TraceWriter`; `promptdag traces prune`/`erase` meanwhile). Every write
transaction holds an exclusive lock on `<db>.lock` (flock): a writer waiting for another sleeps
in the kernel and starts the moment the lock is free, and what queued meanwhile goes into its
next group commit. (SQLite's own busy handler polls with back-off of up to 100 ms: two writers
at 150 requests/s each waited 3 to 4 times longer at the p99 through it; see the benchmark
`trace-writers`.)
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import functools
import json
import logging
import os
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from promptdag.datafiles import private_file, set_pragmas, write_transaction
from promptdag.errors import ConfigError, NoTracesError, TraceStoreError, TraceWriterClosedError
from promptdag.provenance import sha256_text
from promptdag.redaction import redact_urls

__all__ = [
    "CALL_COLUMNS",
    "REQUEST_COLUMNS",
    "SCHEMA_VERSION",
    "NoTracesError",
    "TraceStore",
    "TraceStoreError",
    "TraceWriter",
    "TraceWriterClosedError",
    "erase_subject",
    "prune",
    "scrub",
    "trace_writer",
]

log = logging.getLogger("promptdag.tracing")
SCHEMA_VERSION = 4
_REQUEST_DDL = """request_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, started_ts REAL NOT NULL,
    finished_at TEXT NOT NULL, finished_ts REAL NOT NULL, source TEXT NOT NULL, subject_id TEXT,
    conversation_id TEXT, variant TEXT, assignment TEXT, dataflow TEXT, backend TEXT, model TEXT,
    git_sha TEXT, git_dirty INTEGER, fingerprint_id TEXT, graph_version TEXT, config_sha256 TEXT,
    prompt_versions TEXT, prompt_set TEXT, status TEXT NOT NULL, error_type TEXT,
    error_message TEXT, latency_s REAL, calls INTEGER, input_tokens INTEGER, output_tokens INTEGER,
    cost_usd REAL, pipeline TEXT, redacted INTEGER NOT NULL DEFAULT 0, key_id TEXT,
    http_status INTEGER, client_request_id TEXT, incomplete INTEGER"""
_CALL_DDL = """request_id TEXT NOT NULL REFERENCES requests (request_id) ON DELETE CASCADE,
    call_index INTEGER NOT NULL, node TEXT, dataflow TEXT, step TEXT, chunk_index INTEGER,
    prompt_node TEXT, prompt_version TEXT, prompt_source_sha256 TEXT, prompt_text TEXT,
    prompt_sha256 TEXT, response_text TEXT, response_sha256 TEXT, model TEXT, input_tokens INTEGER,
    output_tokens INTEGER, cost_usd REAL, latency_s REAL, attempts INTEGER, retries INTEGER,
    cached INTEGER, finish_reason TEXT, cache_key TEXT, finished_ts REAL,
    redacted INTEGER NOT NULL DEFAULT 0, incomplete INTEGER, error_type TEXT, error_message TEXT"""
REQUEST_COLUMNS = tuple(c.split()[0] for c in _REQUEST_DDL.split(","))
CALL_COLUMNS = tuple(c.split()[0] for c in _CALL_DDL.split(","))
_SCHEMA = (
    f"CREATE TABLE requests ({_REQUEST_DDL}, CHECK (status IN ('ok', 'error')))",
    "CREATE INDEX requests_started ON requests (started_ts)",
    "CREATE INDEX requests_variant ON requests (variant, started_ts)",
    f"CREATE TABLE llm_calls ({_CALL_DDL}, PRIMARY KEY (request_id, call_index))",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
_SECRETS = (
    (
        re.compile(
            r"(?i)\b(authorization|x-api-key|api[_-]?key)([\"']?\s*[:=]\s*[\"']?)"
            r"(?:bearer\s+)?[^\s\"',;&]+"
        ),
        r"\1\2<redacted>",
    ),
    (re.compile(r"(?i)\bbearer\s+[\w.~+/=-]+"), "Bearer <redacted>"),
    (re.compile(r"\bsk-[\w-]{6,}"), "<redacted>"),
)


class SpanSink(Protocol):
    def export(self, request: Mapping[str, Any], calls: Sequence[Mapping[str, Any]]) -> None: ...


def scrub(text: str | None) -> str | None:
    """`text` with bearer tokens, `sk-...` keys, `api_key=...` values and credentials in URLs
    replaced."""
    if not text:
        return text
    text = redact_urls(text)
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _WriterLock:
    """The lock every writer of one trace database holds around each write transaction: an
    exclusive flock on `<db>.lock` (an empty 0600 file; never on the database itself, whose
    POSIX locks a second descriptor's close would drop)."""

    def __init__(self, db: Path):
        self.path = db.with_name(db.name + ".lock")
        private_file(self.path)  # its directory too
        self.fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self.fd)


def _connect_rw(path: Path, lock: _WriterLock) -> sqlite3.Connection:
    private_file(path)
    conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
    set_pragmas(
        conn, ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "secure_delete=ON")
    )
    with _transaction(conn, lock):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            for statement in _SCHEMA:
                conn.execute(statement)
        elif version < SCHEMA_VERSION:
            # v2: the declared pipeline of each request. v3: the API key's id (never the key),
            # the HTTP status, the client's X-Request-Id. v4: whether an answer was incomplete
            # (requests, llm_calls) and a failed call's error (llm_calls).
            _add_missing_columns(conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version > SCHEMA_VERSION:
            raise TraceStoreError(_newer(path, version))
    return conn


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Add each column of the current DDL that an older database lacks (all are nullable or
    have defaults, so ADD COLUMN fits every one)."""
    for table, ddl in (("requests", _REQUEST_DDL), ("llm_calls", _CALL_DDL)):
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        for column in (" ".join(c.split()) for c in ddl.split(",")):
            if column.split()[0] not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")


def _newer(path: Path, version: int) -> str:
    return (
        f"{path} has trace schema v{version}, newer than this promptdag reads "
        f"(v{SCHEMA_VERSION}). Upgrade promptdag, or use another PROMPTDAG_DATA_DIR."
    )


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection, lock: _WriterLock) -> Iterator[None]:
    with lock.held(), write_transaction(conn):
        yield


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[tuple[sqlite3.Connection, _WriterLock]]:
    """A read-write connection to `path` and its writer lock, both closed at the end."""
    lock = _WriterLock(path)
    try:
        conn = _connect_rw(path, lock)
        try:
            yield conn, lock
        finally:
            conn.close()
    finally:
        lock.close()


def _prune(conn: sqlite3.Connection, lock: _WriterLock, retain_days: float) -> tuple[int, int]:
    cutoff = time.time() - retain_days * 86_400
    with _transaction(conn, lock):
        old = "SELECT request_id FROM requests WHERE started_ts < ?"
        calls = conn.execute(f"DELETE FROM llm_calls WHERE request_id IN ({old})", (cutoff,))
        requests = conn.execute("DELETE FROM requests WHERE started_ts < ?", (cutoff,))
    return requests.rowcount, calls.rowcount


def _check_days(retain_days: float | None) -> None:
    if retain_days is not None and not retain_days > 0:
        raise ConfigError([f"retain_days={retain_days:g}: use a number of days above 0."])


def prune(path: Path, retain_days: float) -> tuple[int, int]:
    """Delete the requests (and their calls) older than `retain_days`: (requests, calls)."""
    _check_days(retain_days)
    if not path.is_file():
        raise NoTracesError(path)
    with _writing(path) as (conn, lock):
        return _prune(conn, lock, retain_days)


def erase_subject(path: Path, subject_id: str) -> tuple[int, int]:
    """Delete every request of `subject_id` and its LLM calls: (requests, calls). The freed
    pages are overwritten (secure_delete) and the write-ahead log is checkpointed, so the rows'
    text does not linger in the files. Safe while a service writes to the same database."""
    if not path.is_file():
        raise NoTracesError(path)
    with _writing(path) as (conn, lock):
        with _transaction(conn, lock):
            mine = "SELECT request_id FROM requests WHERE subject_id = ?"
            calls = conn.execute(
                f"DELETE FROM llm_calls WHERE request_id IN ({mine})", (subject_id,)
            )
            requests = conn.execute("DELETE FROM requests WHERE subject_id = ?", (subject_id,))
        with lock.held():  # no writer may start until the log is truncated
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return requests.rowcount, calls.rowcount


def _prepare(
    request: Mapping[str, Any], calls: Sequence[Mapping[str, Any]], redact: bool
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The rows as stored: ISO times, JSON, hashes, scrubbed errors, texts dropped if redacted.
    Each dict holds its table's columns in their order (`_insert` reads its values as is)."""
    req: dict[str, Any] = dict(zip(REQUEST_COLUMNS, map(request.get, REQUEST_COLUMNS), strict=True))
    for kind in ("started", "finished"):
        if req[f"{kind}_ts"] is None:
            req[f"{kind}_ts"] = time.time()
        req[f"{kind}_at"] = req[f"{kind}_at"] or _iso(req[f"{kind}_ts"])
    if not isinstance(req["prompt_versions"], str | None):
        req["prompt_versions"] = json.dumps(req["prompt_versions"], sort_keys=True, default=str)
    req["error_message"] = scrub(req["error_message"])
    req["redacted"] = int(redact)
    rows = []
    for i, call in enumerate(calls):
        row = dict(zip(CALL_COLUMNS, map(call.get, CALL_COLUMNS), strict=True))
        row["request_id"], row["call_index"] = req["request_id"], i
        for kind in ("prompt", "response"):
            text = row[f"{kind}_text"]
            if row[f"{kind}_sha256"] is None and text is not None:
                row[f"{kind}_sha256"] = sha256_text(text)
            if redact:
                row[f"{kind}_text"] = None
        row["retries"] = max(0, int(row["attempts"] or 0) - 1)
        row["error_message"] = scrub(row["error_message"])
        row["redacted"] = int(redact)
        rows.append(row)
    return req, rows


# SQLite's default cap on the parameters of one statement (SQLITE_MAX_VARIABLE_NUMBER).
_MAX_PARAMETERS = 32_766


@functools.cache
def _insert_sql(table: str, columns: tuple[str, ...], rows: int) -> str:
    """INSERT of `rows` rows in one statement."""
    values = ", ".join([f"({', '.join('?' * len(columns))})"] * rows)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}"


def _insert_rows(
    conn: sqlite3.Connection, table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]]
) -> None:
    """`rows` in a few multi-row statements: one per set bit of their count (so a handful of
    statement texts serve every batch size and stay prepared in the connection's cache), each
    one step of the SQLite engine, i.e. one release of the GIL rather than one per row."""
    most = 1 << ((_MAX_PARAMETERS // len(columns)).bit_length() - 1)
    start = 0
    while start < len(rows):
        n = min(most, 1 << ((len(rows) - start).bit_length() - 1))
        params = [v for row in rows[start : start + n] for v in row]
        conn.execute(_insert_sql(table, columns, n), params)
        start += n


def _insert(
    conn: sqlite3.Connection, rows: Sequence[tuple[dict[str, Any], list[dict[str, Any]]]]
) -> None:
    """Every request of `rows` (from `_prepare`: each dict's values are its columns in order)
    and its calls."""
    _insert_rows(conn, "requests", REQUEST_COLUMNS, [tuple(r.values()) for r, _ in rows])
    calls = [tuple(c.values()) for _, cs in rows for c in cs]
    _insert_rows(conn, "llm_calls", CALL_COLUMNS, calls)


@dataclass
class _Item:
    request: Mapping[str, Any]
    calls: Sequence[Mapping[str, Any]]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    busy: bool  # the submitter had other requests in flight: more submits are coming


def _settle(results: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    for future, error in results:
        if future.done():  # the submitter was cancelled: its rows are committed all the same
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


_STOP = object()
_MAX_BATCH = 1000  # requests in one transaction at most
# After a transaction that served several requests (or during which more arrived), how long
# the writer keeps treating submits as part of a crowd that is worth waiting for.
_CROWD_HOLD_S = 1.0


class TraceWriter:
    """This process's writer of a trace database: `start()`, `await submit(...)` per request, `close()`.

    `submit` returns once the request's rows are committed (or raises TraceStoreError); rows
    queued together are committed in one transaction. After committing several requests at
    once (submits arriving side by side) the writer lets rows queue for the rest of
    `commit_interval_s` before the next transaction, so that under load one transaction, one
    lock and one wake-up of each thread serve many requests (each waits up to that long for
    its commit). It waits only when more submits are coming: a submitter says so with
    `busy=True` (the trace adapter does when other runs are in flight), and a transaction that
    served several requests, or during which more were submitted, says so for the next
    `_CROWD_HOLD_S`. One client submitting one request after another never waits.
    `retain_days` prunes older traces at start
    and every `prune_every_s`; `redact` stores only sha256 hashes of prompts and responses;
    `exporter` (an OtlpExporter) gets every committed request.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        redact: bool = False,
        retain_days: float | None = None,
        exporter: SpanSink | None = None,
        prune_every_s: float = 600.0,
        commit_interval_s: float = 0.05,
    ):
        _check_days(retain_days)
        self._wlock: _WriterLock | None = None
        self.path, self.redact, self.retain_days = Path(path), redact, retain_days
        self.exporter, self.prune_every_s = exporter, prune_every_s
        self.commit_interval_s = commit_interval_s
        self._hurry = threading.Event()  # flush() or close(): commit now, no pause
        self.committed = 0  # requests stored
        self.commits = 0  # transactions that stored them
        self._crowded_until = -1.0  # monotonic: until then, submits come in crowds
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._failed: Exception | None = None

    def start(self) -> TraceWriter:
        """Open (or create) the database and start the writer thread; raises if it cannot."""
        with self._lock:
            if self._thread is not None or self._closed:
                return self
            ready = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(ready,), name="promptdag-trace-writer", daemon=True
            )
            self._thread.start()
        ready.wait()
        if self._failed is not None:
            self._closed = True
            raise TraceStoreError(f"cannot open the trace database {self.path}: {self._failed}")
        atexit.register(self.close)
        return self

    async def submit(
        self,
        request_row: Mapping[str, Any],
        call_rows: Sequence[Mapping[str, Any]] = (),
        *,
        busy: bool = False,
    ) -> None:
        """Queue one request's rows; return when they are committed. `busy`: the submitter
        has other requests in flight, so more submits are coming: the writer may hold this one
        for the rest of `commit_interval_s` to commit them together."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._closed or self._thread is None:
                raise TraceWriterClosedError(
                    f"the trace writer for {self.path} is "
                    f"{'closed' if self._closed else 'not started (call start() first)'}: "
                    f"the trace of request {request_row.get('request_id')} was not stored."
                )
            self._queue.put(_Item(request_row, call_rows, loop, future, busy))
        await future

    def flush(self) -> None:
        """Block until everything submitted so far is committed."""
        done = threading.Event()
        with self._lock:
            if self._closed or self._thread is None:
                return
            self._queue.put(done)
            self._hurry.set()
        while not done.wait(0.1) and self._thread.is_alive():
            pass

    def close(self) -> None:
        """Commit everything queued, then close the database. Idempotent."""
        with self._lock:
            if not self._closed and self._thread is not None:
                self._queue.put(_STOP)
                self._hurry.set()
            self._closed = True
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        atexit.unregister(self.close)

    def _run(self, ready: threading.Event) -> None:
        conn: sqlite3.Connection | None = None
        try:
            self._wlock = _WriterLock(self.path)
            conn = _connect_rw(self.path, self._wlock)
            if self.retain_days is not None:
                _prune(conn, self._wlock, self.retain_days)
        except Exception as exc:
            self._failed = exc
        finally:
            ready.set()
        try:
            if self._failed is None:
                assert conn is not None
                self._serve(conn)
        finally:
            if conn is not None:
                conn.close()
            if self._wlock is not None:
                self._wlock.close()

    @property
    def _held(self) -> _WriterLock:
        assert self._wlock is not None, "the writer thread opens the lock before any write"
        return self._wlock

    def _serve(self, conn: sqlite3.Connection) -> None:
        try:
            next_prune = time.monotonic() + self.prune_every_s
            began = -1.0  # monotonic time the latest transaction began
            while True:
                if self.retain_days is not None and time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self.prune_every_s
                    self._prune(conn, self.retain_days)
                batch = self._next_batch(next_prune)
                if self._worth_waiting(batch, began):
                    self._pause(began + self.commit_interval_s)
                    self._drain(batch)
                began = time.monotonic()
                if self._process(conn, batch):
                    return
        except Exception as exc:  # a bug: fail every waiting submit rather than hang it
            log.exception("the trace writer for %s stopped", self.path)
            with self._lock:
                self._closed = True
                self._queue.put(_STOP)
            error = TraceStoreError(f"the trace writer for {self.path} stopped: {exc!r}")
            while not self._process(conn, self._next_batch(0.0), error):
                pass

    def _worth_waiting(self, batch: list[Any], began: float) -> bool:
        """Whether to let more submits join `batch` before committing it: the previous
        transaction began less than `commit_interval_s` ago, and more submits are coming (a
        submitter said it is busy, or submits came in a crowd within `_CROWD_HOLD_S`). Never
        for flush(), close() or a full batch."""
        now = time.monotonic()
        if len(batch) >= _MAX_BATCH or now >= began + self.commit_interval_s:
            return False
        if any(not isinstance(b, _Item) for b in batch):  # flush(), close()
            return False
        return now < self._crowded_until or any(b.busy for b in batch)

    def _pause(self, until: float) -> None:
        """Let submits queue up until `until` (monotonic), unless flush() or close() hurries:
        under load, one transaction (and one wake-up of each thread) then serves many
        requests."""
        wait = until - time.monotonic()
        if wait > 0 and not self._hurry.wait(wait):
            return
        self._hurry.clear()

    def _prune(self, conn: sqlite3.Connection, retain_days: float) -> None:
        try:
            _prune(conn, self._held, retain_days)
        except sqlite3.Error:
            log.exception("pruning traces older than %g days in %s failed", retain_days, self.path)

    def _next_batch(self, next_prune: float) -> list[Any]:
        """Everything queued now (waiting for the first item until the next prune is due)."""
        wait = None if self.retain_days is None else max(0.0, next_prune - time.monotonic())
        batch: list[Any] = []
        with contextlib.suppress(queue.Empty):
            batch.append(self._queue.get(timeout=wait))
            self._drain(batch)
        return batch

    def _drain(self, batch: list[Any]) -> None:
        """Add what is queued now to `batch`, up to _MAX_BATCH items or _STOP."""
        with contextlib.suppress(queue.Empty):
            while len(batch) < _MAX_BATCH and (not batch or batch[-1] is not _STOP):
                batch.append(self._queue.get_nowait())

    def _process(
        self, conn: sqlite3.Connection, batch: list[Any], failed: TraceStoreError | None = None
    ) -> bool:
        """Commit the batch's items, settle their futures, export them; True on _STOP."""
        items = [b for b in batch if isinstance(b, _Item)]
        errors: list[TraceStoreError | None] = [failed] * len(items)
        if failed is None and items:
            rows = [_prepare(i.request, i.calls, self.redact) for i in items]
            try:
                with _transaction(conn, self._held):
                    _insert(conn, rows)
                self.commits += 1
            except sqlite3.Error:  # one bad request fails only its own submit
                errors = [self._commit_one(conn, req, calls) for req, calls in rows]
            # Several requests together, or more submitted while this one committed (read
            # before any submitter is answered, so one client's next submit cannot count):
            # submits come in a crowd, and the next transactions may wait for it.
            if len(items) > 1 or not self._queue.empty():
                self._crowded_until = time.monotonic() + _CROWD_HOLD_S
            self._export([r for r, e in zip(rows, errors, strict=True) if e is None])
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for item, error in zip(items, errors, strict=True):
            by_loop.setdefault(item.loop, []).append((item.future, error))
        for loop, results in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
                loop.call_soon_threadsafe(_settle, results)
        self.committed += errors.count(None)
        for marker in batch:
            if isinstance(marker, threading.Event):
                marker.set()
        return any(b is _STOP for b in batch)

    def _export(self, rows: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> None:
        for req, calls in rows if self.exporter is not None else ():
            try:
                self.exporter.export(req, calls)  # type: ignore[union-attr]
            except Exception:
                log.exception("exporting the spans of request %s failed", req["request_id"])

    def _commit_one(
        self, conn: sqlite3.Connection, req: dict[str, Any], calls: list[dict[str, Any]]
    ) -> TraceStoreError | None:
        try:
            with _transaction(conn, self._held):
                _insert(conn, [(req, calls)])
            self.commits += 1
        except sqlite3.Error as exc:
            log.error("storing the trace of request %s failed: %s", req["request_id"], exc)
            return TraceStoreError(
                f"the trace of request {req['request_id']} could not be stored in {self.path}: {exc}"
            )
        return None


class TraceStore:
    """A trace database opened read-only (for `promptdag traces` and pandas)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def connect(self) -> sqlite3.Connection:
        """A read-only connection; NoTracesError when there is no database yet."""
        if not self.path.is_file():
            raise NoTracesError(self.path)
        conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if 0 < version <= SCHEMA_VERSION:
            return conn
        conn.close()
        if version == 0:
            raise NoTracesError(self.path)
        raise TraceStoreError(_newer(self.path, version))


def trace_writer(
    project_root: str | Path | None = None,
    *,
    redact: bool = False,
    retain_days: float | None = None,
    exporter: SpanSink | None = None,
) -> TraceWriter:
    """A started TraceWriter on the project's trace database (`traces.sqlite` in its data
    directory), the one `promptdag serve` and `promptdag traces` use. Close it when done."""
    from promptdag.config import data_dir
    from promptdag.project import find_project

    path = data_dir(find_project(project_root)) / "traces.sqlite"
    return TraceWriter(path, redact=redact, retain_days=retain_days, exporter=exporter).start()
