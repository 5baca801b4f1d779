"""Meta-tests: the conventions the house style promises, checked so they cannot rot."""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from promptdag.catalog import discover_prompts
from promptdag.project import load_project

REPO = Path(__file__).resolve().parents[1]


def quickstart_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the Quickstart has no bash code block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_quickstart_is_exactly_two_commands_and_ci_runs_the_second() -> None:
    commands = quickstart_commands()
    assert commands == ["make demo", "make test"]
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^make test$", ci, re.M)


def test_quickstart_targets_exist_in_the_makefile() -> None:
    dry = subprocess.run(
        ["make", "-n", "demo", "test"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert dry.returncode == 0, dry.stderr
    assert "promptdag run summarize examples/the-man-without-a-body.pdf" in dry.stdout
    assert "pytest" in dry.stdout


def test_every_prompt_version_is_decorated_and_named_by_convention() -> None:
    assert discover_prompts(load_project(REPO)).problems == ()


def test_every_readme_promptdag_subcommand_exists() -> None:
    from typer.main import get_command

    from promptdag.cli import app

    root = get_command(app)
    text = (REPO / "README.md").read_text(encoding="utf-8")
    for words in re.findall(r"^promptdag ([a-z]+)(?: ([a-z]+))?", text, re.M):
        command = root.commands.get(words[0])  # type: ignore[attr-defined]
        assert command is not None, f"README mentions 'promptdag {words[0]}', which does not exist"
        if words[1] and hasattr(command, "commands"):
            assert words[1] in command.commands, f"README mentions 'promptdag {' '.join(words)}'"


def _python_modules(*parts: str) -> list[Path]:
    return sorted(p for part in parts for p in (REPO / part).rglob("*.py"))


@pytest.mark.parametrize(
    "path", _python_modules("promptdag"), ids=lambda p: str(p.relative_to(REPO))
)
def test_public_surface_is_an_explicit_all(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(getattr(t, "id", "") == "__all__" for t in node.targets)
    ]
    if path.name == "__init__.py" or path.name == "__main__.py":
        return
    assert names, f"{path.name} has no __all__"
    listed = ast.literal_eval(
        names[0]
    )  # its order is ruff's RUF022 (isort-style), checked by `make lint`
    module = importlib.import_module(".".join(path.relative_to(REPO).with_suffix("").parts))
    assert all(hasattr(module, name) for name in listed)


@pytest.mark.parametrize("path", _python_modules("dataflows"), ids=lambda p: p.name)
def test_dataflow_nodes_are_documented_and_typed(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    if not path.name.startswith("_") and path.name != "__init__.py":
        doc = ast.get_docstring(tree) or ""
        for word in ("Inputs:", "Config:", "Outputs:"):
            assert word in doc, f"{path.name}: the module docstring must state its {word}"
    for fn in [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]:
        if fn.name.startswith("_") or path.name.startswith("_"):
            continue
        assert ast.get_docstring(fn), f"{path.name}:{fn.name} has no docstring"
        assert fn.returns is not None, f"{path.name}:{fn.name} has no return annotation"
        assert all(a.annotation is not None for a in fn.args.args), (
            f"{path.name}:{fn.name} has untyped parameters"
        )


def test_lockfile_pins_hashes_and_names_no_index() -> None:
    lock = (REPO / "requirements.lock").read_text(encoding="utf-8")
    assert "://" not in lock and "--index-url" not in lock
    pins = re.findall(r"^([A-Za-z0-9_.\-\[\]]+)==", lock, re.M)
    assert len(pins) > 20
    assert lock.count("--hash=sha256:") >= len(pins)


@pytest.mark.parametrize("name", ["workflows/prompt-gate.yml", "pull_request_template.md"])
def test_github_copies_match_ci(name: str) -> None:
    """ci/github/ is the source; .github/ is the copy GitHub reads."""
    source = (REPO / "ci" / "github" / name).read_text(encoding="utf-8")
    assert (REPO / ".github" / name).read_text(encoding="utf-8") == source


def test_gate_workflow_runs_the_gate_against_the_base_branch() -> None:
    workflow = (REPO / "ci" / "github" / "workflows" / "prompt-gate.yml").read_text(
        encoding="utf-8"
    )
    assert 'base="$(git merge-base HEAD "origin/$BASE_REF")"' in workflow
    assert 'promptdag gate --base "${base:-origin/$BASE_REF}" --report-dir out/gate' in workflow
    # every change that can change answers (not only prompts/ and dataflows/); docs do not
    assert "fetch-depth: 0" in workflow and "paths-ignore:" in workflow and "paths:" not in workflow
    assert workflow.count("if: always()") == 3  # artifact, PR comment, verdict: every outcome
    hooks = (REPO / "ci" / "pre-commit-config.yaml").read_text(encoding="utf-8")
    assert "promptdag prompts lock --check" in hooks


# Words that are app names but also generic terms promptdag uses for itself: FastAPI's
# `summary=` and HTML's <summary>, an LLM answer's `text`, HTTP's `content_type`, and the verb
# "summarize" that the offline model recognises in instructions. Every other node, input, config key, output and
# pipeline of the reference app must be absent from promptdag/.
_GENERIC_WORDS = {"summary", "text", "summarize", "content_type"}


def _app_names() -> set[str]:
    from promptdag.contract import load_contract

    contract = load_contract(REPO)
    names = set(contract.config) | set(contract.llm_steps)
    for step in contract.llm_steps.values():
        names |= {step.node, step.prompt, step.rendered or step.node}
    for spec in contract.pipelines.values():
        names |= {spec.name, *spec.final_vars, *spec.inputs}
    for path in _python_modules("dataflows", "prompts"):
        if path.name.startswith("_"):
            continue  # helpers, not nodes
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names |= {
            n.name.split("__")[0]
            for n in tree.body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and not n.name.startswith("_")
        }
    return names - _GENERIC_WORDS


def test_the_framework_names_no_node_input_or_output_of_the_reference_app() -> None:
    names = _app_names()
    assert {"chunk_summary_prompt", "text_chunks", "pdf_bytes", "chunk_tokens"} <= names
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, names))) + r")\b")
    found = [
        f"{path.relative_to(REPO)}:{i}: {m.group(1)}"
        for path in _python_modules("promptdag")
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        for m in pattern.finditer(line)
    ]
    assert found == [], "promptdag/ names the reference app:\n" + "\n".join(found)


