"""The deterministic assertions: each takes its options and what a case produced, and returns a
status and a detail that says, for a failure, what was expected and what was found. Each checks
the output its `output` option names (default: the pipeline's answer)."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from promptdag.errors import ConfigError
from promptdag.evals.options import regex_flags

__all__ = ["CHECKS", "AssertionResult", "CaseOutput", "Status", "import_callable", "measure"]

Status = Literal["pass", "fail", "skip", "error"]
Outcome = tuple[Status, str]
_BULLET = re.compile(r"^\s*(?:[-*•+]|\d+[.)])\s+\S", re.M)
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)\]]*\s+")
_FENCE = re.compile(r"^```(?:json)?\s*\n(.*?)\n```\s*$", re.S)


@dataclass(frozen=True)
class AssertionResult:
    """The outcome of one assertion of one case."""

    index: int
    type: str
    status: Status
    detail: str


@dataclass(frozen=True)
class CaseOutput:
    """What one case's run produced: the answer as text, every declared output (JSON-ready
    values, the answer among them, by name), the run's usage and fingerprint, and the case's
    inputs (`request`: as the judge reads them)."""

    case_id: str
    variant: str
    text: str
    usage: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    answer: str = "answer"
    model: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    request: str = ""

    def value(self, output: str | None = None) -> Any:
        """The value of `output`: a declared output, `usage` or `fingerprint` (None: the answer)."""
        name = output or self.answer
        if name == "usage":
            return self.usage
        if name == "fingerprint":
            return self.fingerprint
        if name in self.outputs:
            return self.outputs[name]
        if name == self.answer:
            return self.text
        known = ", ".join([*self.outputs, "usage", "fingerprint"])
        raise LookupError(f"the run has no output {name!r}. Outputs: {known}")

    def text_of(self, output: str | None = None) -> str:
        """`output` as text: the answer's text, a string output as is, any other as JSON."""
        if output is None or output == self.answer:
            return self.text
        value = self.value(output)
        if isinstance(value, str):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _quote(values: list[str]) -> str:
    return ", ".join(repr(v) for v in values)


def _found(opts: Mapping[str, Any], text: str) -> tuple[list[str], list[str]]:
    values: list[str] = opts["values"]
    haystack = text if opts.get("case_sensitive", False) else text.casefold()
    hits = [
        v for v in values if (v if opts.get("case_sensitive", False) else v.casefold()) in haystack
    ]
    return hits, [v for v in values if v not in hits]


def contains(opts: Mapping[str, Any], out: CaseOutput) -> Outcome:
    hits, missing = _found(opts, out.text_of(opts.get("output")))
    mode = opts.get("mode", "all")
    ok = not missing if mode == "all" else bool(hits)
    if ok:
        return "pass", f"found {_quote(hits)}"
    return "fail", f"expected {mode} of {_quote(opts['values'])}; missing {_quote(missing)}"


def not_contains(opts: Mapping[str, Any], out: CaseOutput) -> Outcome:
    hits, missing = _found(opts, out.text_of(opts.get("output")))
    mode = opts.get("mode", "all")
    ok = not hits if mode == "all" else bool(missing)
    if ok:
        return "pass", f"absent: {_quote(missing)}"
    wanted = "none" if mode == "all" else "not all"
    return "fail", f"expected {wanted} of {_quote(opts['values'])}; found {_quote(hits)}"


def regex(opts: Mapping[str, Any], out: CaseOutput) -> Outcome:
    flags = opts.get("flags", "")
    shown = f"/{opts['pattern']}/{flags}"
    match = re.search(opts["pattern"], out.text_of(opts.get("output")), regex_flags(flags))
    expect = opts.get("expect", True)
    found = f"{match.group(0)[:80]!r} at {match.start()}" if match else "none"
    if bool(match) == expect:
        return "pass", f"{'matched' if match else 'no match for'} {shown}" + (
            f": {found}" if match else ""
        )
    return "fail", f"expected {'a' if expect else 'no'} match for {shown}, found {found}"


def measure(unit: str, text: str) -> int:
    """Words (whitespace-separated, with a letter or digit: a bullet's `-` is not one), chars, bullets (lines starting `-`, `*`, `•`, `+` or `1.`),
    or sentences (runs ending in . ! ? …, counted per line; headings `#` are not sentences)."""
    if unit == "words":
        return sum(1 for w in text.split() if any(ch.isalnum() for ch in w))
    if unit == "chars":
        return len(text)
    if unit == "bullets":
        return len(_BULLET.findall(text))
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    pieces = [p for ln in lines for p in _SENTENCE_END.split(ln.strip())]
    return sum(1 for p in pieces if any(ch.isalnum() for ch in p))


