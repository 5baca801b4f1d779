"""A recorded request as an eval case (`promptdag replay ID --to-case SUITE.toml`): its stored
inputs (files copied under the suite's directory, `cases/<case id>-<input>`), its variant, and
assertions derived from the recorded run: the answer's length within half to one and a half
times the recorded one, at most the recorded calls and twice its tokens, an answer that is not
empty, and, when someone gave the run feedback on the traces page, an llm-rubric built from it.
The recorded answer is written above the case as a comment, for the reviewer. The case is
appended to the suite file as text, so the file's comments and layout stay as they are."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from promptdag.errors import InputError
from promptdag.project import find_project

__all__ = ["append_case", "case_toml"]


def _value(value: Any) -> str:
    """A TOML value: JSON's strings, numbers and booleans are TOML's too."""
    return json.dumps(value, ensure_ascii=False)


def _assertions(request: dict[str, Any], answer: str | None, is_text: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if answer is not None:
        unit = "words" if is_text else "chars"
        size = len(re.findall(r"\S+", answer)) if is_text else len(answer)
        out.append(
            {
                "type": "length",
                "unit": unit,
                "min": math.floor(size * 0.5),
                "max": max(1, math.ceil(size * 1.5)),
            }
        )
    calls = int(request.get("calls") or 0)
    tokens = int(request.get("input_tokens") or 0) + int(request.get("output_tokens") or 0)
    out.append({"type": "token-budget", "max_calls": calls, "max_total_tokens": max(1, 2 * tokens)})
    out.append({"type": "regex", "pattern": r"\S"})
    return out


def _rubric(feedback: dict[str, Any] | None) -> dict[str, Any] | None:
    if not feedback or not (feedback.get("comment") or "").strip():
        return None
    verdict = {1: "good", -1: "bad"}.get(feedback.get("rating") or 0, "noted")
    return {
        "type": "llm-rubric",
        "rubric": f"A reviewer rated the recorded answer {verdict} and wrote: "
        f"{feedback['comment'].strip()} The answer must address this.",
    }


def case_toml(
    case_id: str,
    request: dict[str, Any],
    variant: str,
    inputs: dict[str, Any],
    files: dict[str, str],
    answer: Any,
    answer_text: str | None,
    feedback: dict[str, Any] | None = None,
) -> str:
    """The `[[cases]]` block (with its comment) for one recorded request."""
    lines = [
        "",
        f"# From request {request['request_id']} ({request.get('started_at')}, variant {variant}, "
        f"git {str(request.get('git_sha') or 'none')[:12]}), by promptdag replay --to-case.",
    ]
    if answer_text is not None:
        lines.append("# Recorded answer:")
        lines.extend(f"#   {line}".rstrip() for line in answer_text.splitlines()[:40])
    lines += ["[[cases]]", f"id = {_value(case_id)}", f"variant = {_value(variant)}"]
    if inputs:
        lines.append(
            "inputs = { "
            + ", ".join(f"{k} = {_value(v)}" for k, v in sorted(inputs.items()))
            + " }"
        )
    if files:
        lines.append(
            "files = { " + ", ".join(f"{k} = {_value(v)}" for k, v in sorted(files.items())) + " }"
        )
    asserts = _assertions(request, answer_text, isinstance(answer, str))
    rubric = _rubric(feedback)
    if rubric is not None:
        asserts.append(rubric)
    for table in asserts:
        lines += ["", "[[cases.assert]]"]
        lines += [f"{k} = {_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def append_case(request_id: str, suite: Path, project_root: Path | None = None) -> str:
    """Append the recorded request to the eval suite file `suite`; returns the case id."""
    import tomllib

    from promptdag.replay.core import stored_request
    from promptdag.ui.feedback import feedback_for

    project = find_project(project_root)
    request, _, stored = stored_request(request_id, project)
    path = suite if suite.is_absolute() else Path.cwd() / suite
    if not path.is_file():
        raise InputError(f"{suite}: no such suite file. `promptdag eval --list` shows the suites.")
    case_id = f"replay-{request['request_id'][:12]}"
    existing = tomllib.loads(path.read_text(encoding="utf-8")).get("cases", [])
    if any(c.get("id") == case_id for c in existing if isinstance(c, dict)):
        raise InputError(f"{suite} already has case {case_id!r}.")
    inputs: dict[str, Any] = {}
    files: dict[str, str] = {}
    for name, value in stored.inputs.items():
        if isinstance(value, bytes):
            target = path.parent / "cases" / f"{case_id}-{name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(value)
            files[name] = target.resolve().relative_to(project.resolve()).as_posix()
        else:
            inputs[name] = value
    result = stored.result or {}
    text = case_toml(
        case_id,
        request,
        stored.variant,
        inputs,
        files,
        result.get("answer"),
        result.get("answer_text"),
        feedback_for(project, request["request_id"]),
    )
    with path.open("a", encoding="utf-8") as f:
        f.write(text)
    return case_id
