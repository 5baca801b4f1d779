"""Eval suites: golden cases of a declared pipeline with assertions, run through the driver
factory, scored against a pass-rate threshold and reported as pandas tables, Markdown, JSON and
JUnit XML.

    suite = load_suite("smoke")
    result = await run_suite(suite, overrides={"llm_cache": "replay-only"})
    print(result.to_markdown()); result.write_junit("evals.xml")

Suite files: `<suites>/<name>.toml` in the directory the contract names (format:
promptdag/evals/suite_file.py; assertion options: promptdag/evals/options.py). Judge-based
assertions need a real model (promptdag/evals/judge.py).
"""

from promptdag.evals.assertions import AssertionResult, CaseOutput, Status
from promptdag.evals.changes import suite_changes
from promptdag.evals.evaluate import SKIPPED_NO_JUDGE, evaluate
from promptdag.evals.judge import (
    NO_JUDGE_REASON,
    Judge,
    PairwiseVerdict,
    Verdict,
    judge_from_config,
)
from promptdag.evals.options import ASSERTION_TYPES, JUDGE_TYPES
from promptdag.evals.result import CaseResult, SuiteResult
from promptdag.evals.runner import run_suite
from promptdag.evals.suite import AssertionSpec, Case, Suite
from promptdag.evals.suite_file import list_suites, load_suite

__all__ = [
    "ASSERTION_TYPES",
    "JUDGE_TYPES",
    "NO_JUDGE_REASON",
    "SKIPPED_NO_JUDGE",
    "AssertionResult",
    "AssertionSpec",
    "Case",
    "CaseOutput",
    "CaseResult",
    "Judge",
    "PairwiseVerdict",
    "Status",
    "Suite",
    "SuiteResult",
    "Verdict",
    "evaluate",
    "judge_from_config",
    "list_suites",
    "load_suite",
    "run_suite",
    "suite_changes",
]
