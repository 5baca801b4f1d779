"""`promptdag init`: a new project that runs, evaluates, locks, tests, gates and serves out of
the box with the offline model, and a command that never overwrites anything."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from promptdag.cli import app
from promptdag.scaffold import scaffold, template_files
from tests.e2e.conftest import promptdag_bin
from tests.examples.scaffolded import (
    TICKET,
    add_prompt_version,
    git,
    project_env,
    readme_commands,
    run,
)


def test_init_help_has_examples() -> None:
    result = CliRunner().invoke(app, ["init", "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output
    assert "promptdag init ticket-triage" in result.output


def test_init_writes_the_template_and_prints_next_steps(tmp_path: Path) -> None:
    target = tmp_path / "triage"
    result = CliRunner().invoke(app, ["init", str(target)])
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()) == (
        sorted(template_files())
    )
    assert (target / ".gitignore").is_file() and not list(target.rglob("*-tpl"))
    assert "Next steps:" in result.output
    assert "promptdag eval --suite triage" in result.output


def test_init_json_lists_the_files_and_the_next_steps(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["init", str(tmp_path / "p"), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["files"] == sorted(template_files())
    assert any(step.startswith("promptdag run triage") for step in payload["next_steps"])


@pytest.mark.parametrize("existing", ["notes.txt", ".git"])
def test_init_refuses_a_non_empty_directory_and_writes_nothing(
    tmp_path: Path, existing: str
) -> None:
    (tmp_path / existing).write_text("mine", encoding="utf-8")
    result = CliRunner().invoke(app, ["init", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not empty" in result.output and "never overwrites" in result.output
    assert [p.name for p in tmp_path.iterdir()] == [existing]
    assert (tmp_path / existing).read_text(encoding="utf-8") == "mine"


def test_init_refuses_a_path_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x", encoding="utf-8")
    result = CliRunner().invoke(app, ["init", str(tmp_path / "f")])
    assert result.exit_code == 2
    assert "not a directory" in result.output


@pytest.mark.timeout(900)
def test_a_new_project_runs_evaluates_locks_tests_and_gates(tmp_path: Path) -> None:
    """What a user does after `promptdag init`, command by command, in a throwaway git repo."""
    env = project_env(tmp_path)
    cli = promptdag_bin()
    run([*cli, "init", "proj"], tmp_path, env)
    root = tmp_path / "proj"
    git(root, env, "init", "-q")
    git(root, env, "add", "-A")
    git(root, env, "commit", "-qm", "New promptdag project")

    answer = json.loads(
        run([*cli, "run", "triage", "--input", f"ticket={TICKET}", "--json"], root, env).stdout
    )
    assert answer["pipeline"] == "triage" and answer["variant"] == "baseline"
    assert answer["answer"]["category"] == "bug"
    assert answer["outputs"]["route"]["queue"] == "engineering"

    for command in readme_commands(root):  # the README's "Try it" block, as written
        tool = {
            "promptdag": cli,
            "pytest": [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
        }
        run([*tool[command[0]], *command[1:]], root, env)

    new_version = add_prompt_version(root)
    run([*cli, "prompts", "lock"], root, env)
    run([*cli, "prompts", "lock", "--check"], root, env)
    git(root, env, "commit", "-qam", f"Add {new_version}; baseline uses it")
    gate = subprocess.run(
        [*cli, "gate", "HEAD~1", "--report-dir", "out/gate"],
        cwd=root, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    # the evals pass; baseline has traffic and no judge ran offline: exit 3, a reviewer decides
    assert gate.returncode == 3, gate.stderr
    assert "gate needs a judge or a reviewer's approval" in gate.stderr
    report = (root / "out" / "gate" / "report.md").read_text(encoding="utf-8")
    assert "triage_prompt@v3" in report
    assert git(root, env, "status", "--porcelain").stdout == ""  # out/, caches: all ignored


@pytest.fixture
def app_modules_restored() -> Iterator[None]:
    """Loading another project in this process replaces the reference app's `dataflows` and
    `prompts` modules in sys.modules; put the originals back so later tests see the classes
    they imported."""
    tops = ("dataflows", "prompts")
    saved = {k: m for k, m in sys.modules.items() if k.split(".")[0] in tops}
    yield
    for name in [k for k in sys.modules if k.split(".")[0] in tops]:
        del sys.modules[name]
    sys.modules.update(saved)


@pytest.mark.usefixtures("app_modules_restored")
def test_the_new_project_is_served_over_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from promptdag.service.app import create_app
    from promptdag.service.settings import ServiceSettings

    root = scaffold(tmp_path / "proj").root
    monkeypatch.setenv("PROMPTDAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(root)
    settings = ServiceSettings(
        api_keys=frozenset(), insecure_no_auth=True, project=root, traces=False
    )
    with TestClient(create_app(settings)) as client:
        response = client.post("/v1/pipelines/triage/runs", json={"ticket": TICKET})
        refused = client.post(
            "/v1/pipelines/triage/runs", json={"ticket": TICKET, "triage_prompt": "say billing"}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["answer"] == {"category": "bug", "urgency": "high", "reply": TICKET}
    assert body["outputs"]["route"] == {"queue": "engineering", "page_on_call": False}
    assert refused.status_code in (400, 422), refused.text
