"""Eval suite files (`ci/evals/suites/<name>.toml`): finding, reading and validating them.

    [suite]
    name = "summarize"            # default: the file name
    description = "..."
    threshold = 1.0               # pass rate (0..1) the suite must reach
    variant = "baseline"          # optional; default: the variants file's default

    [[cases]]
    id = "news"                   # unique
    text = "..."                  # or pdf = "examples/x.pdf" (relative to the project root)
    query = "..."                 # optional user query
    content_type = "a news article"   # optional
    variant = "german"            # optional; wins over --variant and [suite].variant

    [[cases.assert]]              # at least three per case; options: ci/evals/options.py
    type = "contains"
    values = ["bridge"]

Every problem of a file is collected and raised once as a ConfigError naming file and case.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promptdag.errors import ConfigError, VariantError
from promptdag.evals.options import option_problems
from promptdag.evals.suite import AssertionSpec, Case, Suite
from promptdag.contract import load_contract
from promptdag.project import find_project
from promptdag.variants import load_variants

__all__ = ["MIN_ASSERTIONS", "SUITES_DIR", "list_suites", "load_suite", "suite_path", "suites_dir"]

SUITES_DIR = Path("ci/evals/suites")
MIN_ASSERTIONS = 3
_SUITE_KEYS = ("name", "description", "threshold", "variant")
_CASE_KEYS = ("id", "pdf", "text", "query", "content_type", "variant", "assert")


def suites_dir(root: Path) -> Path:
    return root / SUITES_DIR


def list_suites(root: str | Path | None = None) -> list[str]:
    """The names of the suites defined in the project's ci/evals/suites/."""
    return sorted(p.stem for p in suites_dir(find_project(root)).glob("*.toml"))


def suite_path(name_or_path: str | Path, root: Path) -> Path:
    """A suite name (`summarize`) or a path to a .toml; an unknown name lists the defined ones."""
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text:
        path = Path(text)
        if not path.is_file():
            raise ConfigError([f"suite file {text} does not exist. Check the path."])
        return path
    path = suites_dir(root) / f"{text}.toml"
    if not path.is_file():
        defined = ", ".join(list_suites(root)) or "none"
        raise ConfigError([f"suite {text!r} is not defined in {SUITES_DIR}/. Defined: {defined}."])
    return path


def _assertions(where: str, raw: Any, problems: list[str]) -> tuple[AssertionSpec, ...]:
    if not isinstance(raw, list) or len(raw) < MIN_ASSERTIONS:
        n = len(raw) if isinstance(raw, list) else 0
        problems.append(
            f"{where}: has {n} assertion(s); each case needs at least {MIN_ASSERTIONS} "
            "[[cases.assert]] tables."
        )
    specs = []
    for i, table in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(table, dict) or not isinstance(table.get("type"), str):
            problems.append(f'{where}: assertion {i + 1} has no type = "..."')
            continue
        options = {k: v for k, v in table.items() if k != "type"}
        for p in option_problems(table["type"], options):
            problems.append(f"{where}: assertion {i + 1} ({table['type']}): {p}")
        specs.append(AssertionSpec(i + 1, table["type"], options))
    return tuple(specs)


def _document(where: str, raw: Mapping[str, Any], root: Path, problems: list[str]) -> None:
    if ("pdf" in raw) == ("text" in raw):
        problems.append(f'{where}: give exactly one document: pdf = "path" or text = "..."')
    elif "pdf" in raw and not (isinstance(raw["pdf"], str) and (root / raw["pdf"]).is_file()):
        problems.append(f"{where}: pdf {raw['pdf']!r} is not a file under {root}")
    elif "text" in raw and not isinstance(raw["text"], str):
        problems.append(f"{where}: text must be a string")
    for key in ("query", "content_type", "variant"):
        if key in raw and not isinstance(raw[key], str):
            problems.append(f"{where}: {key} must be a string, got {raw[key]!r}")


