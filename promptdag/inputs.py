"""Checking one request's inputs against its pipeline's declared inputs: only declared names
(never a prompt node or a config key), each of its kind and under its caps, required ones
present, and exactly one of each `one_of` group. Strings from a command line are parsed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from promptdag.contract import InputSpec, PipelineSpec
from promptdag.errors import ForbiddenInputError, InputError, LimitExceededError

__all__ = ["check_inputs", "coerce_input"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _number(spec: InputSpec, value: Any) -> float | int:
    integer = spec.kind == "integer"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InputError(f"input {spec.name!r} must be a{'n integer' if integer else ' number'}.")
    try:
        out: float | int = int(value) if integer else float(value)
    except ValueError as exc:
        raise InputError(
            f"input {spec.name}={value!r} is not a{'n integer' if integer else ' number'}."
        ) from exc
    if integer and isinstance(value, float) and not value.is_integer():
        raise InputError(f"input {spec.name}={value!r} is not an integer.")
    lo, hi = spec.min, spec.max
    if (lo is not None and out < lo) or (hi is not None and out > hi):
        raise InputError(
            f"input {spec.name}={out!r} is out of range: use a value from "
            f"{'-inf' if lo is None else f'{lo:g}'} to {'inf' if hi is None else f'{hi:g}'}."
        )
    return out


def _text(spec: InputSpec, value: Any) -> str:
    if not isinstance(value, str):
        raise InputError(f"input {spec.name!r} must be text, got {type(value).__name__}.")
    if spec.max_chars is not None and len(value) > spec.max_chars:
        raise LimitExceededError(
            f"input {spec.name}",
            f"{len(value)} characters",
            f"{spec.max_chars} characters",
            "Send a shorter value.",
        )
    bad = sorted({c for c in spec.forbidden_chars if c in value})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise InputError(
            f"input {spec.name} may not contain {shown}"
            f"{f' ({spec.description})' if spec.description else ''}."
        )
    if spec.kind == "string" and spec.default != "" and not value.strip():
        raise InputError(f"input {spec.name} is empty: leave it out, or give a value.")
    return value


def coerce_input(spec: InputSpec, value: Any) -> Any:
    """`value` checked (and parsed from a string where the kind is a number or boolean)."""
    if spec.kind == "file":
        if not isinstance(value, bytes | bytearray | memoryview):
            raise InputError(f"input {spec.name!r} must be a file's bytes.")
        data = bytes(value)
        if spec.max_bytes is not None and len(data) > spec.max_bytes:
            raise LimitExceededError(
                f"input {spec.name}",
                f"{len(data)} bytes",
                f"{spec.max_bytes} bytes",
                "Send a smaller file.",
            )
        return data
    if spec.kind in ("number", "integer"):
        return _number(spec, value)
    if spec.kind == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise InputError(f"input {spec.name}={value!r} is not a boolean (true or false).")
    return _text(spec, value)


def check_inputs(spec: PipelineSpec, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The request's inputs, checked; an InputError (or ForbiddenInputError) says what is wrong."""
    unknown = sorted(k for k in inputs if k not in spec.inputs)
    if unknown:
        raise ForbiddenInputError(unknown, list(spec.inputs))
    out = {name: coerce_input(spec.inputs[name], value) for name, value in inputs.items()}
    missing = sorted(n for n, s in spec.inputs.items() if s.required and n not in out)
    grouped = {n for g in spec.one_of for n in g}
    missing = [n for n in missing if n not in grouped]
    if missing:
        raise InputError(
            f"pipeline {spec.name!r} needs input(s) {', '.join(missing)}. "
            f"Its inputs: {', '.join(sorted(spec.inputs))}."
        )
    for group in spec.one_of:
        given = [n for n in group if n in out]
        if len(given) != 1:
            raise InputError(
                f"pipeline {spec.name!r} takes exactly one of {', '.join(group)}; "
                f"got {', '.join(given) if given else 'none'}."
            )
    for name, s in spec.inputs.items():
        if name not in out and s.default is not None:
            out[name] = coerce_input(s, s.default)
    return out
