"""Callables for `type = "python"` assertions in the tests."""

from __future__ import annotations

from typing import Any


def mentions_case(output: str, context: dict[str, Any]) -> tuple[bool, str]:
    """Passes when the output names the case id; shows what it was given."""
    ok = context["case"] in output
    return ok, f"case={context['case']} options={context['options']}"


def plain_bool(output: str, context: dict[str, Any]) -> bool:
    return output.startswith("yes")


def not_a_verdict(output: str, context: dict[str, Any]) -> str:
    return "maybe"


def explodes(output: str, context: dict[str, Any]) -> bool:
    raise RuntimeError("boom")


def shows_context(output: str, context: dict[str, Any]) -> tuple[bool, str]:
    """Passes; the detail names the output checked, the case's inputs and the outputs seen."""
    return True, (
        f"output={context['output']} starts={output[:1]!r} inputs={sorted(context['inputs'])} "
        f"outputs={sorted(context['outputs'])}"
    )
