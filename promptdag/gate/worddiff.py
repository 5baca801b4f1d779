"""Word-level diffs of two texts (rendered prompts, model outputs): difflib over word tokens
(each with its trailing whitespace, so the text reads back exactly), as `(op, text)` pieces
(op: "=" same, "-" only before, "+" only after), and their renderings: git's
`--word-diff=plain` markers (`[-old-]{+new+}`) for Markdown code blocks, <del>/<ins> for HTML."""

from __future__ import annotations

import difflib
import html
import re
from collections.abc import Iterable

__all__ = [
    "Piece",
    "unified_words",
    "word_diff",
    "word_diff_html",
    "word_diff_plain",
    "words_changed",
]

Piece = tuple[str, str]
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")
_EXACT_TOKENS = 2_000  # longer blocks let difflib skip very common tokens (its autojunk)
_MIN_SHARED = 0.4  # a replaced block sharing less than this is shown whole, removed then added


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


class _Pieces(list[Piece]):
    def add(self, op: str, text: str) -> None:
        if not text:
            return
        if self and self[-1][0] == op:
            self[-1] = (op, self[-1][1] + text)
        else:
            self.append((op, text))


def _words(before: str, after: str, out: _Pieces) -> None:
    a, b = _tokens(before), _tokens(after)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=max(len(a), len(b)) > _EXACT_TOKENS)
    if matcher.ratio() < _MIN_SHARED:  # rewritten, not edited: the old block, then the new one
        out.add("-", before)
        out.add("+", after)
        return
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            out.add("=", "".join(a[i1:i2]))
        else:
            out.add("-", "".join(a[i1:i2]))
            out.add("+", "".join(b[j1:j2]))


def word_diff(before: str, after: str) -> list[Piece]:
    """The pieces that turn `before` into `after`: lines are matched first, then the words of
    each replaced run of lines (fast on long texts); adjacent pieces of one kind are merged."""
    a, b = before.splitlines(keepends=True), after.splitlines(keepends=True)
    out = _Pieces()
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            out.add("=", "".join(a[i1:i2]))
        elif tag == "replace":
            _words("".join(a[i1:i2]), "".join(b[j1:j2]), out)
        else:
            out.add("-", "".join(a[i1:i2]))
            out.add("+", "".join(b[j1:j2]))
    return _fold(list(out))


_SMALL = 4  # an unchanged stretch this short between two replacements reads as part of them


def _fold(pieces: list[Piece]) -> list[Piece]:
    """Join replacements separated only by whitespace or a short word (`[-Extract-]{+Treat+}
    the [-key-]{+text+}` becomes `[-Extract the key-]{+Treat the text+}`)."""
    groups: list[list[Piece]] = []  # alternating: unchanged pieces alone, changes together
    for piece in pieces:
        if piece[0] != "=" and groups and groups[-1][0][0] != "=":
            groups[-1].append(piece)
        else:
            groups.append([piece])
    out = _Pieces()
    i = 0
    while i < len(groups):
        group = groups[i]
        if group[0][0] == "=":
            out.add("=", group[0][1])
            i += 1
            continue
        gone = "".join(t for op, t in group if op == "-")
        came = "".join(t for op, t in group if op == "+")
        while (
            gone
            and came
            and i + 2 < len(groups)
            and len(groups[i + 1][0][1].strip()) <= _SMALL
            and {op for op, _ in groups[i + 2]} == {"-", "+"}
        ):
            small = groups[i + 1][0][1]
            gone += small + "".join(t for op, t in groups[i + 2] if op == "-")
            came += small + "".join(t for op, t in groups[i + 2] if op == "+")
            i += 2
        out.add("-", gone)
        out.add("+", came)
        i += 1
    return list(out)


def words_changed(pieces: list[Piece]) -> int:
    """How many words were removed or added."""
    return sum(len(re.findall(r"\w+", t)) for op, t in pieces if op != "=")


def word_diff_plain(pieces: list[Piece]) -> str:
    """`same [-removed-]{+added+} same` (git's plain word diff)."""
    marks = {"=": "{}", "-": "[-{}-]", "+": "{{+{}+}}"}
    return "".join(marks[op].format(text) for op, text in pieces)


def word_diff_html(pieces: list[Piece]) -> str:
    """Escaped HTML with <del> and <ins> around the changed words."""
    tags = {"=": "{}", "-": "<del>{}</del>", "+": "<ins>{}</ins>"}
    return "".join(tags[op].format(html.escape(text)) for op, text in pieces)


def unified_words(lines: Iterable[str]) -> list[tuple[str, str | list[Piece]]]:
    """A unified diff's lines regrouped for a word-level view: ("file" | "hunk" | "ctx", text)
    as they were, and ("change", pieces) for each run of removed lines followed by added lines,
    word-diffed as one block."""
    out: list[tuple[str, str | list[Piece]]] = []
    gone: list[str] = []
    came: list[str] = []

    def flush() -> None:
        if gone or came:
            out.append(("change", word_diff("\n".join(gone), "\n".join(came))))
            gone.clear()
            came.clear()

    for line in lines:
        if line.startswith(("--- ", "+++ ")):
            flush()
            out.append(("file", line))
        elif line.startswith("@@"):
            flush()
            out.append(("hunk", line))
        elif line.startswith("-"):
            if came:
                flush()
            gone.append(line[1:])
        elif line.startswith("+"):
            came.append(line[1:])
        else:
            flush()
            out.append(("ctx", line[1:]))
    flush()
    return out