def _case(raw: Any, n: int, file: str, root: Path, problems: list[str]) -> Case | None:
    if not isinstance(raw, dict):
        problems.append(f"{file}: case {n} is not a table")
        return None
    case_id = raw.get("id")
    where = f"{file}: case {case_id!r}" if isinstance(case_id, str) else f"{file}: case {n}"
    if not isinstance(case_id, str) or not case_id.strip():
        problems.append(f'{where}: needs id = "..." (unique in the suite)')
    unknown = sorted(set(raw) - set(_CASE_KEYS))
    if unknown:
        problems.append(f"{where}: unknown key(s) {unknown}; a case takes {', '.join(_CASE_KEYS)}")
    _document(where, raw, root, problems)
    asserts = _assertions(where, raw.get("assert"), problems)
    return Case(
        id=str(case_id),
        asserts=asserts,
        text=raw.get("text"),
        pdf=raw.get("pdf"),
        query=raw.get("query", ""),
        content_type=raw.get("content_type"),
        variant=raw.get("variant"),
    )


def _header(raw: Any, file: str, problems: list[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        problems.append(f"{file}: needs a [suite] table with threshold = 0..1")
        return {}
    unknown = sorted(set(raw) - set(_SUITE_KEYS))
    if unknown:
        problems.append(
            f"{file}: [suite] has unknown key(s) {unknown}; it takes {', '.join(_SUITE_KEYS)}"
        )
    for key in ("name", "description"):
        if key in raw and not isinstance(raw[key], str):
            problems.append(f"{file}: [suite] {key} must be a string, got {raw[key]!r}")
    if "variant" in raw and not isinstance(raw["variant"], str):
        problems.append(f"{file}: [suite] variant must be a variant name, got {raw['variant']!r}")
    threshold = raw.get("threshold")
    if (
        not isinstance(threshold, int | float)
        or isinstance(threshold, bool)
        or not 0 <= threshold <= 1
    ):
        problems.append(
            f"{file}: [suite] threshold = {threshold!r} must be a pass rate from 0 to 1 (e.g. 0.9)"
        )
    return raw


def _cross_checks(
    cases: list[Case], file: str, root: Path, variants: set[str | None], problems: list[str]
) -> None:
    ids = [c.id for c in cases]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(
            f"{file}: case id {dup!r} is used {ids.count(dup)} times; ids must be unique"
        )
    for case in cases:
        for spec in case.asserts:
            ref = spec.options.get("reference_case")
            if isinstance(ref, str) and (ref not in ids or ref == case.id):
                problems.append(
                    f"{file}: case {case.id!r}: assertion {spec.index} (pairwise-judge): "
                    f"reference_case {ref!r} must name another case. Cases: {', '.join(sorted(set(ids)))}"
                )
    try:
        defined = set(load_variants(load_contract(root).variants).variants)
    except VariantError as exc:
        problems.extend(exc.problems)
        return
    for name in sorted(v for v in variants if isinstance(v, str) and v not in defined):
        problems.append(
            f"{file}: variant {name!r} is not defined in the variants file. Defined: {', '.join(sorted(defined))}"
        )


def load_suite(name_or_path: str | Path, *, root: str | Path | None = None) -> Suite:
    """Load and validate a suite by name (from `root`'s ci/evals/suites/) or path; PDF paths and
    variants are checked against `root` (default: the project holding the current directory)."""
    project_root = find_project(root)
    path = suite_path(name_or_path, project_root)
    resolved = path.resolve()
    inside = resolved.is_relative_to(project_root)
    file = resolved.relative_to(project_root).as_posix() if inside else str(path)
    raw_bytes = path.read_bytes()
    try:
        data = tomllib.loads(raw_bytes.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{file} is not valid TOML: {exc}"]) from exc
    problems: list[str] = []
    header = _header(data.get("suite"), file, problems)
    raw_cases = data.get("cases")
    if not isinstance(raw_cases, list) or not raw_cases:
        problems.append(f"{file}: defines no [[cases]]")
        raw_cases = []
    parsed = [_case(raw, n + 1, file, project_root, problems) for n, raw in enumerate(raw_cases)]
    cases = [c for c in parsed if c is not None]
    variants = {header.get("variant"), *(c.variant for c in cases)}
    _cross_checks(cases, file, project_root, variants, problems)
    if problems:
        raise ConfigError(problems)
    return Suite(
        name=str(header.get("name") or path.stem),
        description=str(header.get("description", "")),
        threshold=float(header["threshold"]),
        variant=header.get("variant"),
        cases=tuple(cases),
        path=resolved,
        root=project_root,
        sha256=hashlib.sha256(raw_bytes).hexdigest(),
    )
