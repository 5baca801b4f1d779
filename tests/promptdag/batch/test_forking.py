"""Local workers forked from the batch process: a CLI batch forks its workers (and says so),
gives the same rows as fresh-interpreter workers, and a forked process's exit is reported as the
interpreter would report it. Each check runs in a fresh process: a fork must not copy the test
process and its threads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.promptdag.batch.projects import write_jsonl

pytestmark = pytest.mark.timeout(600)
PROMPTDAG = str(Path(sys.executable).with_name("promptdag"))
ROWS = ["input_id", "status", "output_greeting", "output_shout", "output_letters"]


def _batch(project: Path, source: Path, out: Path, **env: str) -> tuple[str, list[dict]]:
    argv = [PROMPTDAG, "batch", "greet", str(source), "--out", str(out), "--workers", "2"]
    proc = subprocess.run(
        [*argv, "-c", "llm_cache=off"],
        cwd=project,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = pq.read_table(out).select(ROWS).to_pylist()
    return proc.stderr, sorted(rows, key=lambda r: r["input_id"])


def test_a_cli_batch_forks_its_workers_with_the_same_rows_as_fresh_ones(
    greet_project: Path, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "names.jsonl", [{"id": n, "name": n} for n in "abcdefgh"])
    forked, rows = _batch(greet_project, source, tmp_path / "forked.parquet")
    fresh, fresh_rows = _batch(
        greet_project, source, tmp_path / "fresh.parquet", PROMPTDAG_BATCH_FORK="0"
    )
    assert "2 workers (2 forked)," in forked
    assert "2 workers," in fresh and "forked" not in fresh
    assert rows == fresh_rows and len(rows) == 8
    assert all(r["status"] == "ok" for r in rows)


SCRIPT = """
import asyncio, json, os, sys, time
from promptdag.batch.forking import can_fork, fork_worker

def stays():
    time.sleep(60)

async def main():
    assert can_fork()
    exits = fork_worker(lambda: sys.exit(5), [])
    raises = fork_worker(lambda: 1 / 0, [])
    killed = fork_worker(stays, [])
    killed.kill()
    codes = [await p.wait() for p in (exits, raises, killed)]
    print(json.dumps(codes))

asyncio.run(main())
"""


REFUSED = """
import asyncio, errno, json, os, sys
from pathlib import Path
from promptdag.batch import BatchOptions, run_batch

def refuse():
    raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

os.fork = refuse  # as under a process limit
notes = []
options = BatchOptions(
    source=sys.argv[1], out=Path(sys.argv[2]), project=sys.argv[3], progress=False, workers=2,
    overrides={"llm_cache": "off"},
)
summary = asyncio.run(run_batch(options, say=notes.append))
print(json.dumps({"ok": summary.ok, "notes": notes}))
"""


def test_a_refused_fork_starts_fresh_interpreters_instead(
    greet_project: Path, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "names.jsonl", [{"id": n, "name": n} for n in "abcd"])
    argv = [sys.executable, "-c", REFUSED, str(source), str(tmp_path / "out.parquet")]
    proc = subprocess.run(
        [*argv, str(greet_project)], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["ok"] == 4
    assert any("2 workers, " in n for n in report["notes"])
    assert not any("forked" in n for n in report["notes"])


def test_a_forked_process_reports_its_exit_as_the_interpreter_would() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == [5, 70, -9]
    assert "ZeroDivisionError" in proc.stderr  # the child's traceback, on its stderr