def length(opts: Mapping[str, Any], out: CaseOutput) -> Outcome:
    unit, lo, hi = opts["unit"], opts.get("min"), opts.get("max")
    n = measure(unit, out.text_of(opts.get("output")))
    if lo is not None and hi is not None:
        bound = f"{lo} to {hi} {unit}"
    else:
        bound = f"at least {lo} {unit}" if lo is not None else f"at most {hi} {unit}"
    ok = (lo is None or n >= lo) and (hi is None or n <= hi)
    if ok:
        return "pass", f"{n} {unit} (expected {bound})"
    return "fail", f"expected {bound}, found {n}"


def _json_document(opts: Mapping[str, Any], out: CaseOutput) -> tuple[Any, str | None]:
    """The value to validate: a string output parsed as JSON (bare or fenced), else the value."""
    value = out.value(opts.get("output"))
    if not isinstance(value, str):
        return value, None
    raw = value.strip()
    fenced = _FENCE.match(raw)
    try:
        return json.loads(fenced.group(1) if fenced else raw), None
    except ValueError as exc:
        return None, f"expected JSON, found text that does not parse ({exc}): {raw[:60]!r}"


def json_schema(opts: Mapping[str, Any], out: CaseOutput) -> Outcome:
    from jsonschema import validators

    document, problem = _json_document(opts, out)
    if problem:
        return "fail", problem
    validator = validators.validator_for(opts["schema"])(opts["schema"])
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    source = opts.get("output") or out.answer
    if not errors:
        return "pass", f"{source} matches the schema"
    shown = "; ".join(f"{e.json_path}: {e.message}" for e in errors[:3])
    more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
    return "fail", f"expected {source} to match the schema; {shown}{more}"


def import_callable(ref: str) -> Any:
    """`module:name` imported from sys.path (the runner imports from the project tree)."""
    module_name, _, name = ref.partition(":")
    return getattr(importlib.import_module(module_name), name)


def python(
    opts: Mapping[str, Any],
    out: CaseOutput,
    load: Callable[[str], Any] = import_callable,
) -> Outcome:
    """`callable(text, context)`: the output's text, and a context with the case, its
    variant and inputs, the output's name, the run's usage, fingerprint and outputs, and the
    assertion's `options`. `load` imports the callable (the project's `import_object`)."""
    ref = opts["callable"]
    try:
        func = load(ref)
    except (ImportError, AttributeError, ConfigError) as exc:
        return "error", f"cannot import {ref}: {type(exc).__name__}: {exc}"
    context = {
        "case": out.case_id,
        "variant": out.variant,
        "inputs": out.inputs,
        "output": opts.get("output") or out.answer,
        "usage": out.usage,
        "fingerprint": out.fingerprint,
        "outputs": out.outputs,
        "options": dict(opts.get("options", {})),
    }
    try:
        verdict = func(out.text_of(opts.get("output")), context)
    except Exception as exc:  # the user's code: report it, never crash the suite
        return "error", f"{ref} raised {type(exc).__name__}: {exc}"
    ok, detail = verdict if isinstance(verdict, tuple) and len(verdict) == 2 else (verdict, "")
    if not isinstance(ok, bool):
        return "error", f"{ref} returned {verdict!r}: return a bool or (bool, detail)"
    return ("pass" if ok else "fail"), str(detail) or f"{ref} returned {ok}"


def token_budget(opts: Mapping[str, Any], out: CaseOutput) -> Outcome:
    usage = out.usage
    found = {
        "input tokens": (usage.get("input_tokens", 0), opts.get("max_input_tokens")),
        "output tokens": (usage.get("output_tokens", 0), opts.get("max_output_tokens")),
        "total tokens": (
            usage.get("input_tokens", 0) + usage.get("output_tokens", 0),
            opts.get("max_total_tokens"),
        ),
        "LLM calls": (usage.get("calls", 0), opts.get("max_calls")),
    }
    checked = {k: v for k, v in found.items() if v[1] is not None}
    over = [f"expected at most {cap} {k}, found {n}" for k, (n, cap) in checked.items() if n > cap]
    if over:
        return "fail", "; ".join(over)
    return "pass", ", ".join(f"{n} {k} (cap {cap})" for k, (n, cap) in checked.items())


def cost_budget(opts: Mapping[str, Any], out: CaseOutput) -> Outcome:
    cost, cap = out.usage.get("cost_usd"), opts["max_usd"]
    if cost is None:
        return "fail", (
            f"the price of model {out.model or '?'!r} is unknown (add it to [prices] in the "
            f"variants file), so the ${cap:g} budget cannot be checked"
        )
    cached = out.usage.get("cached_calls", 0)
    note = f" ({cached} of {out.usage.get('calls', 0)} calls cached at $0)" if cached else ""
    if cost > cap:
        return "fail", f"expected at most ${cap:g}, found ${cost:.6f}{note}"
    return "pass", f"${cost:.6f} within ${cap:g}{note}"


CHECKS: dict[str, Callable[[Mapping[str, Any], CaseOutput], Outcome]] = {
    "contains": contains,
    "cost-budget": cost_budget,
    "json-schema": json_schema,
    "length": length,
    "not-contains": not_contains,
    "python": python,
    "regex": regex,
    "token-budget": token_budget,
}
