"""The assertion types a suite may use and the options each takes, checked when a suite loads.

type            required            optional
contains        values              mode (all|any), case_sensitive
not-contains    values              mode (all|any), case_sensitive
regex           pattern             flags ("i", "m", "s", "x"), expect (true|false)
length          unit, min and/or max    unit: words|sentences|bullets|chars
json-schema     schema
python          callable            options (a table handed to the callable)
token-budget    one of max_input_tokens, max_output_tokens, max_total_tokens, max_calls
cost-budget     max_usd
llm-rubric      rubric                                               (needs a judge model)
pairwise-judge  reference or reference_case    criteria, expect      (needs a judge model)

Every type but the two budgets also takes `output`: the output it checks (a declared output of
the suite's pipeline, `usage` or `fingerprint`; default: the pipeline's answer). The suite file
checks the name against the contract (suite_file.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ASSERTION_TYPES",
    "JUDGE_TYPES",
    "LENGTH_UNITS",
    "PAIRWISE_EXPECT",
    "AssertionType",
    "option_problems",
    "regex_flags",
]

Check = Callable[[Any], str | None]
LENGTH_UNITS = ("words", "sentences", "bullets", "chars")
PAIRWISE_EXPECT = ("win", "win-or-tie", "tie", "loss-or-tie", "loss")
_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}
_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def regex_flags(flags: str) -> int:
    """`"im"` → `re.IGNORECASE | re.MULTILINE`; unknown letters are a ValueError naming them."""
    bad = sorted(set(flags) - set(_FLAGS))
    if bad:
        raise ValueError(f"unknown regex flag(s) {''.join(bad)!r}: use any of i, m, s, x")
    value = 0
    for letter in flags:
        value |= _FLAGS[letter]
    return value


def _text(v: Any) -> str | None:
    return None if isinstance(v, str) and v.strip() else f"must be non-empty text, got {v!r}"


def _texts(v: Any) -> str | None:
    ok = isinstance(v, list) and v and all(isinstance(x, str) and x for x in v)
    return None if ok else f"must be a non-empty list of non-empty strings, got {v!r}"


def _flag(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false, got {v!r}"


def _count(v: Any) -> str | None:
    ok = isinstance(v, int) and not isinstance(v, bool) and v >= 0
    return None if ok else f"must be a whole number >= 0, got {v!r}"


def _money(v: Any) -> str | None:
    ok = isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
    return None if ok else f"must be a number of USD >= 0, got {v!r}"


def _table(v: Any) -> str | None:
    return None if isinstance(v, dict) else f"must be a table, got {v!r}"


def _choice(*choices: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in choices else f"is {v!r}: use one of {', '.join(choices)}"

    return check


def _flags(v: Any) -> str | None:
    if not isinstance(v, str):
        return f'must be a string of letters such as "im", got {v!r}'
    try:
        regex_flags(v)
    except ValueError as exc:
        return str(exc)
    return None


def _callable(v: Any) -> str | None:
    ok = isinstance(v, str) and _CALLABLE.match(v)
    return None if ok else f'is {v!r}: use "module.path:function" (importable from the project)'


def _regex_compiles(o: Mapping[str, Any]) -> list[str]:
    try:
        re.compile(o["pattern"], regex_flags(o.get("flags", "")))
    except (re.error, ValueError, TypeError) as exc:
        return [f"pattern {o['pattern']!r} does not compile: {exc}"]
    return []


def _min_le_max(o: Mapping[str, Any]) -> list[str]:
    lo, hi = o.get("min"), o.get("max")
    if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
        return [f"min={lo} is above max={hi}"]
    return []


def _schema_valid(o: Mapping[str, Any]) -> list[str]:
    from jsonschema import exceptions, validators

    try:
        validators.validator_for(o["schema"]).check_schema(o["schema"])
    except exceptions.SchemaError as exc:
        return [f"schema is not a valid JSON schema: {exc.message}"]
    return []


def _one_reference(o: Mapping[str, Any]) -> list[str]:
    if "reference" in o and "reference_case" in o:
        return ["give reference or reference_case, not both"]
    return []


@dataclass(frozen=True)
class AssertionType:
    """What one assertion type accepts; `any_of` names options of which at least one is needed."""

    required: dict[str, Check]
    optional: dict[str, Check] = field(default_factory=dict)
    any_of: tuple[str, ...] = ()
    judge: bool = False
    extra: Callable[[Mapping[str, Any]], list[str]] | None = None


_OUTPUT: dict[str, Check] = {"output": _text}
_CONTAINS = AssertionType(
    {"values": _texts}, {"mode": _choice("all", "any"), "case_sensitive": _flag, **_OUTPUT}
)
_BUDGETS = ("max_input_tokens", "max_output_tokens", "max_total_tokens", "max_calls")

ASSERTION_TYPES: dict[str, AssertionType] = {
    "contains": _CONTAINS,
    "not-contains": _CONTAINS,
    "regex": AssertionType(
        {"pattern": _text}, {"flags": _flags, "expect": _flag, **_OUTPUT}, extra=_regex_compiles
    ),
    "length": AssertionType(
        {"unit": _choice(*LENGTH_UNITS)},
        {"min": _count, "max": _count, **_OUTPUT},
        any_of=("min", "max"),
        extra=_min_le_max,
    ),
    "json-schema": AssertionType(
        {"schema": _table},
        _OUTPUT,
        extra=_schema_valid,
    ),
    "python": AssertionType({"callable": _callable}, {"options": _table, **_OUTPUT}),
    "token-budget": AssertionType({}, dict.fromkeys(_BUDGETS, _count), any_of=_BUDGETS),
    "cost-budget": AssertionType({"max_usd": _money}),
    "llm-rubric": AssertionType({"rubric": _text}, _OUTPUT, judge=True),
    "pairwise-judge": AssertionType(
        {},
        {
            "reference": _text,
            "reference_case": _text,
            "criteria": _text,
            "expect": _choice(*PAIRWISE_EXPECT),
            **_OUTPUT,
        },
        any_of=("reference", "reference_case"),
        judge=True,
        extra=_one_reference,
    ),
}
JUDGE_TYPES = tuple(sorted(name for name, t in ASSERTION_TYPES.items() if t.judge))


def option_problems(type_name: str, options: Mapping[str, Any]) -> list[str]:
    """Every problem with one assertion's options (empty when they are fine)."""
    kind = ASSERTION_TYPES.get(type_name)
    if kind is None:
        return [f"unknown type {type_name!r}; known: {', '.join(sorted(ASSERTION_TYPES))}"]
    known = {**kind.required, **kind.optional}
    problems = [
        f"unknown option {k!r}; {type_name} takes: {', '.join(sorted(known)) or 'no options'}"
        for k in options
        if k not in known
    ]
    problems += [f"missing option {k!r}" for k in kind.required if k not in options]
    if kind.any_of and not any(k in options for k in kind.any_of):
        problems.append(f"give at least one of {', '.join(kind.any_of)}")
    bad = [f"{k} {p}" for k, v in options.items() if k in known and (p := known[k](v))]
    problems += bad
    if not problems and kind.extra is not None:
        problems += kind.extra(options)
    return problems
