"""Text quality of PDF extraction, per shared PDF and backend, before and after normalization:
characters, words not in the word list, split words, ligatures and repeated lines, so that a
regression in either backend or in the normalization shows as numbers."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from benchmarks._pdfs import missing, pdf_dir, skipped
from benchmarks._report import Report, at_least, at_most, require
from dataflows._normalize import line_key
from dataflows._pdf import (
    BACKENDS,
    PdfError,
    PdfLimits,
    _document,
    extract_part,
    normalized,
)
from dataflows._text import clean_text

__all__ = ["NAME", "TITLE", "Quality", "measure", "run", "split_words"]

NAME = "text-quality"
TITLE = "PDF text quality"
DEFAULT = "pdfium"
PASSWORDS = {"libreoffice-writer-password.pdf": "openpassword"}
LIMITS = PdfLimits(2**62, 100_000, 600.0)
LIGATURES = re.compile("[\ufb00-\ufb06]")
WORD = re.compile(r"[^\W\d_]+")
# Two letter runs with only a space, or a line-end hyphen and/or space, between them.
PAIR = re.compile(
    r"(?<![^\W\d_])([^\W\d_]+)(?:[-\u00ad\ufffe\x02]?\s+|[\u00ad\ufffe\x02])(?=([^\W\d_]+))"
)
_OLD_HYPHEN_WRAP = re.compile(r"(?<=[a-z])-\n(?=[a-z])")
_PARAGRAPHS = re.compile(r"\n\s*\n")
GOAL_SPLIT_CUT = 0.90
REPEATED_ON = 3  # a line (numbers masked) on this many pages or more is a repeated line


@dataclass(frozen=True)
class Quality:
    characters: int
    unknown: int  # words not in the word list
    split: int  # adjacent fragments that join into a word of the list
    ligatures: int
    repeated: int  # lines whose text (numbers masked) stands on >= REPEATED_ON pages


def as_before(pages: list[str]) -> str:
    """The text as the pipeline made it before normalization existed: pages joined as paragraphs,
    every letter-hyphen-newline-letter joined, wrapped lines joined."""
    text = "\n\n".join(p for p in pages if p.strip()).replace("\r\n", "\n").replace("\r", "\n")
    text = _OLD_HYPHEN_WRAP.sub("", text)
    blocks = (" ".join(b.split()) for b in _PARAGRAPHS.split(text))
    return "\n\n".join(b for b in blocks if b)


def repeated_lines(pages: list[str]) -> int:
    """Lines whose text, numbers masked, stands on at least REPEATED_ON pages."""
    per_page = [
        Counter(line_key(x) for x in p.replace("\r\n", "\n").split("\n") if x.strip())
        for p in pages
    ]
    spread = Counter(k for c in per_page for k in c)
    return sum(n for c in per_page for k, n in c.items() if spread[k] >= REPEATED_ON)


def split_words(text: str, words: set[str]) -> int:
    """Adjacent fragments "a b" (or "a- b") where a or b is not in `words` but ab is."""
    count = 0
    for m in PAIR.finditer(text):
        a, b = m.group(1).lower(), m.group(2).lower()
        if (a not in words or b not in words) and a + b in words:
            count += 1
    return count


def measure(text: str, pages: list[str], words: set[str]) -> Quality:
    tokens = [w.lower() for w in WORD.findall(text)]
    return Quality(
        characters=len(text),
        unknown=sum(t not in words for t in tokens),
        split=split_words(text, words),
        ligatures=len(LIGATURES.findall(text)),
        repeated=repeated_lines(pages),
    )


def _read(name: str, backend: str) -> tuple[list[str], list[str]] | str:
    """(raw pages, normalized pages) read by one backend in this process (no fallback), or the
    error's class name."""
    data = (pdf_dir() / name).read_bytes()
    try:
        part = extract_part(data, PASSWORDS.get(name, ""), name, LIMITS, 0, None, backend)
        doc = _document([part], name, backend)
    except PdfError as exc:
        return type(exc).__name__
    return list(doc.pages), list(normalized(doc).pages)


def _cell(before: int, after: int) -> str:
    return str(after) if before == after else f"{before} → {after}"


