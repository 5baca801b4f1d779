"""Checking one request's inputs against its pipeline's declared inputs: only declared names
(never a prompt node or a config key), each of its kind and under its caps, required ones
present, and exactly one of each `one_of` group. Strings from a command line are parsed.

Text is cleaned: control characters other than whitespace (NUL, escape, C1 codes) are dropped
(from every text and string input but secrets); an empty file, and a text input left empty, are
refused. File and text inputs come back as `LargeBytes` and
`LargeText`: a `bytes` and a `str` whose `repr` is one short line, so that no error path copies
a whole upload into a string (Hamilton's message for a failing node holds `repr()` of each of
its inputs)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from promptdag.contract import InputSpec, PipelineSpec
from promptdag.errors import ForbiddenInputError, InputError, LimitExceededError

__all__ = [
    "LargeBytes",
    "LargeText",
    "check_inputs",
    "clean_text_input",
    "coerce_input",
    "read_input_file",
]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
# C0 and C1 control characters but tab, newlines, vertical tab and form feed; and DEL.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")


class LargeBytes(bytes):
    """`bytes` (it passes every `bytes` check) whose repr is short: `<LargeBytes: N bytes>`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {len(self)} bytes>"

    __str__ = __repr__


class LargeText(str):
    """`str` (it passes every `str` check) whose repr is short: `<LargeText: N characters>`.
    Everything else (str(), formatting, slicing, encoding) sees the whole text."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {len(self)} characters>"


def clean_text_input(value: str) -> str:
    """`value` without its control characters (whitespace ones are kept)."""
    return _CONTROL.sub("", value) if _CONTROL.search(value) else value


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
    raw = value
    if not spec.secret:  # a password is what it is, control characters and all
        value = clean_text_input(value)
    bad = sorted({c for c in spec.forbidden_chars if c in value})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise InputError(
            f"input {spec.name} may not contain {shown}"
            f"{f' ({spec.description})' if spec.description else ''}."
        )
    if spec.kind == "string" and spec.default != "" and not value.strip():
        cleaned = " after removing its control characters" if value is not raw else ""
        raise InputError(f"input {spec.name} is empty{cleaned}: leave it out, or give a value.")
    return LargeText(value) if spec.kind == "text" and type(value) is not LargeText else value


def _refuse_empty(spec: PipelineSpec, given: Mapping[str, Any], out: Mapping[str, Any]) -> None:
    """A file or text input the request sends must hold something (text: once cleaned; a
    declared default may be empty); checked per run, so an eval suite may hold a case that
    expects this refusal."""
    for name, value in out.items():
        kind = spec.inputs[name].kind
        if name in given and kind == "file" and not value:
            raise InputError(f"input {name} is an empty file (0 bytes): send the file itself.")
        if name in given and kind == "text" and not value.strip():
            removed = len(value) != len(given[name])
            cleaned = " once its control characters are removed" if removed else ""
            description = spec.inputs[name].description.rstrip(".")
            about = f" ({description})" if description else ""
            raise InputError(
                f"input {name} is empty: it holds no text{cleaned}. Send text to work on{about}."
            )


def coerce_input(spec: InputSpec, value: Any) -> Any:
    """`value` checked (and parsed from a string where the kind is a number or boolean); files
    come back as `LargeBytes`, text as `LargeText`, both cleaned of control characters."""
    if spec.kind == "file":
        if not isinstance(value, bytes | bytearray | memoryview):
            raise InputError(f"input {spec.name!r} must be a file's bytes.")
        size = value.nbytes if isinstance(value, memoryview) else len(value)
        if spec.max_bytes is not None and size > spec.max_bytes:
            raise LimitExceededError(
                f"input {spec.name}",
                f"{size} bytes",
                f"{spec.max_bytes} bytes",
                "Send a smaller file.",
            )
        return value if type(value) is LargeBytes else LargeBytes(value)
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
    _refuse_empty(spec, inputs, out)
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


def read_input_file(path: Path, spec: InputSpec) -> LargeBytes | str:
    """A file for input `spec` (the CLI's positional file, `NAME=@FILE`, a batch's files): its
    size checked before it is read and at most cap + 1 bytes read; a file input's bytes as
    LargeBytes (the run's checks make no second copy), a text input decoded as UTF-8."""
    if not path.exists():
        raise InputError(f"{path}: no such file. Check the path.")
    if not path.is_file():
        raise InputError(f"{path}: not a file.")
    cap = spec.max_bytes if spec.is_file else (spec.max_chars or 0) * 4
    size = path.stat().st_size
    if cap and size > cap:
        raise LimitExceededError(
            f"{path.name} ({spec.name})", f"{size} bytes", f"{cap} bytes", "Send a smaller file."
        )
    with path.open("rb") as fh:
        data = fh.read(cap + 1 if cap else -1)
    if cap and len(data) > cap:
        raise LimitExceededError(
            f"{path.name} ({spec.name})", "larger", f"{cap} bytes", "Send a smaller file."
        )
    if spec.is_file:
        return LargeBytes(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason}).") from exc
