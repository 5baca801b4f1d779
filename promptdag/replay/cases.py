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
from promptdag.ui.feedback import feedback_for

__all__ = ["append_case", "case_for", "case_toml"]


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


def _parts(
    request_id: str, project: Path
) -> tuple[dict[str, Any], Any, str, dict[str, Any], dict[str, bytes], list[str]]:
    """The request, its stored inputs, the case id, the plain inputs, the file inputs' bytes and
    the secret inputs left out."""
    from promptdag.contract import load_contract
    from promptdag.replay.core import stored_request

    request, _, stored = stored_request(request_id, project)
    spec = load_contract(project).pipelines.get(stored.pipeline)
    secret = {n for n, s in spec.inputs.items() if s.secret} if spec is not None else set()
    case_id = f"replay-{request['request_id'][:12]}"
    inputs: dict[str, Any] = {}
    files: dict[str, bytes] = {}
    for name, value in stored.inputs.items():
        if name in secret:
            continue
        if isinstance(value, bytes):
            files[name] = bytes(value)
        else:
            inputs[name] = value
    return request, stored, case_id, inputs, files, sorted(secret & set(stored.inputs))


def _text(
    project: Path, request: dict[str, Any], stored: Any, case_id: str, inputs: dict[str, Any],
    paths: dict[str, str], secrets: list[str],
) -> str:  # fmt: skip
    result = stored.result or {}
    text = case_toml(
        case_id,
        request,
        stored.variant,
        inputs,
        paths,
        result.get("answer"),
        result.get("answer_text"),
        feedback_for(project, request["request_id"]),
    )
    if secrets:
        note = f"# Secret inputs left out (set them to run the case): {', '.join(secrets)}\n"
        text = text.replace("[[cases]]\n", note + "[[cases]]\n", 1)
    return text


def case_for(request_id: str, project_root: Path | None = None) -> str:
    """The case's TOML, to read or paste (file inputs named by the path `--to-case` would
    write them to, under the suites directory)."""
    from promptdag.contract import load_contract

    project = find_project(project_root)
    request, stored, case_id, inputs, files, secrets = _parts(request_id, project)
    suites = load_contract(project).suites
    where = suites.resolve().relative_to(project.resolve()) if suites.is_absolute() else suites
    paths = {n: (Path(where) / "cases" / f"{case_id}-{n}").as_posix() for n in files}
    head = (
        f"# Append to a suite of pipeline {stored.pipeline}; `promptdag replay "
        f"{request['request_id'][:12]} --to-case SUITE.toml` also writes the files.\n"
        if files
        else ""
    )
    return head + _text(project, request, stored, case_id, inputs, paths, secrets)


def append_case(request_id: str, suite: Path, project_root: Path | None = None) -> str:
    """Append the recorded request to the eval suite file `suite` (its file inputs written
    beside it, under cases/); secret inputs are left out. Returns the case id."""
    import tomllib

    project = find_project(project_root)
    request, stored, case_id, inputs, files, secrets = _parts(request_id, project)
    path = suite if suite.is_absolute() else Path.cwd() / suite
    if not path.is_file():
        raise InputError(f"{suite}: no such suite file. `promptdag eval --list` shows the suites.")
    existing = tomllib.loads(path.read_text(encoding="utf-8")).get("cases", [])
    if any(c.get("id") == case_id for c in existing if isinstance(c, dict)):
        raise InputError(f"{suite} already has case {case_id!r}.")
    paths: dict[str, str] = {}
    for name, data in files.items():
        target = path.parent / "cases" / f"{case_id}-{name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        paths[name] = target.resolve().relative_to(project.resolve()).as_posix()
    text = _text(project, request, stored, case_id, inputs, paths, secrets)
    with path.open("a", encoding="utf-8") as f:
        f.write(text)
    return case_id
