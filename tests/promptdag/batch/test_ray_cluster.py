"""A two-node Ray cluster on 127.0.0.1 (`ray start --head` plus `ray start --address`, one CPU
each) runs a batch end to end through `promptdag batch --engine ray --ray-address`.

Token authentication comes from the environment (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN), so
nothing is written to ~/.ray; each `ray start` runs in a session of its own, and teardown ends
exactly those process groups and removes the cluster's temporary directory."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.promptdag.batch.projects import TICKETS, write_jsonl

pytest.importorskip("ray")
pytestmark = pytest.mark.timeout(900)
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(groups: list[int]) -> None:
    """SIGTERM each process group, then SIGKILL what is left."""
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(g) for g in groups):
        time.sleep(0.2)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def cluster() -> Iterator[tuple[str, dict[str, str]]]:
    """`HOST:PORT` of the head, and the environment a driver needs to connect."""
    temp = tempfile.mkdtemp(prefix="pdrc", dir="/tmp")  # short: Ray's socket paths are capped
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    port = _free_port()
    common = [f"--temp-dir={temp}", "--node-ip-address=127.0.0.1", "--disable-usage-stats"]
    groups: list[int] = []
    try:
        for argv in (
            ["--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false"],
            [f"--address=127.0.0.1:{port}", "--num-cpus=1"],
        ):
            # a session of its own: the daemons it leaves behind share its process group
            started = subprocess.Popen(
                [str(BIN / "ray"), "start", *argv, *common],
                env=env,
                start_new_session=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            groups.append(started.pid)
            output, _ = started.communicate(timeout=240)
            assert started.returncode == 0, output
        yield f"127.0.0.1:{port}", env
    finally:
        _stop(groups)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_two_node_ray_cluster_runs_a_batch_end_to_end(
    cluster: tuple[str, dict[str, str]], triage_project: Path, tmp_path: Path
) -> None:
    address, env = cluster
    rows = [{"id": f"t{i}", "ticket": TICKETS[i % len(TICKETS)]} for i in range(8)]
    tickets = write_jsonl(tmp_path / "tickets.jsonl", rows)
    out = tmp_path / "triage.parquet"
    argv = [str(BIN / "promptdag"), "batch", "triage", str(tickets), "--out", str(out)]
    argv += ["--engine", "ray", "--ray-address", address, "--json", "--quiet"]
    argv += ["-c", "llm_cache=off"]
    env = {**env, "PROMPTDAG_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        argv, cwd=triage_project, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["engine"] == "ray" and summary["workers"] == 2
    assert summary["counts"]["ok"] == 8
    table = pq.read_table(out).to_pylist()
    assert [r["input_id"] for r in table] == [f"t{i}" for i in range(8)]
    assert {r["status"] for r in table} == {"ok"}
    nodes = {r["worker"].split(":")[0] for r in table}
    assert len(nodes) == 2  # one worker per node, each took items
