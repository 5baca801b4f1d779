"""Replaying recorded requests: the request's stored inputs (`serve --store-inputs`) re-run
through its recorded pipeline, variant and serve config, in a git worktree of its recorded SHA
(or of `--at REF`), as the prompt gate reads another ref (`promptdag.gate.refs`); then the
rendered-prompt hashes and the answer are compared with the recorded ones, and the answers
diffed word by word (`promptdag.gate.worddiff`).

At the recorded SHA the rendered prompts must hash the same as recorded; when they do not, the
result says what may differ (a dirty tree, no SHA recorded, other config, other prompt versions,
other library versions)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from promptdag.config import data_dir
from promptdag.errors import GateError, PromptdagError
from promptdag.gate.refs import ref_worktree, repo_root, resolve_ref
from promptdag.gate.worddiff import Piece, word_diff, word_diff_plain, words_changed
from promptdag.inputs_store import INPUTS_FILE, InputsStore, StoredRequest
from promptdag.project import find_project

__all__ = [
    "ReplayError",
    "ReplayResult",
    "graphs_at",
    "replay_many",
    "replay_request",
    "stored_request",
]

_CHILD_TIMEOUT_S = 1800


class ReplayError(PromptdagError):
    """A recorded request cannot be replayed (no stored inputs, no SHA, git failed): exit 3."""

    exit_code = 3


@dataclass(frozen=True)
class ReplayResult:
    """One replayed request: what was recorded, what the replay produced, and how they differ."""

    request_id: str
    pipeline: str
    variant: str
    recorded_sha: str | None
    at: str  # the ref replayed at, as given ("recorded" for the recorded SHA)
    at_sha: str
    same_prompts: bool | None  # None: nothing recorded to compare with
    prompt_changes: list[str]  # one line per prompt (or call) whose rendered hash differs
    same_output: bool | None
    recorded_answer: str | None
    replayed_answer: str | None
    diff: list[Piece] = field(default_factory=list)
    # The first changed LLM call's rendered prompt, recorded → replayed (when the recording
    # kept its text): (where, pieces).
    prompt_diff: tuple[str, list[Piece]] | None = None
    notes: list[str] = field(default_factory=list)
    cached_calls: int = 0
    calls: int = 0
    cost_usd: float | None = None
    error: str | None = None
    # Whether the dependency lock file differs between the recorded run and the replayed tree
    # (None: the recording kept no lock hash, from before they were stored).
    dependency_lock_changed: bool | None = None

    @property
    def words_changed(self) -> int:
        return words_changed(self.diff)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["diff"] = [list(p) for p in self.diff]
        out["words_changed"] = self.words_changed
        out["diff_plain"] = word_diff_plain(self.diff) if self.diff else None
        out["prompt_diff"] = (
            None
            if self.prompt_diff is None
            else {"call": self.prompt_diff[0], "plain": word_diff_plain(self.prompt_diff[1])}
        )
        return out


def _paths(project_root: Path | None) -> tuple[Path, Path, Path]:
    project = find_project(project_root)
    data = data_dir(project)
    return project, data / "traces.sqlite", data / INPUTS_FILE


def stored_request(
    request_id: str, project_root: Path | None = None
) -> tuple[dict[str, Any], Any, StoredRequest]:
    """The trace (request row, calls) and the stored inputs of `request_id` (or a unique
    prefix); ReplayError when the inputs were not stored."""
    from promptdag.tracing.query import show_request

    _, traces, inputs = _paths(project_root)
    request, calls = show_request(traces, request_id)
    stored = InputsStore(inputs).get(request["request_id"]) if inputs.is_file() else None
    if stored is None:
        why = (
            " It was served with --redact, where inputs are kept only with "
            "--store-inputs-when-redacted."
            if request.get("redacted")
            else ""
        )
        raise ReplayError(
            f"request {request['request_id'][:12]} was recorded without its inputs, so it cannot "
            f"be replayed: the service keeps them only when started with "
            f"`promptdag serve --store-inputs` (and for --retain-days).{why}"
        )
    return request, calls, stored


def _recorded_sha(request: Mapping[str, Any]) -> str:
    sha = request.get("git_sha")
    if not isinstance(sha, str) or not sha:
        raise ReplayError(
            f"request {request['request_id'][:12]} has no recorded git SHA: it was served from a "
            "tree without .git and without a stamp (run `promptdag stamp` when building the "
            "image). Replay it at a ref instead: --at HEAD."
        )
    return sha


def _tail(stderr: str, lines: int = 6) -> str:
    """The last lines of the replay process's stderr, on one line."""
    kept = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip()]
    return " / ".join(kept[-lines:])


