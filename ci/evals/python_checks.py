"""Python-callable assertions for suites (`type = "python"`, `callable = "ci.evals.python_checks:NAME"`).
Each takes (output, context) and returns (passed, detail); options come from `options = {...}`."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["answer_first", "headed_sections"]

_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.M)


def headed_sections(output: str, context: dict[str, Any]) -> tuple[bool, str]:
    """The output has the headings in `options.headings`, in that order, each followed by
    some text before the next heading."""
    wanted: list[str] = list(context["options"].get("headings", []))
    found = [m.group(1).strip().rstrip(":") for m in _HEADING.finditer(output)]
    if [h.casefold() for h in found if h.casefold() in {w.casefold() for w in wanted}] != [
        w.casefold() for w in wanted
    ]:
        return False, f"expected headings {wanted} in order, found {found}"
    bodies = _HEADING.split(output)[2::2]
    empty = [h for h, body in zip(found, bodies, strict=False) if not body.strip()]
    if empty:
        return False, f"expected text under every heading, found none under {empty}"
    return True, f"headings {wanted} in order, each with content"


def answer_first(output: str, context: dict[str, Any]) -> tuple[bool, str]:
    """One of `options.answer` (any, case-insensitive) appears in the first `options.lines`
    (default 2) non-empty lines: the query is answered before anything else."""
    options = context["options"]
    answers = [a.casefold() for a in options.get("answer", [])]
    n = int(options.get("lines", 2))
    head = [ln for ln in output.splitlines() if ln.strip()][:n]
    if any(a in ln.casefold() for a in answers for ln in head):
        return True, f"the answer is in the first {n} line(s)"
    return (
        False,
        f"expected one of {options.get('answer')} in the first {n} line(s), found {head!r}",
    )
