"""Data files opened by several processes at the same moment: each of them gets its database,
none gets "database is locked" (switching a new file to WAL takes a lock SQLite does not wait
for). Run in a fresh process, which forks the openers."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, os, sys, tempfile, time
from pathlib import Path
from promptdag.llm.cache import ResponseCache
from promptdag.tracing.store import TraceWriter

def open_both(folder):
    ResponseCache(folder / "cache.sqlite", "use").get("some key")
    TraceWriter(folder / "traces.sqlite").start().close()

failures = []
for trial in range(25):
    folder = Path(tempfile.mkdtemp())
    start = time.time() + 0.1
    children = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            while time.time() < start:
                pass
            try:
                open_both(folder)
            except Exception as exc:
                print(type(exc).__name__, exc, file=sys.stderr)
                os._exit(1)
            os._exit(0)
        children.append(pid)
    failures += [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
print(json.dumps(sum(1 for code in failures if code)))
"""


def test_four_processes_opening_new_data_files_together_all_succeed() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == 0, proc.stderr
