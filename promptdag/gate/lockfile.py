"""`prompts.lock`: the committed fingerprint of every prompt version. Sorted, stable JSON with,
per `pack/node@version`, the source hash, the rendered-text hash and token count on every
fixture, and the required inputs; per variant, its resolved versions. The rendered-text hash
catches what Hamilton's code hash cannot see (a helper or constant the prompt renders).

`--check` fails when the tree changed without re-locking; when a released version (one in the
base ref's lock) renders differently or has another source (add a new version instead); when a
variant no longer builds; and when a released version is removed while a variant of the base
selects it (requests and traces of that variant still name it).

A pure refactor of a released version (its source changed, every fixture of the base renders
identically, the same inputs) is accepted when the change records it: `prompts lock
--accept-refactor KEY --reason WHY` writes, under `refactors`, the released source hash, the new
one and the reason; --check and the gate verify it against the base and show it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "LOCK_FILE",
    "LockCheck",
    "broken_variants",
    "check_lock",
    "lock_from_snapshot",
    "read_lock",
    "refactor_entry",
    "render_lock",
    "renders_the_same",
]

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
    broken: list[str] = field(default_factory=list)  # variants that no longer build
    removed_in_use: list[str] = field(default_factory=list)  # released, removed, still selected
    acknowledged: list[str] = field(default_factory=list)  # accepted refactors, shown not failed

    @property
    def ok(self) -> bool:
        return not (
            self.stale
            or self.released_edits
            or self.missing_lock
            or self.broken
            or self.removed_in_use
        )

    def messages(self) -> list[str]:
        out = list(self.broken) + list(self.removed_in_use)
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


def renders_the_same(released: dict[str, Any], now: dict[str, Any]) -> str | None:
    """None when `now` renders exactly as `released` on every fixture of `released`, with the
    same inputs; else why not."""
    for fixture, r in sorted(released["rendered"].items()):
        after = now["rendered"].get(fixture)
        if after is None:
            return f"fixture {fixture!r} is gone, so it cannot show the text is unchanged"
        if after["sha256"] != r["sha256"]:
            return f"its rendered text on fixture {fixture!r} changed"
    if released["inputs"] != now["inputs"]:
        return f"its required inputs changed ({released['inputs']} → {now['inputs']})"
    return None


def refactor_entry(
    key: str, released: dict[str, Any] | None, now: dict[str, Any] | None, reason: str
) -> dict[str, str]:
    """The `refactors` entry accepting `key`'s edit as a pure refactor; ValueError saying why
    when it is not one."""
    if released is None:
        raise ValueError(f"{key} is not released on the base: a new version needs no acceptance.")
    if now is None:
        raise ValueError(f"{key} is no longer defined: there is no refactor to accept.")
    if released["source_sha256"] == now["source_sha256"]:
        raise ValueError(f"{key}: its source is unchanged: there is no refactor to accept.")
    why = renders_the_same(released, now)
    if why:
        raise ValueError(
            f"{key} is not a pure refactor: {why}. Restore it and add a new version (__vN+1)."
        )
    if not reason.strip():
        raise ValueError(f"--reason is empty: say why {key} was refactored.")
    return {
        "from_source_sha256": released["source_sha256"],
        "reason": reason.strip(),
        "to_source_sha256": now["source_sha256"],
    }


def _acknowledged(
    key: str, released: dict[str, Any], now: dict[str, Any], ack: dict[str, Any] | None
) -> str | None:
    """The line shown for an edit of released `key` that `ack` accepts as a pure refactor, or
    None when it accepts nothing (no acknowledgement, another source, or the text changed)."""
    if ack is None or renders_the_same(released, now) is not None:
        return None
    if (ack.get("from_source_sha256"), ack.get("to_source_sha256")) != (
        released["source_sha256"],
        now["source_sha256"],
    ):
        return None
    return (
        f"{key} (released): its source changed and every fixture renders identically: accepted "
        f"as a refactor recorded in {LOCK_FILE} ({ack.get('reason', '')})"
    )


def broken_variants(lock: dict[str, Any]) -> list[str]:
    """One line per variant of `lock` (or a snapshot) that does not build, naming the cause and
    what to do."""
    return [
        f"variant {name} no longer builds: {v['error']} — fix its config in the variants file, "
        "or remove the variant (its eval cases cannot run)."
        for name, v in sorted(lock.get("variants", {}).items())
        if "error" in v
    ]


def _selecting(lock: dict[str, Any], key: str) -> list[str]:
    """The variants of `lock` that select prompt version `key` (`pack/node@version`)."""
    pack, _, rest = key.partition("/")
    node, _, version = rest.partition("@")
    return sorted(
        name
        for name, v in lock.get("variants", {}).items()
        if v.get("pack") == pack and v.get("prompts", {}).get(node) == version
    )


def check_lock(
    committed: dict[str, Any] | None, fresh: dict[str, Any], base: dict[str, Any] | None
) -> LockCheck:
    """Compare the committed lock with a fresh one, and the fresh one with the base ref's lock."""
    result = LockCheck(missing_lock=committed is None, broken=broken_variants(fresh))
    if committed is not None:
        result.stale = _stale(committed, fresh)
    for key, released in sorted((base or {}).get("prompts", {}).items()):
        now = fresh["prompts"].get(key)
        if now is None:
            users = _selecting(base or {}, key)
            if users:  # removing a version no base variant selects is a reviewable change
                result.removed_in_use.append(
                    f"{key} (released) was removed, but variant(s) {', '.join(users)} select it "
                    "on the base — restore it: requests and traces of those variants still name "
                    "it; move the variants off it first, and remove it in a later change."
                )
            continue
        why = _changed(key, released, now)
        if not why:
            continue
        ack = (committed or {}).get("refactors", {}).get(key)
        accepted = _acknowledged(key, released, now, ack)
        if accepted:
            result.acknowledged.append(accepted)
            continue
        line = why.replace(key, f"{key} (released)", 1)
        if ack is None and renders_the_same(released, now) is None:
            line += (
                " (every fixture renders identically: if this is a pure refactor, accept it "
                f"with `promptdag prompts lock --accept-refactor {key} --reason WHY`)"
            )
        elif ack is not None:
            line += (
                " (the refactor recorded in the lock does not hold: it accepts only this "
                "source rendering identically on every fixture)"
            )
        result.released_edits.append(line)
    return result
