"""Structured answers of ``offline-extractive``: a JSON value that follows a request's
``response_format`` JSON schema, derived from the text it is sent. Pure and deterministic.

Still no language model: every value is picked from the input, never invented.

- The *source* is the delimited block(s) (``<ticket>\\n...\\n</ticket>``, any tag name) of the
  messages; without one, the document as the summarizer finds it (the text after a line ending
  in "Content:", else the last user message) minus the lines that list two or more of an enum's
  values (an option list is an instruction, not evidence). Everything else (system
  messages, text around the blocks) is the *instructions*, and cannot become evidence.
- ``enum``: each value's cue words are its own words plus its *gloss* in the instructions or in
  the property's ``description`` (``bug: crashes, errors, broken`` / ``billing (refunds,
  invoices)``). A cue word found in the source scores its inverse frequency among the values, a
  value's own word counts double; the best score wins, ties go to the earlier value. With no
  evidence at all a catch-all value (other, unknown, general, normal, ...) wins, else the first.
- ``string``: the source sentence most relevant to the property's name and description (the
  extractive ranker's best when nothing matches), at most 60 words; ``maxLength``/``minLength``,
  ``const``, ``pattern`` (a matching span of the source, else the shortest text the pattern
  matches) and the common ``format``s (date, date-time, email, uri) are honoured.
- ``integer``/``number``: a number from a sentence that mentions the property, within
  ``minimum``/``maximum`` (exclusive bounds and ``multipleOf`` too), else the middle of the range.
- ``boolean``: true when a word of the property's name occurs in the source.
- ``array``: distinct sentences (strings), the values with evidence (enums), or one item,
  within ``minItems``/``maxItems``. ``object``: every declared property, nothing else.
- ``$ref`` (local), ``anyOf``/``oneOf`` (the first non-null branch), ``allOf`` (merged), type
  lists (the first non-null type) and ``const`` are followed.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from promptdag.llm.offline import (
    _content_words,
    _query_weights,
    _scores,
    _sentences,
    _Spec,
    _split_prompt,
)

__all__ = ["CATCH_ALL", "structured_answer"]

# Enum values that mean "none of the others": chosen when the source gives no evidence.
CATCH_ALL = (
    "other",
    "others",
    "unknown",
    "general",
    "none",
    "misc",
    "miscellaneous",
    "unclassified",
    "normal",
    "medium",
    "neutral",
    "n/a",
)
_MAX_WORDS = 60
_MAX_DEPTH = 12
_BLOCK = re.compile(r"<([A-Za-z][\w-]{0,40})>[ \t]*\n(.*?)\n[ \t]*</\1>", re.S)
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.]*\d)")
_GLOSS_SEPARATOR = re.compile(
    r"[*_'\"`]*\s*(?:\(([^)\n]*)\)|(?:[:=—–]|-\s|\bmeans\b|\bis for\b)([^;\n]*))", re.I
)
_SENTENCE_STOP = re.compile(r"\.\s")
_FORMATS: dict[str, tuple[re.Pattern[str], str]] = {
    "date": (re.compile(r"\b\d{4}-\d{2}-\d{2}\b"), "1970-01-01"),
    "date-time": (
        re.compile(r"\b\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?(?:Z|[+-]\d{2}:\d{2})\b"),
        "1970-01-01T00:00:00Z",
    ),
    "email": (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "unknown@example.invalid"),
    "uri": (re.compile(r"\bhttps?://[^\s<>\"')]+"), "https://example.invalid/"),
}
_GENERIC_NAME_WORDS = frozenset({"need", "needs", "requir", "should", "flag", "contain", "mention"})


@dataclass
class _Source:
    """The evidence: its sentences, their word bags, and what was already used."""

    text: str
    instructions: str
    sentences: list[str]
    bags: list[set[str]]
    words: set[str]
    root: Mapping[str, Any]
    used: set[int] = field(default_factory=set)


def _split(messages: Sequence[tuple[str, str]], schema: Mapping[str, Any]) -> tuple[str, str]:
    """(source, instructions) of the messages."""
    joined = "\n\n".join(content for _, content in messages)
    if blocks := list(_BLOCK.finditer(joined)):
        source = "\n\n".join(m.group(2) for m in blocks)
        source = re.sub(r"<\\/([A-Za-z][\w-]{0,40})>", r"</\1>", source)
        return source, _BLOCK.sub("\n", joined)
    instructions, document, _ = _split_prompt(list(messages))
    options = [_enum_words(values) for values in _enums(schema)]
    kept: list[str] = []
    moved: list[str] = []
    for line in document.splitlines():
        words = set(_tokens(line))
        listing = any(sum(1 for w in value_words if w <= words) >= 2 for value_words in options)
        (moved if listing else kept).append(line)
    return "\n".join(kept), "\n\n".join([instructions, *moved])


def _enums(schema: Any) -> list[list[Any]]:
    """Every enum in a schema, at any depth."""
    found: list[list[Any]] = []
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            if isinstance(node.get("enum"), list):
                found.append(node["enum"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _enum_words(values: Sequence[Any]) -> list[set[str]]:
    return [set(_tokens(str(v))) for v in values if isinstance(v, str) and _tokens(v)]


def _source(messages: Sequence[tuple[str, str]], schema: Mapping[str, Any]) -> _Source:
    text, instructions = _split(messages, schema)
    sentences = _sentences(text, False) if text.strip() else []
    bags = [_content_words(s) for s in sentences]
    return _Source(text, instructions, sentences, bags, _content_words(text), schema)


def _value_pattern(value: str) -> str:
    words = _tokens(value)
    return r"(?<![\w-])" + r"[\s_-]*".join(map(re.escape, words)) + r"(?![\w-])"


def _gloss(value: str, others: Sequence[str], text: str) -> str:
    """What the instructions say a value means: `value: words`, `value (words)`, `value - words`."""
    glosses = []
    other = "|".join(_value_pattern(o) for o in others if o != value and _tokens(o))
    for match in re.finditer(_value_pattern(value), text, re.I):
        sep = _GLOSS_SEPARATOR.match(text, match.end())
        if sep is None:
            continue
        gloss = sep.group(1) if sep.group(1) is not None else _SENTENCE_STOP.split(sep.group(2))[0]
        if other and (cut := re.search(other, gloss, re.I)):
            gloss = gloss[: cut.start()]
        glosses.append(gloss)
    return " ".join(glosses)


def _enum_scores(values: Sequence[str], description: str, src: _Source) -> list[float]:
    context = f"{src.instructions}\n{description}"
    own = [_content_words(v.replace("_", " ").replace("-", " ")) for v in values]
    cues = [own[i] | _content_words(_gloss(v, values, context)) for i, v in enumerate(values)]
    df = Counter(w for bag in cues for w in bag)
    n = len(values)
    return [
        round(
            sum(
                (2.0 if w in own[i] else 1.0) * math.log((n + 1) / (df[w] + 0.5))
                for w in sorted(bag)
                if w in src.words
            ),
            9,
        )
        for i, bag in enumerate(cues)
    ]


def _ranked_enum(values: Sequence[Any], description: str, src: _Source) -> list[tuple[Any, float]]:
    """The enum's values with their evidence scores, best first: evidence, then a catch-all,
    then schema order (values that are not strings have no evidence)."""
    strings = [v for v in values if isinstance(v, str)]
    scores = dict(zip(strings, _enum_scores(strings, description, src), strict=True))

    def key(i: int) -> tuple[float, int, int]:
        value = values[i]
        score = scores.get(value, 0.0) if isinstance(value, str) else 0.0
        catch_all = isinstance(value, str) and value.lower() in CATCH_ALL
        return (-score, 0 if score > 0 or catch_all else 1, i)

    ranked = sorted(range(len(values)), key=key)
    return [
        (values[i], scores.get(values[i], 0.0) if isinstance(values[i], str) else 0.0)
        for i in ranked
    ]


def _relevant(name: str, description: str, src: _Source) -> list[int]:
    """Sentence indexes, most relevant to the property first (unused ones before used ones)."""
    if not src.sentences:
        return []
    query = f"{name.replace('_', ' ')} {description}"
    weights = _query_weights(query, src.bags)
    scores = _scores(src.sentences, src.bags, weights, _Spec())
    return sorted(range(len(src.sentences)), key=lambda i: (i in src.used, -round(scores[i], 9), i))


def _fit(text: str, schema: Mapping[str, Any], extra: list[str]) -> str:
    words = text.split()
    if len(words) > _MAX_WORDS:
        text = " ".join(words[:_MAX_WORDS]) + "…"
    cap = schema.get("maxLength")
    if isinstance(cap, int) and len(text) > cap:
        cut = text[: max(cap - 1, 0)]
        cut = cut.rsplit(" ", 1)[0] if " " in cut and cap > 20 else cut
        text = (cut + "…")[:cap]
    floor = schema.get("minLength")
    for more in extra:
        if not isinstance(floor, int) or len(text) >= floor:
            break
        text = f"{text} {more}".strip()
    if isinstance(floor, int) and len(text) < floor:
        text = text.ljust(floor, ".")
    return text[:cap] if isinstance(cap, int) else text


def _string(schema: Mapping[str, Any], name: str, description: str, src: _Source) -> str:
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS:
        pattern, fallback = _FORMATS[fmt]
        match = pattern.search(src.text)
        return match.group() if match else fallback
    order = _relevant(name, description, src)
    text = ""
    if order:
        src.used.add(order[0])
        text = src.sentences[order[0]]
    text = _fit(text, schema, [src.sentences[i] for i in order[1:]])
    regex = schema.get("pattern")
    if isinstance(regex, str) and not _search(regex, text):
        found = _matching(regex, [src.sentences[i] for i in order], src.text)
        text = found if found is not None else _example(regex) or text
    return text


def _search(regex: str, text: str) -> bool:
    try:
        return re.search(regex, text) is not None
    except re.error:
        return True  # not ours to judge: the schema's validator will say it does not compile


def _matching(regex: str, sentences: list[str], text: str) -> str | None:
    """A span of the source that `regex` matches: a sentence, a word, or an unanchored match."""
    words = text.split()
    spans = [*sentences, *words, *(w.strip(".,;:!?()[]{}<>\"'") for w in words)]
    loose = regex.removeprefix("^")
    loose = loose[:-1] if loose.endswith("$") and not loose.endswith("\\$") else loose
    try:
        hit = next((s for s in spans if s and re.search(regex, s)), None)
        found = (m.group() for m in re.finditer(loose, text) if m.group())
        return hit if hit is not None else next((m for m in found if re.search(regex, m)), None)
    except re.error:
        return None


_CATEGORIES = {  # sre category → (a character of it, the class matching it)
    "CATEGORY_DIGIT": ("0", r"\d"),
    "CATEGORY_NOT_DIGIT": ("a", r"\D"),
    "CATEGORY_SPACE": (" ", r"\s"),
    "CATEGORY_NOT_SPACE": ("a", r"\S"),
    "CATEGORY_WORD": ("a", r"\w"),
    "CATEGORY_NOT_WORD": (" ", r"\W"),
}
_SET_CANDIDATES = "a0A _-.x/"


def _in_set(char: str, items: list[tuple[Any, Any]]) -> bool:
    for op, av in items:
        kind = str(op)
        if kind == "LITERAL" and chr(av) == char:
            return True
        if kind == "RANGE" and av[0] <= ord(char) <= av[1]:
            return True
        if kind == "CATEGORY" and re.fullmatch(_CATEGORIES[str(av)][1], char):
            return True
    return False


def _set_char(items: list[tuple[Any, Any]]) -> str:
    if items and str(items[0][0]) == "NEGATE":
        return next(c for c in _SET_CANDIDATES if not _in_set(c, items[1:]))
    op, av = items[0]
    kind = str(op)
    if kind == "LITERAL":
        return chr(av)
    if kind == "RANGE":
        return chr(av[0])
    return _CATEGORIES[str(av)][0]


def _render(items: list[tuple[Any, Any]]) -> str:
    """The shortest text a parsed regex matches (for the constructs a schema pattern uses)."""
    out = []
    for op, av in items:
        kind = str(op)
        if kind == "LITERAL":
            out.append(chr(av))
        elif kind in ("NOT_LITERAL", "ANY"):
            out.append("a" if av != ord("a") else "b")
        elif kind == "IN":
            out.append(_set_char(list(av)))
        elif kind == "CATEGORY":
            out.append(_CATEGORIES[str(av)][0])
        elif kind in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            out.append(_render(list(av[2])) * av[0])
        elif kind in ("SUBPATTERN", "ATOMIC_GROUP"):
            out.append(_render(list(av[-1])))
        elif kind == "BRANCH":
            out.append(_render(list(av[1][0])))
        elif kind not in ("AT", "ASSERT", "ASSERT_NOT"):
            raise ValueError(f"unsupported regex construct {kind}")
    return "".join(out)


def _example(regex: str) -> str | None:
    """A short text `regex` matches, when the source holds none (None if we cannot make one)."""
    from re import _parser  # type: ignore[attr-defined]

    try:
        text = _render(list(_parser.parse(regex)))
    except (ValueError, KeyError, StopIteration, IndexError, TypeError, re.error):
        return None
    return text if _search(regex, text) else None


def _bounds(schema: Mapping[str, Any], integer: bool) -> tuple[float, float]:
    step = 1 if integer else 1e-6
    lo, hi = schema.get("minimum", -math.inf), schema.get("maximum", math.inf)
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        lo = max(lo, schema["exclusiveMinimum"] + step)
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        hi = min(hi, schema["exclusiveMaximum"] - step)
    return lo, hi


def _number(
    schema: Mapping[str, Any], name: str, description: str, src: _Source, integer: bool
) -> int | float:
    lo, hi = _bounds(schema, integer)
    multiple = schema.get("multipleOf")

    def fits(x: float) -> bool:
        ok = lo <= x <= hi and (not integer or float(x).is_integer())
        return ok and (not multiple or math.isclose(x / multiple, round(x / multiple)))

    named = _content_words(f"{name.replace('_', ' ')} {description}")
    for i in _relevant(name, description, src):
        if not src.bags[i] & named:
            continue
        for token in _NUMBER.findall(src.sentences[i]):
            if fits(float(token)):
                return int(float(token)) if integer else float(token)
    if math.isfinite(lo) and math.isfinite(hi):
        x = (lo + hi) / 2
    elif math.isfinite(lo):
        x = max(lo, 0)
    elif math.isfinite(hi):
        x = min(hi, 0)
    else:
        x = 0
    if multiple:
        x = multiple * math.ceil(x / multiple - 1e-9)
        x = x if x <= hi else x - multiple
    if integer:
        return int(math.floor(x) if math.floor(x) >= lo else math.ceil(x))
    return float(x)


def _boolean(name: str, src: _Source) -> bool:
    return bool((_content_words(name.replace("_", " ")) - _GENERIC_NAME_WORDS) & src.words)


def _array(
    schema: Mapping[str, Any], name: str, description: str, src: _Source, depth: int
) -> list[Any]:
    items = _resolve(schema.get("items") or {}, src.root)
    lo = schema.get("minItems", 0)
    hi = schema.get("maxItems", math.inf)
    if isinstance(items.get("enum"), list):
        about = f"{description} {items.get('description', '')}"
        ranked = _ranked_enum(items["enum"], about, src)
        chosen = [v for v, score in ranked if score > 0]
        chosen += [v for v, score in ranked if score <= 0][: max(lo - len(chosen), 0)]
        return chosen[: int(min(hi, len(chosen)))]
    if _kind(items) == "string":
        count = int(min(max(min(3, len(src.sentences)), lo), hi))
        return [_string(items, name, description, src) for _ in range(count)]
    count = int(min(max(1, lo), hi))
    return [_value(items, name, description, src, depth + 1) for _ in range(count)]


def _resolve(schema: Any, root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow local `$ref`s and merge `allOf`."""
    seen = 0
    while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str) and seen < _MAX_DEPTH:
        target: Any = root
        for part in schema["$ref"].lstrip("#").strip("/").split("/"):
            if part:
                target = target.get(part.replace("~1", "/").replace("~0", "~"), {})
        schema = {**{k: v for k, v in schema.items() if k != "$ref"}, **target}
        seen += 1
    if not isinstance(schema, Mapping):
        return {}
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _resolve(part, root)
            merged["properties"] = {**merged.get("properties", {}), **part.get("properties", {})}
            merged["required"] = [*merged.get("required", []), *part.get("required", [])]
            merged.update({k: v for k, v in part.items() if k not in ("properties", "required")})
        return merged
    return schema


