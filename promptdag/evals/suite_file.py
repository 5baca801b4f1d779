"""Eval suite files (`<suites>/<name>.toml`, the directory the contract's `suites` names):
finding, reading and validating them against the project's contract.

    [suite]
    name = "triage"             # default: the file name
    description = "..."
    pipeline = "triage"         # default: the contract's default_pipeline
    threshold = 1.0             # pass rate (0..1) the suite must reach
    variant = "baseline"        # optional; default: the variants file's default
    usage_growth = 0.25         # optional: the gate fails a case whose calls, tokens or cost
                                # rise more than this share over the base's (default 0.25)

    [[cases]]
    id = "login-crash"          # unique in the suite
    variant = "terse"           # optional; wins over --variant and [suite].variant
    inputs = { ticket = "The app crashes on login", product = "mobile" }
    files = { attachment = "examples/crash.log" }   # optional: input -> path under the root

    [[cases.assert]]            # at least three per case; types and options: options.py
    type = "contains"
    values = ["login"]
    output = "category"         # optional: which output it checks

`inputs` are the pipeline's declared inputs (checked against their kinds and caps; a long text
reads better as a `[cases.inputs]` table on its own lines, which is the same TOML). `files` maps
an input to a path under the project root: a `file` input gets the file's bytes, a `text` input
its UTF-8 text, and the input's `filename_input` (if declared and not set in `inputs`) the file's
name. Exactly one of each `one_of` group, and every required input, must be given.

`output` (on any assertion but the budgets) names a declared output of the pipeline, or `usage`
(the run's LLM usage) or `fingerprint` (its provenance); default: the pipeline's `answer`. Text
assertions check a non-string output as its JSON text; `json-schema` checks the value itself (a
string output is parsed as JSON first).

Unknown keys, inputs the pipeline does not declare, missing files and unknown outputs or variants
are collected and raised once as a ConfigError naming file, case and what exists.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promptdag.contract import Contract, PipelineSpec, load_contract
from promptdag.errors import ConfigError, PromptdagError, VariantError
from promptdag.evals.options import option_problems
from promptdag.evals.suite import AssertionSpec, Case, Suite
from promptdag.inputs import coerce_input
from promptdag.project import find_project
from promptdag.variants import load_variants

__all__ = [
    "DEFAULT_USAGE_GROWTH",
    "MIN_ASSERTIONS",
    "RUN_OUTPUTS",
    "list_suites",
    "load_suite",
    "suite_path",
    "suites_dir",
]

MIN_ASSERTIONS = 3
# What an assertion's `output` may name besides the pipeline's declared outputs.
RUN_OUTPUTS = ("usage", "fingerprint")
DEFAULT_USAGE_GROWTH = 0.25
_SUITE_KEYS = ("name", "description", "pipeline", "threshold", "usage_growth", "variant")
_CASE_KEYS = ("id", "variant", "inputs", "files", "assert")


def suites_dir(root: Path) -> Path:
    """The project's suites directory (the contract's `suites`)."""
    return load_contract(root).suites


def list_suites(root: str | Path | None = None) -> list[str]:
    """The names of the suites defined in the project's suites directory."""
    return sorted(p.stem for p in suites_dir(find_project(root)).glob("*.toml"))


def suite_path(name_or_path: str | Path, root: Path) -> Path:
    """A suite name (`smoke`) or a path to a .toml; an unknown name lists the defined ones."""
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text:
        path = Path(text)
        if not path.is_file():
            raise ConfigError([f"suite file {text} does not exist. Check the path."])
        return path
    contract = load_contract(root)
    path = contract.suites / f"{text}.toml"
    if not path.is_file():
        defined = ", ".join(list_suites(root)) or "none"
        raise ConfigError(
            [
                f"suite {text!r} is not defined in {contract.relpath(contract.suites)}/. "
                f"Defined: {defined}."
            ]
        )
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


