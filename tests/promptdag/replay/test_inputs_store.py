"""Stored inputs: content-addressed and deduplicated, private, pruned, erased by subject, and
kept by the service only when asked (and not under --redact unless allowed)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promptdag.cli import app as cli_app
from promptdag.inputs_store import INPUTS_FILE, InputsStore
from tests.promptdag.service.conftest import AUTH, POEM, WORDS

PDF_LIKE = b"%PDF-1.4 the same bytes every time " * 20


def _store(tmp_path: Path, **kw) -> InputsStore:
    return InputsStore(tmp_path / "data" / INPUTS_FILE, **kw)


def test_values_are_stored_once_by_content_and_read_back_typed(tmp_path):
    store = _store(tmp_path)
    for i in range(3):
        store.put(
            f"r{i}", pipeline="p", variant="a", inputs={"doc": PDF_LIKE, "n": i}, subject_id="s"
        )
    assert store.counts() == (3, 4)  # one document, three numbers
    got = store.get("r1")
    assert got is not None
    assert got.inputs == {"doc": PDF_LIKE, "n": 1} and isinstance(got.inputs["doc"], bytes)
    assert (got.pipeline, got.variant, got.subject_id, got.result) == ("p", "a", "s", None)
    assert store.get("nope") is None


def test_the_file_is_private(tmp_path):
    store = _store(tmp_path)
    store.put("r", pipeline="p", variant="a", inputs={"x": "secret text"})
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert store.path.parent.stat().st_mode & 0o777 == 0o700


def test_erase_subject_removes_its_requests_and_the_values_only_they_used(tmp_path):
    store = _store(tmp_path)
    store.put(
        "a1",
        pipeline="p",
        variant="a",
        inputs={"doc": b"alice's file", "k": "shared"},
        subject_id="alice",
    )
    store.put(
        "b1",
        pipeline="p",
        variant="a",
        inputs={"doc": b"bob's file", "k": "shared"},
        subject_id="bob",
    )
    assert store.erase_subject("alice") == (1, 1)
    assert store.get("a1") is None and store.get("b1") is not None
    store.close()
    wal = store.path.with_name(store.path.name + "-wal")
    raw = store.path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    assert b"alice's file" not in raw  # secure_delete + a truncated log
    assert b"bob's file" in raw


def test_prune_drops_old_requests_and_orphaned_values(tmp_path):
    store = _store(tmp_path)
    store.put("old", pipeline="p", variant="a", inputs={"doc": b"old file"})
    store.put("new", pipeline="p", variant="a", inputs={"doc": b"new file"})
    conn = sqlite3.connect(store.path)
    conn.execute(
        "UPDATE requests SET stored_ts = ? WHERE request_id = 'old'", (time.time() - 3 * 86_400,)
    )
    conn.commit()
    conn.close()
    assert store.prune(2) == (1, 1)
    assert store.get("old") is None and store.get("new") is not None


def _db(tmp_path: Path) -> Path:
    return tmp_path / "data" / INPUTS_FILE


def test_the_service_stores_nothing_unless_asked(tiny, tmp_path):
    response = tiny.post(POEM, json={"topic": "rain"}, headers=AUTH)
    assert response.status_code == 200, response.text
    assert not _db(tmp_path).exists()


def test_the_service_stores_inputs_config_and_result_by_request_id(
    make_client, tiny_project, tmp_path
):
    client = make_client(project=tiny_project, store_inputs="on", config={"llm_temperature": "0.0"})
    response = client.post(
        WORDS,
        files={"doc": ("a.txt", b"one two three", "text/plain")},
        data={"subject_id": "user-7"},
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    stored = InputsStore(_db(tmp_path)).get(body["request_id"])
    assert stored is not None
    assert stored.inputs["doc"] == b"one two three" and stored.subject_id == "user-7"
    assert stored.config == {"llm_temperature": "0.0"} and stored.pipeline == "words"
    assert stored.result is not None and stored.result["answer"] == body["answer"] == 3
    assert stored.result["fingerprint"] == body["provenance"]["fingerprint"]


def test_redacted_service_stores_inputs_only_when_explicitly_allowed(
    make_client, tiny_project, tmp_path
):
    client = make_client(project=tiny_project, store_inputs="on", redact=True)
    assert client.post(POEM, json={"topic": "rain"}, headers=AUTH).status_code == 200
    assert not _db(tmp_path).exists()
    client = make_client(project=tiny_project, store_inputs="even-redacted", redact=True)
    rid = client.post(POEM, json={"topic": "snow"}, headers=AUTH).json()["request_id"]
    stored = InputsStore(_db(tmp_path)).get(rid)
    assert stored is not None and stored.inputs == {"topic": "snow"}


def test_traces_erase_subject_also_erases_stored_inputs(make_client, tiny_project, tmp_path):
    client = make_client(project=tiny_project, store_inputs="on")
    ids = [
        client.post(POEM, json={"topic": t, "subject_id": s}, headers=AUTH).json()["request_id"]
        for t, s in (("rain", "user-7"), ("sun", "user-8"))
    ]
    result = CliRunner().invoke(
        cli_app,
        [
            "traces",
            "erase",
            "--subject",
            "user-7",
            "--json",
            "--db",
            str(tmp_path / "data" / "traces.sqlite"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["inputs"] == {
        "path": str(_db(tmp_path)),
        "found": True,
        "requests": 1,
        "values": 1,
    }
    store = InputsStore(_db(tmp_path))
    assert store.get(ids[0]) is None and store.get(ids[1]) is not None


@pytest.mark.parametrize("flag", ["--store-inputs", "--store-inputs-when-redacted"])
def test_serve_help_names_the_flags(flag):
    result = CliRunner().invoke(cli_app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert flag in result.output


def test_a_store_with_retention_prunes_as_it_writes(tmp_path):
    store = _store(tmp_path, retain_days=1)
    store.put("old", pipeline="p", variant="a", inputs={"doc": b"old file"})
    conn = sqlite3.connect(store.path)
    conn.execute("UPDATE requests SET stored_ts = ?", (time.time() - 2 * 86_400,))
    conn.commit()
    conn.close()
    store._next_prune = 0.0  # the next write is due to prune (every 10 minutes otherwise)
    store.put("new", pipeline="p", variant="a", inputs={"doc": b"new file"})
    assert store.get("old") is None and store.counts() == (1, 1)
