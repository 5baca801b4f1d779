"""The trace writer: group commits that each submitter awaits, draining on close, surviving a
SIGKILL with every acknowledged request, several writer processes on one database, redaction,
retention and credential scrubbing."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from promptdag.errors import ConfigError
from promptdag.provenance import sha256_text
from promptdag.tracing.store import (
    CALL_COLUMNS,
    REQUEST_COLUMNS,
    SCHEMA_VERSION,
    NoTracesError,
    TraceStore,
    TraceStoreError,
    TraceWriter,
    TraceWriterClosedError,
    erase_subject,
    prune,
    scrub,
)
from tests.promptdag.tracing.rows import call_row, request_row

REPO = Path(__file__).resolve().parents[3]


def ids(path: Path, table: str = "requests") -> list[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(f"SELECT request_id FROM {table} ORDER BY request_id").fetchall()
    conn.close()
    return [r[0] for r in rows]


def test_concurrent_submits_each_return_after_their_own_commit(tmp_path: Path) -> None:
    db = tmp_path / "traces.sqlite"
    writer = TraceWriter(db).start()
    reader = TraceStore(db)

    async def one(n: int) -> None:
        await writer.submit(request_row(f"r{n:03d}"), [call_row(chunk_index=i) for i in range(2)])
        conn = reader.connect()
        try:  # committed, so visible to another connection the moment submit returns
            assert conn.execute("SELECT 1 FROM requests WHERE request_id = ?", (f"r{n:03d}",))
            assert conn.execute(
                "SELECT count(*) FROM llm_calls WHERE request_id = ?", (f"r{n:03d}",)
            ).fetchone() == (2,)
        finally:
            conn.close()

    async def main() -> None:
        await asyncio.gather(*(one(n) for n in range(200)))

    asyncio.run(main())
    writer.close()
    assert ids(db) == [f"r{n:03d}" for n in range(200)]
    assert writer.committed == 200


def test_close_drains_the_queue_and_later_submits_fail_clearly(tmp_path: Path) -> None:
    db = tmp_path / "traces.sqlite"
    writer = TraceWriter(db).start()

    async def main() -> None:
        pending = [asyncio.ensure_future(writer.submit(request_row(f"r{n}"))) for n in range(50)]
        await asyncio.sleep(0)  # every submit is queued
        await asyncio.to_thread(writer.close)
        await asyncio.gather(*pending)
        with pytest.raises(TraceWriterClosedError, match=r"closed: the trace of request late"):
            await writer.submit(request_row("late"))

    asyncio.run(main())
    writer.close()  # idempotent
    assert len(ids(db)) == 50


def test_submit_before_start_says_to_start(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path / "traces.sqlite")
    with pytest.raises(TraceWriterClosedError, match=r"not started \(call start\(\) first\)"):
        asyncio.run(writer.submit(request_row("r")))


def test_reopening_the_database_appends(tmp_path: Path) -> None:
    db = tmp_path / "traces.sqlite"
    for name in ("first", "second"):
        writer = TraceWriter(db).start()
        asyncio.run(writer.submit(request_row(name), [call_row()]))
        writer.flush()
        writer.close()
    assert ids(db) == ["first", "second"]
    assert ids(db, "llm_calls") == ["first", "second"]


def test_a_bad_row_fails_only_its_own_submit(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path / "traces.sqlite").start()

    async def main() -> list[BaseException | None]:
        return await asyncio.gather(
            writer.submit(request_row("same")),
            writer.submit(request_row("same")),  # duplicate primary key
            writer.submit(request_row("other")),
            return_exceptions=True,
        )

    results = asyncio.run(main())
    writer.close()
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], TraceStoreError) and "request same" in str(results[1])


def test_sigkill_leaves_an_intact_database_with_every_acknowledged_request(
    tmp_path: Path,
) -> None:
    db = tmp_path / "traces.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.promptdag.tracing._writer_child", str(db)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acknowledged = []
    deadline = time.monotonic() + 60
    while len(acknowledged) < 300 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        acknowledged.append(line.strip())
    os.kill(child.pid, signal.SIGKILL)
    acknowledged += [line.strip() for line in child.stdout.read().splitlines() if line.strip()]
    child.stdout.close()
    assert child.wait() == -signal.SIGKILL
    assert len(acknowledged) >= 300
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {r[0] for r in conn.execute("SELECT request_id FROM requests")}
        orphans = conn.execute(
            "SELECT count(*) FROM llm_calls WHERE request_id NOT IN (SELECT request_id FROM requests)"
        ).fetchone()
    conn.close()
    assert set(acknowledged) <= stored
    assert orphans == (0,)


def _acknowledged(child: subprocess.Popen[str], at_least: int, timeout_s: float) -> list[str]:
    """Request ids `child` printed (each committed), until `at_least` or the time is up."""
    assert child.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while len(lines) < at_least and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
    return lines


def test_two_writer_processes_and_an_erase_share_one_database_without_losing_a_row(
    tmp_path: Path,
) -> None:
    """As the workers of `serve --workers 2` do: each process its own TraceWriter on one file.
    One is SIGKILLed mid-write, the other stops after it; an erase runs in between."""
    db = tmp_path / "traces.sqlite"
    TraceWriter(db).start().close()  # the schema exists before both start
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.promptdag.tracing._writer_child", str(db), prefix],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for prefix in ("w1", "w2")
    ]
    acknowledged: list[str] = []
    try:
        for child in children:
            acknowledged += _acknowledged(child, 200, 60)
        assert erase_subject(db, "nobody") == (0, 0)  # takes the write lock between commits
        for child in children:
            acknowledged += _acknowledged(child, 100, 60)
            os.kill(child.pid, signal.SIGKILL)
            assert child.stdout is not None
            acknowledged += [x.strip() for x in child.stdout.read().splitlines() if x.strip()]
            assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=30)
            if child.stdout is not None:
                child.stdout.close()
    assert {a.split("-")[0] for a in acknowledged} == {"w1", "w2"}
    assert len(acknowledged) >= 600
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        stored = {r[0] for r in conn.execute("SELECT request_id FROM requests")}
        calls = conn.execute("SELECT count(*) FROM llm_calls").fetchone()[0]
    conn.close()
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged requests are not stored"
    assert calls == 3 * len(stored)
    assert (tmp_path / "traces.sqlite.lock").stat().st_mode & 0o777 == 0o600


def test_redaction_stores_hashes_and_no_text(tmp_path: Path) -> None:
    db = tmp_path / "traces.sqlite"
    writer = TraceWriter(db, redact=True).start()
    call = call_row(prompt_text="SECRET-DOCUMENT-TEXT", response_text="SECRET-SUMMARY")
    asyncio.run(writer.submit(request_row("r"), [call]))
    writer.close()
    with sqlite3.connect(db) as conn:
        row = conn.execute(
            "SELECT prompt_text, prompt_sha256, response_text, response_sha256, redacted "
            "FROM llm_calls"
        ).fetchone()
        assert conn.execute("SELECT redacted FROM requests").fetchone() == (1,)
    conn.close()
    assert row == (
        None,
        sha256_text("SECRET-DOCUMENT-TEXT"),
        None,
        sha256_text("SECRET-SUMMARY"),
        1,
    )
    for file in tmp_path.iterdir():
        assert b"SECRET-" not in file.read_bytes()


def test_unredacted_rows_keep_text_hashes_and_retries(tmp_path: Path) -> None:
    db = tmp_path / "traces.sqlite"
    writer = TraceWriter(db).start()
    asyncio.run(writer.submit(request_row("r"), [call_row(attempts=3), call_row(attempts=0)]))
    writer.close()
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT call_index, prompt_text, prompt_sha256, retries, redacted FROM llm_calls"
        ).fetchall()
        started_at = conn.execute("SELECT started_at FROM requests").fetchone()[0]
    conn.close()
    text = call_row()["prompt_text"]
    assert rows == [(0, text, sha256_text(text), 2, 0), (1, text, sha256_text(text), 0, 0)]
    assert started_at.endswith("Z") and "T" in started_at


def old(request_id: str, days: float) -> dict[str, object]:
    ts = time.time() - days * 86_400
    return request_row(request_id, started_ts=ts, finished_ts=ts + 1)


def test_retention_prunes_at_start(tmp_path: Path) -> None:
    db = tmp_path / "traces.sqlite"
    writer = TraceWriter(db).start()
    for request_id, days in (("old", 3), ("recent", 0.5)):
        asyncio.run(writer.submit(old(request_id, days), [call_row()]))
    writer.close()
    TraceWriter(db, retain_days=1).start().close()
    assert ids(db) == ["recent"] and ids(db, "llm_calls") == ["recent"]


def test_retention_prunes_periodically(tmp_path: Path) -> None:
    db = tmp_path / "traces.sqlite"
    writer = TraceWriter(db, retain_days=1, prune_every_s=0.05).start()
    asyncio.run(writer.submit(old("old", 3), [call_row()]))
    assert "old" in ids(db)
    deadline = time.monotonic() + 5
    while ids(db) and time.monotonic() < deadline:
        time.sleep(0.02)
    writer.close()
    assert ids(db) == [] and ids(db, "llm_calls") == []


def test_prune_command_counts_and_checks_its_arguments(tmp_path: Path) -> None:
    db = tmp_path / "traces.sqlite"
    writer = TraceWriter(db).start()
    asyncio.run(writer.submit(old("old", 10), [call_row(), call_row()]))
    writer.close()
    assert prune(db, 7) == (1, 2)
    with pytest.raises(ConfigError, match="retain_days=0: use a number of days above 0"):
        prune(db, 0)
    with pytest.raises(NoTracesError, match="no traces yet at"):
        prune(tmp_path / "missing.sqlite", 7)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "HTTP 401: Incorrect API key provided: sk-proj-abc123XYZ789.",
            "HTTP 401: Incorrect API key provided: <redacted>.",
        ),
        (
            "sent Authorization: Bearer abc.def-123 upstream",
            "sent Authorization: <redacted> upstream",
        ),
        ("header was bearer tok_en/123= ok", "header was Bearer <redacted> ok"),
        ("url?api_key=hunter2hunter2&x=1", "url?api_key=<redacted>&x=1"),
        ('{"x-api-key": "abc123"}', '{"x-api-key": "<redacted>"}'),
        ("no secrets in here: task-list, skeleton", "no secrets in here: task-list, skeleton"),
        (None, None),
    ],
)
def test_scrub_replaces_anything_like_a_credential(text: str | None, expected: str | None) -> None:
    assert scrub(text) == expected


def test_error_messages_are_scrubbed_and_there_is_no_column_for_headers(tmp_path: Path) -> None:
    db = tmp_path / "traces.sqlite"
    writer = TraceWriter(db).start()
    message = "rejected (401): key sk-live-0123456789abcdef, header Bearer sk-live-0123456789"
    asyncio.run(writer.submit(request_row("r", status="error", error_message=message)))
    writer.close()
    assert b"0123456789" not in b"".join(f.read_bytes() for f in tmp_path.iterdir())
    columns = " ".join(REQUEST_COLUMNS + CALL_COLUMNS)
    assert not any(
        w in columns for w in ("header", "authorization", "api_key", "secret", "password")
    )


def test_readers_get_a_clear_error_without_a_database(tmp_path: Path) -> None:
    with pytest.raises(NoTracesError) as info:
        TraceStore(tmp_path / "traces.sqlite").connect()
    assert info.value.exit_code == 3
    assert "run `promptdag serve`" in str(info.value)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "traces.sqlite"
    TraceWriter(db).start().close()
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(TraceStoreError, match="schema v99, newer"):
        TraceStore(db).connect()
    with pytest.raises(TraceStoreError, match="schema v99, newer"):
        TraceWriter(db).start()


def test_retain_days_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="retain_days=-1"):
        TraceWriter(tmp_path / "t.sqlite", retain_days=-1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "connecting to https://alice:hunter2@proxy.local:8443/v1 failed",
            "connecting to https://<redacted>@proxy.local:8443/v1 failed",
        ),
        (
            "see https://h/v1?api-version=1&key=zzz for more",
            "see https://h/v1?api-version=1&key=<redacted> for more",
        ),
        ("plain http://127.0.0.1:8080/v1 stays", "plain http://127.0.0.1:8080/v1 stays"),
    ],
)
def test_scrub_redacts_credentials_in_urls(text: str, expected: str) -> None:
    assert scrub(text) == expected


def test_a_failed_calls_error_is_stored_scrubbed_with_its_incomplete_flag(tmp_path: Path) -> None:
    db = tmp_path / "traces.sqlite"
    writer = TraceWriter(db).start()
    failed = call_row(
        error_type="LLMUnavailableError",
        error_message="HTTP 502 from https://bob:s3cr3t-pw@gw.local/v1",
        response_text=None,
        attempts=3,
    )
    asyncio.run(
        writer.submit(request_row("r", incomplete=True), [call_row(incomplete=True), failed])
    )
    writer.close()
    with sqlite3.connect(db) as conn:
        stored = conn.execute(
            "SELECT incomplete, error_type, error_message, retries FROM llm_calls ORDER BY call_index"
        ).fetchall()
        [(incomplete,)] = conn.execute("SELECT incomplete FROM requests").fetchall()
    conn.close()
    assert incomplete == 1
    assert stored[0][:2] == (1, None)
    assert stored[1] == (
        None,
        "LLMUnavailableError",
        "HTTP 502 from https://<redacted>@gw.local/v1",
        2,
    )
    assert b"s3cr3t" not in b"".join(f.read_bytes() for f in tmp_path.iterdir())


def test_a_v3_database_gains_the_v4_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "traces.sqlite"
    writer = TraceWriter(db).start()
    asyncio.run(writer.submit(request_row("old", key_id="k1"), [call_row()]))
    writer.close()
    with sqlite3.connect(db) as conn:
        conn.execute("ALTER TABLE requests DROP COLUMN incomplete")
        for column in ("incomplete", "error_type", "error_message"):
            conn.execute(f"ALTER TABLE llm_calls DROP COLUMN {column}")
        conn.execute("PRAGMA user_version = 3")
    conn.close()
    assert TraceStore(db).connect().execute("PRAGMA user_version").fetchone()[0] == 3  # read as is
    writer = TraceWriter(db).start()
    asyncio.run(writer.submit(request_row("new"), [call_row(error_type="LLMRequestError")]))
    writer.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
        rows = conn.execute(
            "SELECT r.request_id, r.key_id, c.error_type FROM requests r JOIN llm_calls c "
            "USING (request_id) ORDER BY r.request_id"
        ).fetchall()
    conn.close()
    assert rows == [("new", None, "LLMRequestError"), ("old", "k1", None)]


def test_erase_deletes_one_subjects_requests_and_calls_and_leaves_no_text(tmp_path: Path) -> None:
    db = tmp_path / "traces.sqlite"
    writer = TraceWriter(db).start()

    async def main() -> None:
        for i, subject in enumerate(["user-7", "user-8", "user-7", None]):
            text = f"private words of {subject} number {i}"
            await writer.submit(
                request_row(f"r{i}", subject_id=subject),
                [call_row(prompt_text=text), call_row(prompt_text=text, chunk_index=1)],
            )

    asyncio.run(main())
    assert erase_subject(db, "user-7") == (2, 4)  # while the writer is still open
    asyncio.run(writer.submit(request_row("r9", subject_id="user-9")))
    writer.close()
    assert ids(db) == ["r1", "r3", "r9"]
    assert ids(db, "llm_calls") == ["r1", "r1", "r3", "r3"]
    assert erase_subject(db, "user-7") == (0, 0)
    data = b"".join(f.read_bytes() for f in tmp_path.iterdir())
    assert b"private words of user-7" not in data and b"private words of user-8" in data
    with pytest.raises(NoTracesError):
        erase_subject(tmp_path / "missing.sqlite", "user-7")


def test_the_trace_database_is_private_to_its_owner(tmp_path: Path) -> None:
    writer = TraceWriter(tmp_path / "new" / "traces.sqlite").start()
    writer.close()
    assert (tmp_path / "new" / "traces.sqlite").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700


def test_one_request_at_a_time_is_committed_at_once_and_a_crowd_shares_transactions(
    tmp_path: Path,
) -> None:
    db = tmp_path / "traces.sqlite"
    writer = TraceWriter(db, commit_interval_s=3600).start()  # a pause would hang the test
    other = os.open(db.with_name(db.name + ".lock"), os.O_RDWR)  # another writer's lock

    async def main() -> None:
        for n in range(5):  # one client: each batch holds one request, never a pause
            await asyncio.wait_for(writer.submit(request_row(f"s{n}"), [call_row()]), 60)
        for n in range(5):  # nor when it says nothing else is in flight
            await asyncio.wait_for(
                writer.submit(request_row(f"a{n}"), [call_row()], busy=False), 60
            )
        fcntl.flock(other, fcntl.LOCK_EX)  # the writer waits for it with what it took
        crowd = [
            asyncio.ensure_future(writer.submit(request_row(f"r{n:02d}"), [call_row()]))
            for n in range(50)
        ]
        await asyncio.sleep(0)  # every submit is queued
        fcntl.flock(other, fcntl.LOCK_UN)
        # After several requests in one transaction the writer pauses for the interval;
        # flush() (like close()) commits what is queued at once.
        await asyncio.wait_for(asyncio.to_thread(writer.flush), 60)
        await asyncio.wait_for(asyncio.gather(*crowd), 60)

    try:
        asyncio.run(main())
    finally:
        os.close(other)
        writer.close()
    assert writer.committed == 60
    assert 11 <= writer.commits <= 12  # the 50 submitted side by side: one or two transactions
    assert ids(db) == [
        *(f"a{n}" for n in range(5)),
        *(f"r{n:02d}" for n in range(50)),
        *(f"s{n}" for n in range(5)),
    ]


def test_a_busy_submitter_waits_for_the_interval_and_shares_one_transaction(
    tmp_path: Path,
) -> None:
    """A submit that says other requests are in flight is held for the rest of
    commit_interval_s after the previous transaction, so that the next submits join it."""
    db = tmp_path / "traces.sqlite"
    writer = TraceWriter(db, commit_interval_s=3600).start()  # held until flush()

    async def main() -> tuple[bool, bool]:
        # The first transaction has no earlier one to space it from: committed at once.
        await asyncio.wait_for(writer.submit(request_row("a"), [call_row()], busy=True), 60)
        first = asyncio.ensure_future(writer.submit(request_row("b"), busy=True))
        await asyncio.sleep(0.3)
        held = not first.done()
        second = asyncio.ensure_future(writer.submit(request_row("c"), [call_row()], busy=True))
        await asyncio.sleep(0.3)
        still_held = not first.done() and not second.done()
        await asyncio.wait_for(asyncio.to_thread(writer.flush), 60)
        await asyncio.wait_for(asyncio.gather(first, second), 60)
        return held, still_held

    try:
        held, still_held = asyncio.run(main())
    finally:
        writer.close()
    assert held and still_held
    assert (writer.committed, writer.commits) == (3, 2)  # b and c in one transaction
    assert ids(db) == ["a", "b", "c"]


def test_a_batch_over_sqlites_parameter_cap_is_split_and_keeps_every_row(tmp_path: Path) -> None:
    db = tmp_path / "traces.sqlite"
    writer = TraceWriter(db).start()
    sizes = {"big": 1500, "small": 3, "none": 0}  # 1500 calls: more than one INSERT can take

    async def main() -> None:
        await asyncio.gather(
            *(
                writer.submit(request_row(rid), [call_row(chunk_index=i) for i in range(n)])
                for rid, n in sizes.items()
            )
        )

    asyncio.run(main())
    writer.close()
    with sqlite3.connect(db) as conn:
        counts = dict(
            conn.execute(
                "SELECT request_id, count(*) FROM llm_calls GROUP BY request_id"
            ).fetchall()
        )
        order = conn.execute(
            "SELECT call_index, chunk_index FROM llm_calls WHERE request_id = 'big' "
            "ORDER BY call_index"
        ).fetchall()
    conn.close()
    assert counts == {"big": 1500, "small": 3}
    assert order == [(i, i) for i in range(1500)]
    assert ids(db) == ["big", "none", "small"]


def test_request_ids_made_together_differ_in_their_first_digits() -> None:
    """`promptdag replay 3f2a9c` finds a request by a short prefix, as git finds a commit: ids
    made in the same millisecond must not share one (time-ordered ids did, and the replay of a
    prefix became ambiguous)."""
    from promptdag.tracing.context import new_request_id

    ids = [new_request_id() for _ in range(100)]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert len({i[:8] for i in ids}) == 100