def _table(where: str, key: str, raw: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        problems.append(f"{where}: {key} must be a table ({key} = {{ name = ... }}), got {value!r}")
        return {}
    return value


def _inputs(
    where: str, values: dict[str, Any], spec: PipelineSpec, problems: list[str]
) -> dict[str, Any]:
    """The case's input values that the pipeline declares and that pass their checks."""
    declared = ", ".join(sorted(spec.inputs)) or "none"
    out: dict[str, Any] = {}
    for name, value in values.items():
        target = spec.inputs.get(name)
        if target is None:
            problems.append(
                f"{where}: input {name!r} is not an input of pipeline {spec.name!r}. "
                f"Inputs: {declared}."
            )
        elif target.is_file:
            problems.append(
                f'{where}: input {name!r} takes a file: give its path in files = {{ {name} = "path" }}'
            )
        else:
            try:
                coerce_input(target, value)
            except PromptdagError as exc:
                problems.append(f"{where}: inputs.{name}: {exc}")
                continue
            out[name] = value
    return out


def _files(
    where: str, files: dict[str, Any], spec: PipelineSpec, root: Path, problems: list[str]
) -> dict[str, str]:
    """The case's files: each names a file or text input and a file under `root`."""
    readable = sorted(n for n, s in spec.inputs.items() if s.kind in ("file", "text"))
    out: dict[str, str] = {}
    for name, rel in files.items():
        target = spec.inputs.get(name)
        if target is None or target.kind not in ("file", "text"):
            problems.append(
                f"{where}: files.{name}: {name!r} is not a file or text input of pipeline "
                f"{spec.name!r}. File and text inputs: {', '.join(readable) or 'none'}."
            )
            continue
        path = (root / rel).resolve() if isinstance(rel, str) and rel else None
        if path is None or not path.is_relative_to(root) or not path.is_file():
            problems.append(f"{where}: files.{name} = {rel!r} is not a file under {root}")
            continue
        out[name] = rel
    return out


def _given(where: str, given: set[str], spec: PipelineSpec, problems: list[str]) -> None:
    """Every required input and exactly one of each `one_of` group is given."""
    for group in spec.one_of:
        hits = [n for n in group if n in given]
        if len(hits) != 1:
            problems.append(
                f"{where}: give exactly one of {', '.join(group)} (in inputs or files); "
                f"got {', '.join(hits) or 'none'}"
            )
    grouped = {n for g in spec.one_of for n in g}
    missing = sorted(
        n for n, s in spec.inputs.items() if s.required and n not in grouped and n not in given
    )
    if missing:
        problems.append(
            f"{where}: pipeline {spec.name!r} needs input(s) {', '.join(missing)} "
            "(in inputs or files)"
        )


def _case(
    raw: Any, n: int, file: str, root: Path, spec: PipelineSpec | None, problems: list[str]
) -> Case | None:
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
    if "variant" in raw and not isinstance(raw["variant"], str):
        problems.append(f"{where}: variant must be a variant name, got {raw['variant']!r}")
    values, paths = _table(where, "inputs", raw, problems), _table(where, "files", raw, problems)
    for name in sorted(set(values) & set(paths)):
        problems.append(f"{where}: input {name!r} is in both inputs and files; give it once")
    inputs: dict[str, Any] = {}
    files: dict[str, str] = {}
    if spec is not None:
        inputs = _inputs(where, values, spec, problems)
        files = _files(where, paths, spec, root, problems)
        named = {spec.inputs[f].filename_input for f in paths if f in spec.inputs}
        _given(where, set(values) | set(paths) | {n for n in named if n}, spec, problems)
    asserts = _assertions(where, raw.get("assert"), problems)
    return Case(
        id=str(case_id),
        asserts=asserts,
        inputs=inputs,
        files=files,
        variant=raw.get("variant") if isinstance(raw.get("variant"), str) else None,
    )


def _header(raw: Any, file: str, contract: Contract, problems: list[str]) -> dict[str, Any]:
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
    pipeline = raw.get("pipeline", contract.default_pipeline)
    if pipeline not in contract.pipelines:
        problems.append(
            f"{file}: [suite] pipeline = {pipeline!r} is not declared in [tool.promptdag.pipelines]. "
            f"Declared: {', '.join(sorted(contract.pipelines))}"
        )
    threshold = raw.get("threshold")
    if (
        not isinstance(threshold, int | float)
        or isinstance(threshold, bool)
        or not 0 <= threshold <= 1
    ):
        problems.append(
            f"{file}: [suite] threshold = {threshold!r} must be a pass rate from 0 to 1 (e.g. 0.9)"
        )
    growth = raw.get("usage_growth", DEFAULT_USAGE_GROWTH)
    if not isinstance(growth, int | float) or isinstance(growth, bool) or growth < 0:
        problems.append(
            f"{file}: [suite] usage_growth = {growth!r} must be a share of at least 0 "
            "(e.g. 0.25: a case may use 25% more calls, tokens and cost than on the base)"
        )
    return raw


def _check_outputs(cases: list[Case], file: str, spec: PipelineSpec, problems: list[str]) -> None:
    known = list(dict.fromkeys([spec.answer, *spec.outputs, *RUN_OUTPUTS]))
    for case in cases:
        for a in case.asserts:
            if "output" in a.options and a.options["output"] not in known:
                problems.append(
                    f"{file}: case {case.id!r}: assertion {a.index} ({a.type}): output = "
                    f"{a.options['output']!r} is not an output of pipeline {spec.name!r}. "
                    f"Outputs: {', '.join(known)}"
                )


def _cross_checks(
    cases: list[Case],
    file: str,
    contract: Contract,
    variants: set[str | None],
    problems: list[str],
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
        defined = set(load_variants(contract.variants).variants)
    except VariantError as exc:
        problems.extend(exc.problems)
        return
    where = contract.relpath(contract.variants)
    for name in sorted(v for v in variants if isinstance(v, str) and v not in defined):
        problems.append(
            f"{file}: variant {name!r} is not defined in {where}. Defined: {', '.join(sorted(defined))}"
        )


def load_suite(name_or_path: str | Path, *, root: str | Path | None = None) -> Suite:
    """Load and validate a suite by name (from `root`'s suites directory) or path; inputs,
    files, outputs and variants are checked against `root`'s contract (default: the project
    holding the current directory)."""
    project_root = find_project(root)
    contract = load_contract(project_root)
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
    header = _header(data.get("suite"), file, contract, problems)
    pipeline = header.get("pipeline", contract.default_pipeline)
    spec = contract.pipelines.get(pipeline) if isinstance(pipeline, str) else None
    raw_cases = data.get("cases")
    if not isinstance(raw_cases, list) or not raw_cases:
        problems.append(f"{file}: defines no [[cases]]")
        raw_cases = []
    parsed = [
        _case(raw, n + 1, file, project_root, spec, problems) for n, raw in enumerate(raw_cases)
    ]
    cases = [c for c in parsed if c is not None]
    if spec is not None:
        _check_outputs(cases, file, spec, problems)
    variants = {header.get("variant"), *(c.variant for c in cases)}
    _cross_checks(cases, file, contract, variants, problems)
    if problems:
        raise ConfigError(problems)
    return Suite(
        name=str(header.get("name") or path.stem),
        description=str(header.get("description", "")),
        threshold=float(header["threshold"]),
        usage_growth=float(header.get("usage_growth", DEFAULT_USAGE_GROWTH)),
        variant=header.get("variant"),
        cases=tuple(cases),
        path=resolved,
        root=project_root,
        sha256=hashlib.sha256(raw_bytes).hexdigest(),
        pipeline=str(pipeline),
    )