def _kind(schema: Mapping[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _value(schema: Any, name: str, description: str, src: _Source, depth: int) -> Any:
    schema = _resolve(schema, src.root)
    description = str(schema.get("description") or description)
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            branches = [_resolve(b, src.root) for b in schema[key]]
            branch = next((b for b in branches if _kind(b) != "null"), branches[0])
            return _value(
                {**{k: v for k, v in schema.items() if k != key}, **branch},
                name,
                description,
                src,
                depth,
            )
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return _ranked_enum(schema["enum"], description, src)[0][0]
    kind = _kind(schema)
    if depth > _MAX_DEPTH:
        return {"object": {}, "array": [], "null": None}.get(kind)
    if kind == "object":
        properties = schema.get("properties") or {}
        return {key: _value(sub, key, "", src, depth + 1) for key, sub in properties.items()}
    if kind == "array":
        return _array(schema, name, description, src, depth)
    if kind in ("integer", "number"):
        return _number(schema, name, description, src, kind == "integer")
    if kind == "boolean":
        return _boolean(name, src)
    if kind == "null":
        return None
    return _string(schema, name, description, src)


def structured_answer(messages: Sequence[tuple[str, str]], schema: Mapping[str, Any]) -> Any:
    """A value for `schema` (a JSON schema) drawn from chat `messages` ((role, content) pairs)."""
    src = _source(messages, schema)
    return _value(schema, "answer", "", src, 0)
