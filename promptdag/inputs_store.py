"""Stored request inputs, so a recorded request can be replayed (`promptdag replay`).

Opt-in: `promptdag serve --store-inputs` keeps each request's inputs, the config it was served
with (`--config` on top of its variant) and, once it ran, its answer, outputs and rendered-prompt
hashes, in `<data dir>/inputs.sqlite`, keyed by the request id of its trace. Values are stored
content-addressed (sha256 of their bytes) and deduplicated: the same PDF sent a thousand times
is stored once. The file is private (0600 in a 0700 directory), freed pages are overwritten
(secure_delete), and it is covered by the same retention as the traces (`--retain-days`: the
requests older than that go, then every value no request uses any more) and by
`promptdag traces erase --subject` (`erase_subject`).

With `--redact` the traces keep no prompt or answer text, so inputs are not stored either,
unless the service is told so explicitly (`store_inputs="even-redacted"`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptdag.datafiles import private_file, set_pragmas, write_transaction
from promptdag.errors import ConfigError, TraceStoreError
from promptdag.inputs import LargeBytes

if TYPE_CHECKING:
    from promptdag.pipeline import Pipeline, RunResult
    from promptdag.service.settings import ServiceSettings

__all__ = [
    "INPUTS_FILE",
    "STORE_INPUTS_MODES",
    "InputsStore",
    "StoredRequest",
    "erase_stored_inputs",
    "stored_run",
]

log = logging.getLogger("promptdag.inputs")
INPUTS_FILE = "inputs.sqlite"
# "off": nothing stored; "on": stored unless traces are redacted; "even-redacted": stored always.
STORE_INPUTS_MODES = ("off", "on", "even-redacted")
_SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE blobs (sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, data BLOB NOT NULL)",
    "CREATE TABLE requests (request_id TEXT PRIMARY KEY, stored_ts REAL NOT NULL, "
    "subject_id TEXT, pipeline TEXT NOT NULL, variant TEXT NOT NULL, config TEXT NOT NULL, "
    "inputs TEXT NOT NULL, result TEXT)",
    "CREATE INDEX requests_stored ON requests (stored_ts)",
    "CREATE INDEX requests_subject ON requests (subject_id)",
    f"PRAGMA user_version = {_SCHEMA_VERSION}",
)
_ORPHANS = (
    "DELETE FROM blobs WHERE sha256 NOT IN "
    "(SELECT value ->> '$.sha256' FROM requests, json_each(requests.inputs))"
)
_PRUNE_EVERY_S = 600.0


def _encode(value: Any) -> tuple[str, bytes]:
    """An input value as (kind, bytes): a file's bytes as they are, anything else as JSON."""
    if isinstance(value, bytes | bytearray | memoryview):
        return "bytes", bytes(value)
    return "json", json.dumps(value, ensure_ascii=False, sort_keys=True).encode("utf-8")


def _decode(kind: str, data: bytes) -> Any:
    return LargeBytes(data) if kind == "bytes" else json.loads(data.decode("utf-8"))


@dataclass(frozen=True)
class StoredRequest:
    """One request's stored inputs and, when it ran to the end, its result."""

    request_id: str
    stored_ts: float
    subject_id: str | None
    pipeline: str
    variant: str
    config: dict[str, Any]  # the service's --config on top of the variant
    inputs: dict[str, Any]
    result: dict[str, Any] | None  # answer_text, answer, outputs, prompts (rendered sha256)


