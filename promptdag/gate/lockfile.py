"""`prompts.lock`: the committed fingerprint of every prompt version. Sorted, stable JSON with,
per `pack/node@version`, the source hash, the rendered-text hash and token count on every
fixture, and the required inputs; per variant, its resolved versions. The rendered-text hash
catches what Hamilton's code hash cannot see (a helper or constant the prompt renders).

`--check` fails when the tree changed without re-locking, and when a released version (one in
the base ref's lock) renders differently or has another source: add a new version instead."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["LOCK_FILE", "LockCheck", "check_lock", "lock_from_snapshot", "read_lock", "render_lock"]

LOCK_FILE = "prompts.lock"
LOCK_VERSION = 1


def lock_from_snapshot(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The lock: the snapshot without texts, graphs or descriptions."""
    prompts = {
        key: {
            "source_sha256": p["source_sha256"],
            "inputs": p["inputs"],
            "defined_at": p["defined_at"].split(":")[0],
            "rendered": {
                f: {"sha256": r["sha256"], "tokens": r["tokens"]}
                for f, r in sorted(p["rendered"].items())
            },
        }
        for key, p in sorted(snapshot["prompts"].items())
    }
    variants = {
        name: {
            "pack": v.get("pack"),
            "prompts": v.get("prompts", {}),
            "weight": v["weight"],
            **({"error": v["error"]} if "error" in v else {}),
        }
        for name, v in sorted(snapshot["variants"].items())
    }
    return {
        "lock_version": LOCK_VERSION,
        "default_variant": snapshot["default_variant"],
        "fixtures": snapshot["fixtures"],
        "prompts": prompts,
        "variants": variants,
    }


def render_lock(lock: dict[str, Any]) -> str:
    """The lock as committed: sorted keys, two-space indent, trailing newline."""
    return json.dumps(lock, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def read_lock(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


@dataclass
class LockCheck:
    """What --check found: stale entries (re-lock) and edited released versions (add a version)."""

    stale: list[str] = field(default_factory=list)
    released_edits: list[str] = field(default_factory=list)
    missing_lock: bool = False

    @property
    def ok(self) -> bool:
        return not (self.stale or self.released_edits or self.missing_lock)

    def messages(self) -> list[str]:
        out = []
        if self.missing_lock:
            out.append(f"{LOCK_FILE} is missing: run `promptdag prompts lock` and commit it.")
        out += [f"{s} — run `promptdag prompts lock` and commit {LOCK_FILE}." for s in self.stale]
        out += [
            f"{e} — released versions are immutable: restore it and add a new version (__vN+1) instead."
            for e in self.released_edits
        ]
        return out


def _changed(key: str, old: dict[str, Any], new: dict[str, Any]) -> str | None:
    if old["source_sha256"] != new["source_sha256"]:
        return f"{key}: its source changed"
    for fixture, r in new["rendered"].items():
        before = old["rendered"].get(fixture)
        if before is not None and before["sha256"] != r["sha256"]:
            return f"{key}: its rendered text on fixture {fixture!r} changed"
    if old["inputs"] != new["inputs"]:
        return f"{key}: its required inputs changed ({old['inputs']} → {new['inputs']})"
    return None


def _stale(committed: dict[str, Any], fresh: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(committed["prompts"]) | set(fresh["prompts"])):
        old, new = committed["prompts"].get(key), fresh["prompts"].get(key)
        if old is None:
            out.append(f"{key}: defined but not in {LOCK_FILE}")
        elif new is None:
            out.append(f"{key}: in {LOCK_FILE} but no longer defined")
        elif old != new:
            out.append(_changed(key, old, new) or f"{key}: its lock entry changed")
    for name in sorted(set(committed["variants"]) | set(fresh["variants"])):
        if committed["variants"].get(name) != fresh["variants"].get(name):
            out.append(f"variant {name}: its resolved prompt versions changed")
    if (
        committed.get("default_variant") != fresh["default_variant"]
        or committed.get("fixtures") != fresh["fixtures"]
    ):
        out.append("the default variant or the fixture sets changed")
    return out


def check_lock(
    committed: dict[str, Any] | None, fresh: dict[str, Any], base: dict[str, Any] | None
) -> LockCheck:
    """Compare the committed lock with a fresh one, and the fresh one with the base ref's lock."""
    result = LockCheck(missing_lock=committed is None)
    if committed is not None:
        result.stale = _stale(committed, fresh)
    for key, released in sorted((base or {}).get("prompts", {}).items()):
        now = fresh["prompts"].get(key)
        if now is None:
            continue  # removing a version is a reviewable change, not an edit
        why = _changed(key, released, now)
        if why:
            result.released_edits.append(why.replace(key, f"{key} (released)", 1))
    return result