def test_the_public_api_is_a_sorted_complete_all() -> None:
    import promptdag

    def group(name: str) -> tuple[int, str]:  # ruff RUF022: CONSTANTS, Classes, functions
        return (0 if name.isupper() else 1 if name[0].isupper() else 2), name

    assert promptdag.__all__ == sorted(promptdag.__all__, key=group)
    for name in promptdag.__all__:
        assert getattr(promptdag, name) is not None, name
    assert sorted(dir(promptdag)) == sorted(promptdag.__all__)


def test_importing_promptdag_loads_no_heavy_library() -> None:
    code = (
        "import sys, promptdag\n"
        "heavy = [m for m in ('hamilton', 'openai', 'pandas', 'fastapi') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == ""


def test_the_wheel_installs_only_promptdag() -> None:
    """setuptools finds only the promptdag package (the app's folders are not shipped)."""
    from setuptools import find_packages

    found = find_packages(str(REPO), include=["promptdag", "promptdag.*"])
    tops = {name.split(".")[0] for name in found}
    assert tops == {"promptdag"}
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert 'include = ["promptdag", "promptdag.*"]' in text


def test_the_readme_contract_is_the_triage_examples() -> None:
    """The contract shown in the README is (a subset of) the one examples/ticket-triage uses."""
    import tomllib

    text = (REPO / "README.md").read_text(encoding="utf-8")
    shown = tomllib.loads(re.search(r"```toml\n(\[tool\.promptdag\].*?)```", text, re.S).group(1))
    real = tomllib.loads(
        (REPO / "examples" / "ticket-triage" / "pyproject.toml").read_text(encoding="utf-8")
    )

    def subset(a: object, b: object, where: str) -> None:
        if isinstance(a, dict):
            assert isinstance(b, dict), where
            for key, value in a.items():
                assert key in b, f"{where}.{key} is not in the example"
                subset(value, b[key], f"{where}.{key}")
        else:
            assert a == b, f"{where}: README {a!r}, example {b!r}"

    subset(shown["tool"]["promptdag"], real["tool"]["promptdag"], "tool.promptdag")
