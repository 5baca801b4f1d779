"""The wheel built from this repository installs the framework and nothing else (`promptdag`; no
dataflows/, prompts/, drivers/ or ci/ of the reference app), and a project made by the installed
`promptdag init`, outside the repository, runs, evaluates, locks, gates and serves.

The wheel goes into a fresh venv made without pip (pip installs into it with `--python`); the
dependencies come from this test's own environment through a `.pth` line, which puts its
site-packages on the path without running its `.pth` files, so the editable install of the
checkout cannot shadow the wheel."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.examples.scaffolded import TICKET, add_prompt_version, git, project_env, run

REPO = Path(__file__).resolve().parents[2]
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".promptdag",
    "out",
)


def build_wheel(tmp: Path) -> Path:
    """A wheel of a copy of the working tree (building in place would write build/ into it)."""
    source = tmp / "source"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCE)
    env = project_env(tmp)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    options = ["-q", "--no-deps", "--no-index", "--no-build-isolation"]
    run([*pip, "wheel", *options, "-w", str(tmp / "dist"), str(source)], tmp, env)
    (wheel,) = (tmp / "dist").glob("promptdag-*.whl")
    return wheel


def install(wheel: Path, tmp: Path) -> Path:
    """A venv with the wheel installed and this environment's dependencies visible; its bin/."""
    venv = tmp / "venv"
    env = project_env(tmp)
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp, env)
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", str(python)]
    run([*pip, "install", "-q", "--no-deps", "--no-index", str(wheel)], tmp, env)
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = run([str(python), "-c", purelib], tmp, env).stdout.strip()
    (Path(site) / "_test_dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8"
    )
    return venv / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def post_ticket(port: int, server: subprocess.Popen[str]) -> dict[str, object]:
    """POST one ticket once the service is ready (within 60 s)."""
    deadline = time.monotonic() + 60
    while True:
        assert server.poll() is None, f"promptdag serve exited: {server.communicate()[1][-2000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5):
                break
        except OSError:
            assert time.monotonic() < deadline, "promptdag serve was not ready within 60 s"
            time.sleep(0.3)
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/pipelines/triage/runs",
        data=json.dumps({"ticket": TICKET}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body: dict[str, object] = json.loads(response.read())
        return body


@pytest.mark.timeout(900)
def test_the_wheel_installs_promptdag_only_and_its_init_project_works(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {
        "promptdag",
        wheel.name.split("-py3")[0] + ".dist-info",
    }
    (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["promptdag"]
    assert "promptdag/templates/init/pyproject.toml" in names
    assert "promptdag/templates/init/dot-gitignore" in names
    assert not [n for n in names if n.startswith("promptdag/templates/") and n.endswith(".py")]

    bin_dir = install(wheel, tmp_path)
    env = project_env(tmp_path, bin_dir)
    work = tmp_path / "work"
    work.mkdir()
    python = str(bin_dir / "python")
    where = run([python, "-c", "import promptdag; print(promptdag.__file__)"], work, env).stdout
    assert where.startswith(str(tmp_path / "venv"))
    for app_package in ("dataflows", "prompts", "drivers", "ci"):
        probe = f"import importlib.util as u; assert u.find_spec({app_package!r}) is None"
        run([python, "-c", probe], work, env)

    cli = [str(bin_dir / "promptdag")]
    run([*cli, "init", "proj"], work, env)
    root = work / "proj"
    git(root, env, "init", "-q")
    git(root, env, "add", "-A")
    git(root, env, "commit", "-qm", "New promptdag project")
    answer = json.loads(
        run([*cli, "run", "triage", "--input", f"ticket={TICKET}", "--json"], root, env).stdout
    )
    assert answer["answer"]["category"] == "bug"
    run([*cli, "eval", "--suite", "triage"], root, env)
    run([*cli, "prompts", "lock"], root, env)
    run([*cli, "prompts", "lock", "--check"], root, env)
    add_prompt_version(root)
    run([*cli, "prompts", "lock"], root, env)
    git(root, env, "commit", "-qam", "Add triage_prompt@v3")
    gate = subprocess.run(
        [*cli, "gate", "HEAD~1"], cwd=root, env=env, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert gate.returncode == 3, gate.stderr  # passed its evals; a live prompt changed, unjudged

    port = free_port()
    server = subprocess.Popen(
        [*cli, "serve", "--insecure-no-auth", "--host", "127.0.0.1", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = post_ticket(port, server)
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=60)
    assert body["pipeline"] == "triage"
    assert body["answer"] == {"category": "bug", "urgency": "high", "reply": TICKET}
    assert server.returncode == 0, stderr[-2000:]