def run(quick: bool = False) -> Report:
    why = missing("the-war-of-the-worlds.pdf")
    if why:
        return skipped(NAME, TITLE, why)
    names = sorted(p.name for p in pdf_dir().glob("*.pdf"))
    rows: list[list[str]] = []
    totals = {(b, s): Counter[str]() for b in BACKENDS for s in ("before", "after")}
    for name in names:
        read = {b: _read(name, b) for b in BACKENDS}
        texts = {
            b: (as_before(r[0]), clean_text("\n\n".join(r[1])))
            for b, r in read.items()
            if not isinstance(r, str)
        }
        if len(texts) < len(BACKENDS):
            why = ", ".join(f"{b}: {r}" for b, r in read.items() if isinstance(r, str))
            rows.append([name, "—", "no text", "—", "—", "—", "—", why])
            continue
        # The word list: the words both backends' normalized texts share (one backend's split
        # fragments are not words of the other's text).
        vocab = set.intersection(
            *({w.lower() for w in WORD.findall(after)} for _, after in texts.values())
        )
        for b, (before, after) in texts.items():
            raw, pages = read[b]  # type: ignore[misc]
            q0, q1 = measure(before, raw, vocab), measure(after, pages, vocab)
            for stage, q in (("before", q0), ("after", q1)):
                totals[b, stage].update(vars(q))
            rows.append(
                [
                    name,
                    b,
                    _cell(q0.characters, q1.characters),
                    _cell(q0.unknown, q1.unknown),
                    _cell(q0.split, q1.split),
                    _cell(q0.ligatures, q1.ligatures),
                    _cell(q0.repeated, q1.repeated),
                    "",
                ]
            )
    for b in BACKENDS:
        t0, t1 = totals[b, "before"], totals[b, "after"]
        keys = ("characters", "unknown", "split", "ligatures", "repeated")
        rows.append(["**all PDFs**", f"**{b}**", *(_cell(t0[k], t1[k]) for k in keys), ""])
    today = totals["pypdf", "before"]
    now = totals[DEFAULT, "after"]
    require(today["split"] > 0, "pypdf's text shows no split words: the measure is broken")
    cut = 1 - now["split"] / today["split"]
    return Report(
        name=NAME,
        title=TITLE,
        goals=[
            at_most(
                f"ligatures, {DEFAULT} normalized (default), all PDFs", 0, now["ligatures"], ""
            ),
            at_least(
                f"split words cut vs pypdf before normalization ({today['split']})",
                GOAL_SPLIT_CUT * 100,
                cut * 100,
                " %",
            ),
        ],
        headers=[
            "PDF",
            "Backend",
            "Characters",
            "Not in word list",
            "Split words",
            "Ligatures",
            "Repeated lines",
            "Not read",
        ],
        rows=rows,
        method=(
            f"Each PDF in `{pdf_dir().name}/` read in this process by each backend "
            "(`extract_part`, no fallback). *Before*: the backend's pages as the pipeline used "
            "them before normalization existed (pages joined, every hyphen at a line end "
            "joined, lines joined); *after*: `normalized` pages through `clean_text`, what "
            "`document_text` holds now. Cells show before → after (one number: unchanged). "
            "*Word list*: no dictionary is downloaded or bundled; for each PDF it is the set "
            "of words that the two backends' normalized texts have in common, so a fragment "
            "that only one backend produces (`quart er`) is not a word. *Not in word list*: "
            "words of the text missing from that list. *Split words*: neighbouring "
            "fragments, separated by a space or a hyphen and a line break, of which at least "
            "one is not in the list while the two joined are. *Ligatures*: U+FB00–FB06 "
            f"(ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ). *Repeated lines*: lines of the pages (numbers masked) that "
            f"stand on {REPEATED_ON} or more pages; the sample text printed on every page of "
            "the LaTeX samples stays, by design."
        ),
        explanation=(
            f"pypdf splits words inside lines (`th e`, `quart er`) and keeps ligature "
            f"characters; PDFium does neither. Normalization (NFKC, de-hyphenation that keeps "
            "compounds, running headers/footers and page numbers removed) works on either "
            f"backend's text. With the default ({DEFAULT}, normalized), split words fall by "
            f"{cut:.0%} against pypdf's text before normalization ({today['split']} → "
            f"{now['split']}), ligatures are {now['ligatures']}, and repeated lines "
            f"{today['repeated']} → {now['repeated']}. "
            + ("(quick: the same work; this benchmark has no repetitions.)" if quick else "")
        ),
    )
