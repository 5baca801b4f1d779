"""`promptdag batch` from the command line: a crash (kill -9) mid-batch, then --resume runs
only what is missing; an existing output needs --resume or --overwrite."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from promptdag.cli import app
from tests.fakes.openai_server import OpenAIServer
from tests.promptdag.batch.projects import GREET_MODEL, write_jsonl

pytestmark = pytest.mark.timeout(600)
PROMPTDAG = str(Path(sys.executable).with_name("promptdag"))


def _marked(marker: str) -> list[int]:
    """PIDs of this user's processes whose environment holds `marker` (the batch's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile, or not ours
    return found


def _ok_ids(parts: Path) -> set[str]:
    ids: set[str] = set()
    for part in sorted(parts.glob("part-*.parquet")):
        try:
            rows = pq.read_table(part, columns=["input_id", "status"]).to_pylist()
        except FileNotFoundError:
            continue  # merged away meanwhile
        ids |= {r["input_id"] for r in rows if r["status"] == "ok"}
    return ids


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_after_kill_9_resume_runs_only_the_missing_inputs_and_each_input_is_once_in_the_output(
    greet_project: Path, tmp_path: Path
) -> None:
    total = 40
    names = [f"n{i:02d}" for i in range(total)]
    source = write_jsonl(tmp_path / "names.jsonl", [{"id": n, "name": n} for n in names])
    out = tmp_path / "runs" / "greet.parquet"
    parts = out.with_name(out.name + ".parts")
    marker = f"batch-test-{uuid.uuid4().hex}"
    with OpenAIServer(default_delay_s=0.4) as server:
        env = {
            **os.environ,
            "OPENAI_API_KEY": "sk-test",
            "PROMPTDAG_TEST_MARKER": marker,
            "PROMPTDAG_DATA_DIR": str(tmp_path / "data"),
        }
        argv = [PROMPTDAG, "batch", "greet", str(source), "--out", str(out), "--workers", "2"]
        argv += ["--in-flight", "2", "--quiet", "-c", "llm_backend=openai"]
        argv += ["-c", f"llm_model={GREET_MODEL}", "-c", f"llm_base_url={server.base_url}"]
        first = subprocess.Popen(
            argv,
            cwd=greet_project,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 300
        while len(_ok_ids(parts)) < 4 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        first.kill()  # SIGKILL: no cleanup, the parts are what survives
        _, stderr = first.communicate(timeout=60)
        done_before = _ok_ids(parts)
        assert 4 <= len(done_before) < total, stderr
        assert not out.exists()  # never merged: the batch died first
        # the workers notice their batch is gone and exit by themselves
        deadline = time.monotonic() + 120
        while _marked(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _marked(marker) == []
        server.reset()
        resumed = subprocess.run(
            [*argv, "--resume", "--json"],
            cwd=greet_project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert resumed.returncode == 0, resumed.stderr
        summary = json.loads(resumed.stdout)
        assert summary["counts"] == {
            "ok": total - len(done_before),
            "error": 0,
            "skipped": len(done_before),
            "not_run": 0,
        }
        asked = {
            m["json"]["messages"][-1]["content"].split()[3].rstrip(".") for m in server.history
        }
        assert asked == set(names) - done_before  # "Say hello to NAME. ..."
        table = pq.read_table(out)
        ids = table["input_id"].to_pylist()
        assert len(ids) == len(set(ids)) == total
        assert set(table["status"].to_pylist()) == {"ok"}
        assert ids == names and table["input_index"].to_pylist() == list(range(total))
        assert not parts.exists()
        # resuming a finished batch starts no worker and runs nothing
        again = subprocess.run(
            [*argv, "--resume"], cwd=greet_project, env=env, capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "starting the local engine" not in again.stderr
    assert f"{total} already ok" in again.stderr


def test_an_existing_output_needs_resume_or_overwrite(
    greet_project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(greet_project)
    source = write_jsonl(tmp_path / "names.jsonl", [{"name": "ada"}])
    out = tmp_path / "out.parquet"
    out.write_bytes(b"")
    result = CliRunner().invoke(app, ["batch", "greet", str(source), "--out", str(out)])
    assert result.exit_code == 2
    assert "already exists: add --resume" in result.output
    result = CliRunner().invoke(
        app,
        ["batch", "greet", str(source), "--out", str(tmp_path / "o.parquet"), "--engine", "spark"],
    )
    assert result.exit_code == 2 and "--engine 'spark': use one of local, ray" in result.output
