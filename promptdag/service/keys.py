"""API keys with ids. A key is given as `KEY` or `ID:KEY` (in PROMPTDAG_API_KEYS, comma-separated,
or one per line in the key file, `#` comments); a key without an explicit id gets the first 8
hex digits of its sha256. The id is what traces, metrics, the access log and the per-key limits
name; the key itself is never logged, traced or kept in memory in clear: only its sha256.

The key file is re-read without a restart: when its modification time, size or inode change
(checked at most every `check_every_s`), or on SIGHUP. A file that no longer reads as a valid
key set (unreadable, a short key, a duplicate id) leaves the keys as they were and logs why."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from promptdag.errors import ConfigError

__all__ = ["MIN_KEY_CHARS", "KeyRing", "derived_key_id", "parse_keys"]

log = logging.getLogger("promptdag.service")
MIN_KEY_CHARS = 8
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def derived_key_id(key: str) -> str:
    """The id of a key given without one: the first 8 hex digits of its sha256."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class _Entry:
    key_id: str
    where: str  # "PROMPTDAG_API_KEYS entry 2", "keys.txt line 3": never the key


def _split(raw: str) -> tuple[str, str]:
    """(id, key) of one `KEY` or `ID:KEY` entry."""
    key_id, sep, key = raw.partition(":")
    if sep and _ID.match(key_id):
        return key_id, key
    return derived_key_id(raw), raw


def parse_keys(entries: Iterable[tuple[str, str]]) -> tuple[dict[bytes, str], list[str]]:
    """Keys by sha256 → their ids, from (entry, where) pairs; and every problem found (without
    the keys' text)."""
    by_digest: dict[bytes, _Entry] = {}
    by_id: dict[str, _Entry] = {}
    problems: list[str] = []
    for raw, where in entries:
        key_id, key = _split(raw)
        if len(key) < MIN_KEY_CHARS:
            problems.append(
                f"{where}: the key is shorter than {MIN_KEY_CHARS} characters: use a long "
                "random key."
            )
            continue
        digest, entry = _digest(key), _Entry(key_id, where)
        same_key = by_digest.get(digest)
        if same_key is not None and same_key.key_id != key_id:
            problems.append(
                f"{where}: the same key is already listed as {same_key.key_id!r} "
                f"({same_key.where}): give each key one id."
            )
            continue
        same_id = by_id.get(key_id)
        if same_id is not None and same_key is None:
            problems.append(
                f"{where}: key id {key_id!r} is already used ({same_id.where}): ids must be unique."
            )
            continue
        by_digest[digest], by_id[key_id] = entry, entry
    return {d: e.key_id for d, e in by_digest.items()}, problems


def _env_entries(static: Iterable[str]) -> list[tuple[str, str]]:
    return [(k, f"PROMPTDAG_API_KEYS entry {i}") for i, k in enumerate(static, 1)]


def _file_entries(path: Path) -> list[tuple[str, str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConfigError([f"cannot read the API key file {path}: {reason}."]) from exc
    return [
        (line.strip(), f"{path.name} line {n}")
        for n, line in enumerate(lines, 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class KeyRing:
    """The accepted keys: static ones (PROMPTDAG_API_KEYS) and those of a key file, reloaded
    when the file changes or on `request_reload()` (SIGHUP)."""

    def __init__(
        self, static: Iterable[str] = (), key_file: Path | None = None, check_every_s: float = 1.0
    ):
        self.static = tuple(static)
        self.key_file = key_file
        self.check_every_s = check_every_s
        self.reloads = 0
        self._keys: dict[bytes, str] = {}
        self._signature: tuple[int, int, int] | None = None
        self._next_check = 0.0
        self._reload_requested = False

    def load(self) -> KeyRing:
        """Read every key now; a ConfigError lists every problem (at startup)."""
        signature = _signature(self.key_file) if self.key_file else None
        entries = _env_entries(self.static)
        if self.key_file is not None:
            entries += _file_entries(self.key_file)
        keys, problems = parse_keys(entries)
        if problems:
            raise ConfigError(problems)
        self._keys, self._signature = keys, signature
        self._next_check = time.monotonic() + self.check_every_s
        return self

    @property
    def ids(self) -> list[str]:
        return sorted(set(self._keys.values()))

    def __len__(self) -> int:
        return len(self._keys)

    def request_reload(self) -> None:
        """Re-read the key file before the next request is checked (a SIGHUP handler)."""
        self._reload_requested = True

    def identify(self, token: str) -> str | None:
        """The id of the key `token` is, or None. One sha256 and one dict lookup: the time it
        takes says nothing about how close a wrong token is to a key."""
        self._maybe_reload()
        return self._keys.get(_digest(token))

    def _maybe_reload(self) -> None:
        if self.key_file is None:
            return
        now = time.monotonic()
        if not self._reload_requested and now < self._next_check:
            return
        self._next_check = now + self.check_every_s
        forced, self._reload_requested = self._reload_requested, False
        if forced or _signature(self.key_file) != self._signature:
            self.reload()

    def reload(self) -> bool:
        """Re-read the keys; on any problem keep the current ones and log why. Whether the new
        set is in use."""
        before = set(self._keys.values())
        try:
            self.load()
        except ConfigError as exc:
            self._signature = _signature(self.key_file) if self.key_file else None
            log.error(
                "the API keys were not reloaded, the previous %d stay in use: %s",
                len(self._keys),
                "; ".join(exc.problems),
            )
            return False
        self.reloads += 1
        after = set(self._keys.values())
        log.warning(
            "API keys reloaded from %s: %d key(s); added %s; removed %s",
            self.key_file,
            len(self._keys),
            ", ".join(sorted(after - before)) or "none",
            ", ".join(sorted(before - after)) or "none",
        )
        return True
