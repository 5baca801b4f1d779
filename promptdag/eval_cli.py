"""`promptdag eval`: run an eval suite's golden cases through its declared pipeline (built by the
driver factory) and score them against the suite's pass-rate threshold.

Exit codes: 0 the suite passed, 1 it ran and missed its threshold, 2 it could not run (unknown
suite, invalid suite file, bad config, a variant that does not build, an unwritable report).
Register on the main app with `register(app)` (keeps the Examples epilog).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from promptdag.config import parse_assignments
from promptdag.errors import ConfigError, PromptdagError

if TYPE_CHECKING:  # the eval stack (openai, pandas, Hamilton) loads only when `eval` runs
    from promptdag.evals.judge import Judge
    from promptdag.evals.result import SuiteResult
    from promptdag.evals.suite import Suite
    from promptdag.project import Project

__all__ = ["EVAL_EPILOG", "app", "eval_command", "register"]

EVAL_EPILOG = (
    "Examples:\n\n"
    "  promptdag eval --suite SUITE\n\n"
    "  promptdag eval --suite SUITE --variant VARIANT --json\n\n"
    "  promptdag eval --suite SUITE --cache replay-only --junit evals.xml\n\n"
    "  promptdag eval --suite SUITE --case CASE --case OTHER_CASE\n\n"
    "  promptdag eval --suite path/to/suite.toml\n\n"
    "  OPENAI_API_KEY=... promptdag eval --suite SUITE --judge-model gpt-4o-mini\n\n"
    "A suite is a .toml file in the directory the contract's `suites` names; "
    "`promptdag eval` alone lists them."
)
EXIT_PASSED, EXIT_FAILED, EXIT_CANNOT_RUN = 0, 1, 2


@contextlib.contextmanager
def _cannot_run() -> Iterator[None]:
    """Anything that stops the suite from running → one line on stderr and exit 2."""
    try:
        yield
    except (PromptdagError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_CANNOT_RUN) from None


def _split_config(
    pairs: list[str] | None, cache: str | None, judge: Mapping[str, str | None]
) -> tuple[dict[str, str], dict[str, str]]:
    """`--config` pairs into pipeline overrides and judge_* keys; flags win over --config."""
    config = parse_assignments(pairs or [])
    judge_conf = {k: v for k, v in config.items() if k.startswith("judge_")}
    overrides = {k: v for k, v in config.items() if not k.startswith("judge_")}
    if cache is not None:
        from promptdag.llm.cache import CACHE_MODES

        if cache not in CACHE_MODES:
            raise ConfigError(
                [f"--cache {cache!r} is not a cache mode. Use one of: {', '.join(CACHE_MODES)}."]
            )
        overrides["llm_cache"] = cache
        judge_conf["judge_cache"] = cache
    judge_conf.update({k: v for k, v in judge.items() if v})
    return overrides, judge_conf


def _suite(name: str | None, project: Project) -> Suite:
    from promptdag.evals.suite_file import list_suites, load_suite

    if name is None:
        defined = ", ".join(list_suites(project.root)) or "none"
        raise ConfigError([f"choose a suite with --suite NAME. Defined: {defined}."])
    return load_suite(name, root=project.root)


async def _run(suite: Suite, judge: Judge | None, **kwargs: Any) -> SuiteResult:
    from promptdag.evals.runner import run_suite

    try:
        return await run_suite(suite, judge=judge, **kwargs)
    finally:
        if judge is not None:
            await judge.aclose()


def eval_command(
    suite: Annotated[
        str | None,
        typer.Option(
            "--suite",
            "-s",
            help="A suite's name (a .toml in the contract's suites directory) or a .toml path.",
        ),
    ] = None,
    variant: Annotated[
        str | None,
        typer.Option("--variant", "-V", help="Variant for cases that do not name one."),
    ] = None,
    config: Annotated[
        list[str] | None,
        typer.Option(
            "--config",
            "-c",
            metavar="KEY=VALUE",
            help="Build-time config KEY=VALUE (repeatable); judge_* keys configure the judge.",
        ),
    ] = None,
    cache: Annotated[
        str | None,
        typer.Option(
            "--cache", help="LLM response cache: off, use or replay-only (CI: replay-only)."
        ),
    ] = None,
    case: Annotated[
        list[str] | None,
        typer.Option("--case", metavar="ID", help="Run only this case id (repeatable)."),
    ] = None,
    judge_model: Annotated[
        str | None,
        typer.Option(
            "--judge-model",
            help="Model for llm-rubric and pairwise-judge (default: none, they are skipped).",
        ),
    ] = None,
    judge_backend: Annotated[
        str | None,
        typer.Option(
            "--judge-backend", help="Judge backend: openai (the default with --judge-model)."
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Machine-readable JSON on stdout.")
    ] = False,
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Also write JUnit XML here.")
    ] = None,
) -> None:
    """Run an eval suite's golden cases and check its pass rate against the suite's threshold."""
    from promptdag.evals.judge import judge_from_config
    from promptdag.project import load_project

    with _cannot_run():
        judge_flags = {"judge_model": judge_model, "judge_backend": judge_backend}
        overrides, judge_conf = _split_config(config, cache, judge_flags)
        project = load_project()
        chosen = _suite(suite, project)
        judge = judge_from_config(judge_conf, project=project)
        import asyncio

        result = asyncio.run(
            _run(
                chosen, judge, project=project, variant=variant, overrides=overrides, case_ids=case
            )
        )
        if junit is not None:
            result.write_junit(junit)
    if json_out:
        typer.echo(json.dumps(result.to_json(), indent=2, ensure_ascii=False, default=str))
    else:
        typer.echo(result.to_markdown())
    if junit is not None:
        typer.echo(f"wrote {junit}", err=True)
    raise typer.Exit(EXIT_PASSED if result.passed else EXIT_FAILED)


def register(main_app: typer.Typer) -> None:
    """Add `eval` to the main `promptdag` app, with its Examples epilog."""
    main_app.command("eval", epilog=EVAL_EPILOG)(eval_command)


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
"""`eval` alone, as a one-command app (tests, or `python -c 'from promptdag.eval_cli import app; app()'`)."""
app.command(epilog=EVAL_EPILOG)(eval_command)