def _run_child(tree: Path, data: Path, job: dict[str, Any]) -> list[dict[str, Any]]:
    """`job` (replays, or DAGs to draw) run by `promptdag.replay.child` in the tree at `tree`."""
    env = {k: v for k, v in os.environ.items() if k != "PROMPTDAG_PROJECT"}
    env["PROMPTDAG_DATA_DIR"] = str(data)  # the project's response cache
    cmd = [sys.executable, "-P", "-c", "from promptdag.replay.child import main; main()"]
    payload = json.dumps(job)
    try:
        proc = subprocess.run(
            cmd, cwd=tree, env=env, input=payload, capture_output=True, text=True,
            timeout=_CHILD_TIMEOUT_S, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise ReplayError(f"the replay in {tree} took over {_CHILD_TIMEOUT_S} s.") from exc
    if proc.returncode != 0:
        raise ReplayError(
            f"cannot replay in the tree at {tree.name}: "
            f"{_tail(proc.stderr) or f'exit {proc.returncode}'}"
        )
    results: list[dict[str, Any]] = json.loads(proc.stdout)
    return results


def _calls_key(step: Any, index: Any) -> tuple[str, int]:
    try:
        return str(step), -1 if index is None or index != index else int(index)
    except (TypeError, ValueError):
        return str(step), -1


def _prompt_changes(
    calls: Any, stored: StoredRequest, replayed: dict[str, Any]
) -> list[str] | None:
    """The prompts (and calls) whose rendered hash differs; None when nothing was recorded."""
    changes: list[str] = []
    compared = False
    if stored.result is not None:
        compared = True
        for node, sha in sorted(stored.result.get("prompts", {}).items()):
            now = replayed["prompts"].get(node)
            if now != sha:
                changes.append(f"{node}: rendered sha256 {str(sha)[:12]} → {str(now)[:12]}")
    recorded = {
        _calls_key(c["step"], c["chunk_index"]): c["prompt_sha256"]
        for c in calls.to_dict("records")
        if c.get("prompt_sha256")
    }
    if recorded:
        compared = True
        now = {
            _calls_key(c["step"], c["chunk_index"]): c["prompt_sha256"] for c in replayed["calls"]
        }
        for key in sorted(set(recorded) | set(now)):
            if recorded.get(key) != now.get(key):
                where = key[0] + ("" if key[1] < 0 else f"[{key[1]}]")
                if recorded.get(key) is None:
                    changes.append(f"call {where}: not made when recorded")
                elif now.get(key) is None:
                    changes.append(f"call {where}: not made by the replay")
                else:
                    changes.append(f"call {where}: prompt sha256 differs")
    return changes if compared else None


def _first_prompt_diff(calls: Any, replayed: dict[str, Any]) -> tuple[str, list[Piece]] | None:
    """The word diff of the first LLM call whose rendered prompt changed, when both texts are
    known (a redacted recording keeps only hashes)."""
    now = {_calls_key(c["step"], c["chunk_index"]): c for c in replayed["calls"]}
    for c in calls.to_dict("records"):
        key = _calls_key(c["step"], c["chunk_index"])
        new = now.get(key)
        if new is None or new["prompt_sha256"] == c.get("prompt_sha256"):
            continue
        if isinstance(c.get("prompt_text"), str) and isinstance(new.get("prompt_text"), str):
            where = key[0] + ("" if key[1] < 0 else f"[{key[1]}]")
            return where, word_diff(c["prompt_text"], new["prompt_text"])
    return None


def _lock_change(stored: StoredRequest, replayed: dict[str, Any]) -> tuple[bool | None, str]:
    """Whether the dependency lock changed from the recording to the replayed tree, and a note
    saying how (empty when it did not)."""
    result = stored.result or {}
    if "dependency_lock" not in result:
        return None, ""
    then, now = result["dependency_lock"], replayed.get("dependency_lock")
    if then == now:
        return False, ""

    def name(lock: Mapping[str, str] | None) -> str:
        return "none" if lock is None else f"{lock['file']} sha256 {lock['sha256'][:12]}"

    return True, (
        f"the dependency lock changed between the recorded run and the replayed tree: "
        f"{name(then)} → {name(now)}. The replay ran with this environment's installed libraries."
    )


def _why(request: Mapping[str, Any], stored: StoredRequest, replayed: dict[str, Any]) -> list[str]:
    """What may explain rendered prompts that differ at the recorded SHA."""
    notes = []
    changed_lock, lock_note = _lock_change(stored, replayed)
    if changed_lock:
        notes.append(lock_note)
    then = (stored.result or {}).get("libraries") or {}
    now = replayed.get("libraries") or {}
    changed = [f"{k} {then[k]} → {now.get(k)}" for k in sorted(then) if then[k] != now.get(k)]
    if changed:
        notes.append(f"library versions differ from the recording: {', '.join(changed)}.")
    if request.get("git_dirty"):
        notes.append(
            "the request was served from a tree with uncommitted changes: the replay runs the "
            "committed tree at its SHA."
        )
    if request.get("config_sha256") and request["config_sha256"] != replayed.get("config_sha256"):
        notes.append("the replay's config differs from the recorded one (config_sha256).")
    versions = request.get("prompt_versions") or {}
    for node, meta in sorted(versions.items()):
        now = replayed["prompt_versions"].get(node)
        if isinstance(meta, dict) and now != meta.get("version"):
            notes.append(f"{node} was v{meta.get('version')} when recorded, {now} in the replay.")
    if not notes:
        lock = (
            "the dependency lock is the same, so a library outside it"
            if changed_lock is False
            else "a dependency (the lock file, a library version)"
        )
        notes.append(
            f"same SHA, config and prompt versions: {lock} or data outside git must differ."
        )
    return notes


def _compare(
    request: dict[str, Any], calls: Any, stored: StoredRequest, replayed: dict[str, Any],
    at: str, at_sha: str,
) -> ReplayResult:  # fmt: skip
    recorded_answer = (stored.result or {}).get("answer_text")
    base = {
        "request_id": request["request_id"],
        "pipeline": stored.pipeline,
        "variant": stored.variant,
        "recorded_sha": request.get("git_sha"),
        "at": at,
        "at_sha": at_sha,
        "recorded_answer": recorded_answer,
    }
    if "error" in replayed:
        return ReplayResult(
            **base, same_prompts=None, prompt_changes=[], same_output=None,
            replayed_answer=None, error=replayed["error"],
        )  # fmt: skip
    changes = _prompt_changes(calls, stored, replayed)
    prompt_diff = _first_prompt_diff(calls, replayed) if changes else None
    notes: list[str] = []
    if recorded_answer is None:
        notes.append(
            f"the recorded run ended without an answer ({request.get('error_type') or 'no result stored'}): "
            "nothing to compare the replay's answer with."
        )
    changed_lock, lock_note = _lock_change(stored, replayed)
    if at == "recorded" and changes:
        notes.extend(_why(request, stored, replayed))
    else:
        if changed_lock:
            notes.append(lock_note)
        if at == "recorded" and request.get("git_dirty"):
            notes.append(
                "the request was served from a tree with uncommitted changes; the replay ran "
                "the committed tree at its SHA, and they did not change the rendered prompts."
            )
    answer = replayed["answer_text"]
    usage = replayed.get("usage") or {}
    return ReplayResult(
        **base,
        same_prompts=None if changes is None else not changes,
        prompt_changes=changes or [],
        same_output=None if recorded_answer is None else recorded_answer == answer,
        replayed_answer=answer,
        diff=[] if recorded_answer is None else word_diff(recorded_answer, answer),
        prompt_diff=prompt_diff,
        notes=notes,
        cached_calls=int(usage.get("cached_calls") or 0),
        calls=int(usage.get("calls") or 0),
        cost_usd=usage.get("cost_usd"),
        dependency_lock_changed=changed_lock,
    )


def _replay_at(
    ref: str, items: Sequence[tuple[dict[str, Any], Any, StoredRequest]], at: str,
    overrides: Mapping[str, str], project_root: Path | None,
) -> list[ReplayResult]:  # fmt: skip
    project, _, inputs_db = _paths(project_root)
    jobs = [
        {
            "request_id": r["request_id"],
            "overrides": dict(overrides),
            "key_id": r.get("key_id"),
            "subject_id": r.get("subject_id"),
        }
        for r, _, _ in items
    ]
    try:
        repo = repo_root(project)
        sha = resolve_ref(repo, ref)
        with ref_worktree(repo, sha) as tree:
            results = _run_child(
                tree / project.resolve().relative_to(repo),
                data_dir(project),
                {"inputs_db": str(inputs_db), "jobs": jobs},
            )
    except GateError as exc:
        raise ReplayError(f"cannot replay at {ref!r}: {exc}") from exc
    return [
        _compare(request, calls, stored, replayed, at, sha)
        for (request, calls, stored), replayed in zip(items, results, strict=True)
    ]


def replay_request(
    request_id: str,
    *,
    at: str | None = None,
    overrides: Mapping[str, str] | None = None,
    cache: str | None = None,
    project_root: Path | None = None,
) -> ReplayResult:
    """Re-run one recorded request at its recorded SHA (or at the ref `at`) and compare.
    `overrides` are config KEY=VALUEs on top of the recorded ones; `cache` an llm_cache mode
    (`off` asks the model again)."""
    request, calls, stored = stored_request(request_id, project_root)
    ref = _recorded_sha(request) if at is None else at
    extra = {**(overrides or {}), **({"llm_cache": cache} if cache else {})}
    return _replay_at(ref, [(request, calls, stored)], at or "recorded", extra, project_root)[0]


def replay_many(
    *,
    since: timedelta | None = None,
    variant: str | None = None,
    pipeline: str | None = None,
    at: str | None = None,
    overrides: Mapping[str, str] | None = None,
    cache: str | None = None,
    limit: int = 1000,
    project_root: Path | None = None,
) -> tuple[list[ReplayResult], list[str]]:
    """Every recorded request (since `since`, of `variant`/`pipeline`) with stored inputs,
    replayed in one worktree per ref; and the ids skipped (no stored inputs, no SHA)."""
    from promptdag.tracing.query import list_requests, show_request

    _, traces, inputs_db = _paths(project_root)
    listed = list_requests(traces, since, limit)
    if variant:
        listed = listed[listed["variant"] == variant]
    ids = list(listed["request_id"])
    have = InputsStore(inputs_db).stored_ids(ids) if inputs_db.is_file() else set()
    skipped = [i for i in ids if i not in have]
    by_ref: dict[str, list[tuple[dict[str, Any], Any, StoredRequest]]] = {}
    store = InputsStore(inputs_db)
    for rid in [i for i in ids if i in have]:
        stored = store.get(rid)
        if stored is None or (pipeline and stored.pipeline != pipeline):
            continue
        request, calls = show_request(traces, rid)
        ref = at or request.get("git_sha")
        if not ref:
            skipped.append(rid)
            continue
        by_ref.setdefault(ref, []).append((request, calls, stored))
    store.close()
    extra = {**(overrides or {}), **({"llm_cache": cache} if cache else {})}
    results: list[ReplayResult] = []
    for ref, items in by_ref.items():
        results.extend(_replay_at(ref, items, at or "recorded", extra, project_root))
    return results, skipped


def graphs_at(
    sha: str, builds: Sequence[Mapping[str, Any]], project_root: Path | None = None
) -> list[dict[str, Any]]:
    """The DAGs of `builds` (each: pipeline, variant, config) as the commit `sha` defines them,
    built in a worktree of it (`promptdag.ui.graph.graph_of` in the tree's own process); each
    result holds `graph` and `graph_version`, or `error` when that commit cannot build it."""
    project = find_project(project_root)
    try:
        repo = repo_root(project)
        commit = resolve_ref(repo, sha)
        with ref_worktree(repo, commit) as tree:
            return _run_child(
                tree / project.resolve().relative_to(repo),
                data_dir(project),
                {"graphs": [dict(b) for b in builds]},
            )
    except GateError as exc:
        raise ReplayError(f"cannot read the DAG at {sha[:12]}: {exc}") from exc
