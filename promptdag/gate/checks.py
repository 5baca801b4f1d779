"""Cheap static checks on a prompt change's rendered diff, run by every gate (no model needed):
an instruction-override phrase the change adds, a placeholder left unrendered in the new text,
a request input the prompt no longer reads, and a prompt whose language changed (a German pack
that now speaks English). Each finding is one line naming the prompt version and the fixture;
the gate asks for a reviewer's approval when there is any."""

from __future__ import annotations

import re
from collections.abc import Iterable

from promptdag.gate.report import Review, TextChange

__all__ = ["language", "static_findings"]

_OVERRIDE = re.compile(
    r"\b(ignore|disregard|forget)\b[^.\n]{0,30}\b(previous|prior|above|earlier|all)\b[^.\n]{0,20}"
    r"\b(instructions?|rules|prompts?)\b|\byou are now\b|\bdeveloper mode\b|\bjailbreak\b",
    re.IGNORECASE,
)
_PLACEHOLDER = re.compile(r"\{\{?\s*[A-Za-z_]\w*\s*\}?\}|<<\s*[A-Za-z_]\w*\s*>>")
_STOPWORDS = {
    "en": {"the", "and", "of", "to", "in", "is", "a", "this", "with", "for", "it", "that"},
    "de": {"der", "die", "das", "und", "ist", "nicht", "mit", "zu", "ein", "eine", "den", "dem"},
    "fr": {"le", "la", "les", "et", "est", "des", "une", "un", "du", "pour", "dans", "que"},
    "es": {"el", "la", "los", "las", "y", "es", "una", "un", "del", "para", "con", "que"},
}
_MIN_WORDS = 12


def language(text: str) -> str | None:
    """The language whose common words `text` uses most (None: too short or no clear lead)."""
    words = re.findall(r"[a-zäöüßéèàçñ]+", text.lower())
    if len(words) < _MIN_WORDS:
        return None
    scores = sorted(
        ((sum(w in stop for w in words), lang) for lang, stop in _STOPWORDS.items()), reverse=True
    )
    (best, lang), (second, _) = scores[0], scores[1]
    return lang if best >= 3 and best >= 2 * max(second, 1) else None


def _sides(lines: Iterable[str]) -> tuple[str, str, list[str]]:
    """(text before, text after, added lines) from a unified diff's lines."""
    before, after, added = [], [], []
    for ln in lines:
        if ln.startswith(("--- ", "+++ ", "@@")):
            continue
        if ln.startswith("-"):
            before.append(ln[1:])
        elif ln.startswith("+"):
            after.append(ln[1:])
            added.append(ln[1:])
        else:
            before.append(ln[1:])
            after.append(ln[1:])
    return "\n".join(before), "\n".join(after), added


def _text_findings(name: str, t: TextChange) -> list[str]:
    out = []
    if t.inputs_removed:
        out.append(f"{name} no longer reads input(s) {', '.join(t.inputs_removed)}")
    for f in t.fixtures:
        before, after, added = _sides(f.diff)
        where = f"{name} on fixture {f.fixture}"
        for phrase in sorted({m.group(0) for ln in added for m in _OVERRIDE.finditer(ln)}):
            out.append(f"{where} adds an instruction-override phrase: {phrase!r}")
        old = set(_PLACEHOLDER.findall(before))
        for ph in sorted({p for ln in added for p in _PLACEHOLDER.findall(ln)} - old):
            out.append(
                f"{where} has an unrendered placeholder {ph} (an input that never reached it)"
            )
        was, now = language(before), language(after)
        if t.before and was and now and was != now:
            out.append(f"{where}: the prompt's language changed from {was} to {now}")
    return out


def static_findings(review: Review) -> list[str]:
    """Every finding on the versions added or edited and the prompt switches of the change."""
    out: list[str] = []
    for v in (*review.added, *review.edited):
        out += _text_findings(v.key, v.text)
    switches = [*review.default_switches, *(t for v in review.variants for t in v.switches)]
    for t in switches:
        out += _text_findings(f"{t.node} ({t.before} → {t.after})", t)
    return list(dict.fromkeys(out))