class InputsStore:
    """The stored-inputs database: `put` before a run, `put_result` after it, `get` to replay.

    Safe from several threads (one connection behind a lock) and several processes (SQLite's
    WAL with a busy timeout; each write is one short transaction)."""

    def __init__(self, path: str | Path, retain_days: float | None = None):
        if retain_days is not None and not retain_days > 0:
            raise ConfigError([f"retain_days={retain_days:g}: use a number of days above 0."])
        self.path = Path(path)
        self.retain_days = retain_days
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._next_prune = 0.0

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            private_file(self.path)
            conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=30, check_same_thread=False
            )
            set_pragmas(conn, ("journal_mode=WAL", "synchronous=FULL", "secure_delete=ON"))
            with write_transaction(conn):
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    for statement in _SCHEMA:
                        conn.execute(statement)
                elif version > _SCHEMA_VERSION:
                    conn.close()
                    raise TraceStoreError(
                        f"{self.path} has stored-inputs schema v{version}, newer than this "
                        f"promptdag reads (v{_SCHEMA_VERSION}). Upgrade promptdag."
                    )
            self._conn = conn
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def put(
        self,
        request_id: str,
        *,
        pipeline: str,
        variant: str,
        inputs: Mapping[str, Any],
        config: Mapping[str, Any] | None = None,
        subject_id: str | None = None,
    ) -> None:
        """Store one request's inputs (each value once, by content) before it runs."""
        manifest: dict[str, dict[str, Any]] = {}
        blobs: dict[str, bytes] = {}
        for name, value in sorted(inputs.items()):
            kind, data = _encode(value)
            digest = hashlib.sha256(data).hexdigest()
            manifest[name] = {"sha256": digest, "kind": kind, "size": len(data)}
            blobs[digest] = data
        with self._lock:
            conn = self._connect()
            self._maybe_prune(conn)
            with write_transaction(conn):
                conn.executemany(
                    "INSERT OR IGNORE INTO blobs (sha256, size, data) VALUES (?, ?, ?)",
                    [(d, len(b), b) for d, b in blobs.items()],
                )
                conn.execute(
                    "INSERT OR REPLACE INTO requests (request_id, stored_ts, subject_id, pipeline, "
                    "variant, config, inputs, result) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                    (
                        request_id,
                        time.time(),
                        subject_id,
                        pipeline,
                        variant,
                        json.dumps(dict(config or {}), sort_keys=True, default=str),
                        json.dumps(manifest, sort_keys=True),
                    ),
                )

    def put_result(
        self, request_id: str, result: RunResult, lock: Mapping[str, str] | None = None
    ) -> None:
        """Add what the request's run produced: its answer, outputs and rendered-prompt hashes,
        and the dependency lock it was served under (`provenance.dependency_lock`)."""
        from promptdag.pipeline import _jsonable

        record = {
            "answer_text": result.answer_text(),
            "answer": _jsonable(result.answer),
            "outputs": _jsonable(result.outputs),
            "prompts": {
                n: meta.get("rendered_sha256") for n, meta in result.fingerprint["prompts"].items()
            },
            "fingerprint": result.fingerprint["id"],
            "libraries": result.fingerprint.get("libraries"),
            "dependency_lock": None if lock is None else dict(lock),
        }
        text = json.dumps(record, ensure_ascii=False, sort_keys=True)
        with self._lock:
            conn = self._connect()
            with write_transaction(conn):
                conn.execute(
                    "UPDATE requests SET result = ? WHERE request_id = ?", (text, request_id)
                )

    def get(self, request_id: str) -> StoredRequest | None:
        """The stored request, or None when its inputs were not stored (or are gone)."""
        if not self.path.is_file():
            return None
        with self._lock:
            conn = self._connect()
            row = conn.execute(
                "SELECT request_id, stored_ts, subject_id, pipeline, variant, config, inputs, "
                "result FROM requests WHERE request_id = ?",
                (request_id,),
            ).fetchone()
            if row is None:
                return None
            manifest: dict[str, dict[str, Any]] = json.loads(row[6])
            inputs: dict[str, Any] = {}
            for name, meta in manifest.items():
                found = conn.execute(
                    "SELECT data FROM blobs WHERE sha256 = ?", (meta["sha256"],)
                ).fetchone()
                if found is None:
                    raise TraceStoreError(
                        f"the stored input {name!r} of request {request_id} ({meta['sha256'][:12]}) "
                        f"is missing from {self.path}: the file was changed by hand."
                    )
                inputs[name] = _decode(meta["kind"], found[0])
        return StoredRequest(
            request_id=row[0],
            stored_ts=row[1],
            subject_id=row[2],
            pipeline=row[3],
            variant=row[4],
            config=json.loads(row[5]),
            inputs=inputs,
            result=json.loads(row[7]) if row[7] else None,
        )

    def results(self, request_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The stored results of those of `request_ids` that ran to the end (no input read)."""
        if not self.path.is_file() or not request_ids:
            return {}
        with self._lock:
            rows = _rows_for(
                self._connect(),
                "SELECT request_id, result FROM requests WHERE result IS NOT NULL AND",
                request_ids,
            )
        return {rid: json.loads(text) for rid, text in rows}

    def configs(self, request_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The config each of `request_ids` with stored inputs was served with (no input read)."""
        if not self.path.is_file() or not request_ids:
            return {}
        with self._lock:
            rows = _rows_for(
                self._connect(), "SELECT request_id, config FROM requests WHERE", request_ids
            )
        return {rid: json.loads(text) for rid, text in rows}

    def stored_ids(self, request_ids: list[str]) -> set[str]:
        """Which of `request_ids` have stored inputs."""
        if not self.path.is_file() or not request_ids:
            return set()
        with self._lock:
            rows = _rows_for(self._connect(), "SELECT request_id FROM requests WHERE", request_ids)
        return {r[0] for r in rows}

    def input_digests(self, request_ids: list[str]) -> dict[str, str]:
        """Each stored request's inputs as one digest (same inputs, same digest): "inputs <sha>"."""
        if not self.path.is_file() or not request_ids:
            return {}
        out: dict[str, str] = {}
        with self._lock:
            rows = _rows_for(
                self._connect(),
                "SELECT request_id, pipeline, inputs FROM requests WHERE",
                request_ids,
            )
        for rid, pipeline, manifest in rows:
            shas = {n: m["sha256"] for n, m in json.loads(manifest).items()}
            canonical = json.dumps([pipeline, shas], sort_keys=True)
            out[rid] = "inputs " + hashlib.sha256(canonical.encode()).hexdigest()[:12]
        return out

    def counts(self) -> tuple[int, int]:
        """(stored requests, distinct stored values)."""
        with self._lock:
            conn = self._connect()
            requests = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
            blobs = conn.execute("SELECT count(*) FROM blobs").fetchone()[0]
        return int(requests), int(blobs)

    def prune(self, retain_days: float) -> tuple[int, int]:
        """Delete the requests stored over `retain_days` ago and the values no request uses:
        (requests, values)."""
        with self._lock:
            return _prune(self._connect(), retain_days)

    def erase_subject(self, subject_id: str) -> tuple[int, int]:
        """Delete every stored request of `subject_id` and the values only they used, overwrite
        the freed pages and truncate the write-ahead log: (requests, values)."""
        with self._lock:
            conn = self._connect()
            with write_transaction(conn):
                requests = conn.execute(
                    "DELETE FROM requests WHERE subject_id = ?", (subject_id,)
                ).rowcount
                blobs = conn.execute(_ORPHANS).rowcount
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return requests, blobs

    def _maybe_prune(self, conn: sqlite3.Connection) -> None:
        if self.retain_days is None or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + _PRUNE_EVERY_S
        _prune(conn, self.retain_days)


def _rows_for(conn: sqlite3.Connection, select: str, request_ids: list[str]) -> list[Any]:
    """The rows of `select` (a query ending in WHERE, or in AND after a condition) for
    `request_ids`, asked 500 ids at a time (SQLite caps the parameters of one statement)."""
    rows: list[Any] = []
    for start in range(0, len(request_ids), 500):
        part = request_ids[start : start + 500]
        marks = ",".join("?" * len(part))
        rows += conn.execute(f"{select} request_id IN ({marks})", part).fetchall()
    return rows


def _prune(conn: sqlite3.Connection, retain_days: float) -> tuple[int, int]:
    cutoff = time.time() - retain_days * 86_400
    with write_transaction(conn):
        requests = conn.execute("DELETE FROM requests WHERE stored_ts < ?", (cutoff,)).rowcount
        blobs = conn.execute(_ORPHANS).rowcount
    return requests, blobs


def erase_stored_inputs(path: Path, subject_id: str) -> tuple[int, int]:
    """`InputsStore(path).erase_subject(subject_id)`, or (0, 0) when there is no such file."""
    if not path.is_file():
        return 0, 0
    store = InputsStore(path)
    try:
        return store.erase_subject(subject_id)
    finally:
        store.close()


_STORES: dict[tuple[Path, float | None], InputsStore] = {}
_STORES_LOCK = threading.Lock()
_WARNED: set[Path] = set()


def _service_store(settings: ServiceSettings) -> InputsStore | None:
    """This process's store for the service's settings, or None when inputs are not stored."""
    mode = getattr(settings, "store_inputs", "off")
    if mode == "off":
        return None
    from promptdag.config import data_dir
    from promptdag.project import find_project

    path = data_dir(find_project(settings.project)) / INPUTS_FILE
    if settings.redact and mode != "even-redacted":
        if path not in _WARNED:
            _WARNED.add(path)
            log.warning(
                "--store-inputs with --redact: no inputs are stored (the traces keep no text). "
                "Add --store-inputs-when-redacted to store them anyway."
            )
        return None
    key = (path, settings.retain_days)
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = InputsStore(path, retain_days=settings.retain_days)
    return store


async def stored_run(
    settings: ServiceSettings, pipeline: Pipeline, inputs: Mapping[str, Any]
) -> RunResult:
    """`pipeline.run(inputs)`, storing the inputs first and the result after when the service
    stores inputs (`settings.store_inputs`). The request is the current RequestContext's."""
    import asyncio

    from promptdag.tracing.context import current_request

    store = _service_store(settings)
    ctx = current_request()
    if store is None or ctx is None:
        return await pipeline.run(inputs)
    await asyncio.to_thread(
        store.put,
        ctx.request_id,
        pipeline=pipeline.name,
        variant=pipeline.variant,
        inputs=inputs,
        config=settings.config,
        subject_id=ctx.subject_id,
    )
    result = await pipeline.run(inputs)
    lock = _served_lock(pipeline.project.root)
    await asyncio.to_thread(store.put_result, ctx.request_id, result, lock)
    return result


_LOCKS: dict[Path, dict[str, str] | None] = {}


def _served_lock(root: Path) -> dict[str, str] | None:
    """The dependency lock this process serves `root` under, read once: the environment was
    installed from it when the service started, whatever the file holds later."""
    from promptdag.provenance import dependency_lock

    if root not in _LOCKS:
        _LOCKS[root] = dependency_lock(root)
    return _LOCKS[root]
