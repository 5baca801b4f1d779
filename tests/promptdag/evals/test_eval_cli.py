"""`promptdag eval`: exit 0 when the suite passes, 1 when it misses its threshold, 2 when it
cannot run; Markdown by default, --json, --junit, and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.main import get_command
from typer.testing import CliRunner

from promptdag.eval_cli import app, register
from tests.promptdag.evals.conftest import NEWS, REPO

FAILING = f"""
    [suite]
    name = "strict"
    threshold = 1.0

    [[cases]]
    id = "wants-a-tunnel"
    inputs = {{ text = "{NEWS}" }}
    [[cases.assert]]
    type = "contains"
    values = ["tunnel"]
    [[cases.assert]]
    type = "contains"
    values = ["bridge"]
    [[cases.assert]]
    type = "length"
    unit = "words"
    max = 500
"""


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _entry() -> list[str]:
    """`promptdag eval` once the lead registers it; until then the standalone app."""
    from promptdag.cli import app as main_app

    exe = Path(sys.executable).with_name("promptdag")
    if "eval" in getattr(get_command(main_app), "commands", {}) and exe.exists():
        return [str(exe), "eval"]
    return [
        sys.executable,
        "-c",
        "from promptdag.eval_cli import app; app(prog_name='promptdag eval')",
    ]


def run_cli(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    return subprocess.run(
        [*_entry(), *args],
        cwd=REPO,
        env={**env, "PROMPTDAG_DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_has_an_examples_block() -> None:
    code, out, _ = invoke("--help")
    assert code == 0 and "Examples:" in out and "promptdag eval --suite SUITE" in out


def test_a_passing_case_exits_0_with_markdown() -> None:
    code, out, err = invoke("--suite", "summarize", "--case", "news-query", "--cache", "off")
    assert code == 0, err
    assert out.startswith("## Eval suite `summarize`: PASSED")
    assert "| news-query | concise | pass |" in out


def test_json_and_junit_outputs(tmp_path: Path) -> None:
    xml = tmp_path / "out.xml"
    code, out, err = invoke(
        "-s",
        "summarize",
        "--case",
        "german-pack",
        "--json",
        "--junit",
        str(xml),
        "-c",
        "llm_cache=off",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["passed"] is True and [c["case"] for c in data["cases"]] == ["german-pack"]
    assert data["cases"][0]["assertions"][-1]["status"] == "skip"
    assert ET.parse(xml).getroot().find("testsuite/testcase").get("name") == "german-pack"  # type: ignore[union-attr]
    assert f"wrote {xml}" in err


def test_a_suite_below_its_threshold_exits_1(suite_file: Callable[..., Path]) -> None:
    code, out, _ = invoke("--suite", str(suite_file(FAILING)), "--cache", "off")
    assert code == 1
    assert "## Eval suite `strict`: FAILED" in out
    assert "expected all of 'tunnel'; missing 'tunnel'" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--suite", "nope"],
            "error: suite 'nope' is not defined in ci/evals/suites/. Defined: summarize.",
        ),
        ([], "error: choose a suite with --suite NAME. Defined: summarize."),
        (["-s", "summarize", "--variant", "nope"], "error: variant 'nope' is not defined"),
        (["-s", "summarize", "-c", "oops"], "error: --config 'oops' is not KEY=VALUE"),
        (
            ["-s", "summarize", "--cache", "sometimes"],
            "error: --cache 'sometimes' is not a cache mode",
        ),
        (["-s", "summarize", "--case", "ghost"], "error: suite 'summarize' has no case 'ghost'"),
        (
            ["-s", "summarize", "--judge-model", "gpt-4o-mini"],
            "judge_backend=openai needs OPENAI_API_KEY",
        ),
        (["-s", "summarize", "-c", "judge_colour=red"], "unknown judge config key 'judge_colour'"),
    ],
)
def test_could_not_run_exits_2_with_one_clear_error(args: list[str], message: str) -> None:
    code, out, err = invoke(*args)
    assert code == 2
    assert out == "" and message in err


def test_an_invalid_suite_file_exits_2_listing_every_problem(
    suite_file: Callable[..., Path],
) -> None:
    path = suite_file("[suite]\nthreshold = 2\n[[cases]]\nid = 'x'\n")
    code, _, err = invoke("--suite", str(path))
    assert code == 2
    assert "threshold = 2 must be a pass rate" in err and "needs at least 3" in err


def test_subprocess_exit_codes_0_1_2(tmp_path: Path, suite_file: Callable[..., Path]) -> None:
    ok = run_cli("--suite", "summarize", "--case", "news-article", data=tmp_path / "d")
    assert ok.returncode == 0, ok.stderr
    assert "skipped: no judge model configured" in ok.stdout
    failing = run_cli("--suite", str(suite_file(FAILING)), data=tmp_path / "d")
    assert failing.returncode == 1, failing.stderr
    missing = run_cli("--suite", "nope", data=tmp_path / "d")
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "error: suite 'nope' is not defined in ci/evals/suites/. Defined: summarize."
    )


def test_register_adds_eval_with_its_examples_to_a_main_app() -> None:
    main_app = typer.Typer()

    @main_app.command()
    def other() -> None:
        """Another command, so `eval` is a subcommand."""

    register(main_app)
    result = CliRunner().invoke(main_app, ["eval", "--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.stdout and "--suite" in result.stdout
