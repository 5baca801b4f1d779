"""The eval suite model: a suite, its cases and their assertions, as loaded from a suite file
(`ci/evals/suite_file.py` reads and validates the TOML)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptdag.errors import ConfigError

__all__ = ["AssertionSpec", "Case", "Suite"]


@dataclass(frozen=True)
class AssertionSpec:
    """One `[[cases.assert]]` table: its position in the case, its type and its options."""

    index: int
    type: str
    options: dict[str, Any]


@dataclass(frozen=True)
class Case:
    """One golden case: a document (PDF path or text), optional query, and its assertions."""

    id: str
    asserts: tuple[AssertionSpec, ...]
    text: str | None = None
    pdf: str | None = None
    query: str = ""
    content_type: str | None = None
    variant: str | None = None

    @property
    def source(self) -> str:
        return self.pdf if self.pdf is not None else f"text ({len(self.text or '')} chars)"

    def inputs(self, root: Path) -> dict[str, Any]:
        """The request inputs of `Pipeline.summarize` (a PDF is read from under `root`)."""
        inputs: dict[str, Any] = {"user_query": self.query} if self.query else {}
        if self.content_type is not None:
            inputs["content_type"] = self.content_type
        if self.pdf is not None:
            path = root / self.pdf
            return {**inputs, "pdf_bytes": path.read_bytes(), "source_name": path.name}
        return {**inputs, "text": self.text or ""}


@dataclass(frozen=True)
class Suite:
    """A loaded, valid suite; `root` is the project tree its PDF paths are relative to."""

    name: str
    description: str
    threshold: float
    variant: str | None
    cases: tuple[Case, ...]
    path: Path
    root: Path
    sha256: str = ""

    def select(self, case_ids: Iterable[str] | None) -> list[Case]:
        """The cases named (all for None), in suite order; an unknown id is a ConfigError."""
        if case_ids is None:
            return list(self.cases)
        wanted = list(case_ids)
        known = {c.id for c in self.cases}
        unknown = [i for i in wanted if i not in known]
        if unknown:
            raise ConfigError(
                [
                    f"suite {self.name!r} has no case {i!r}. Cases: {', '.join(sorted(known))}."
                    for i in unknown
                ]
            )
        return [c for c in self.cases if c.id in wanted]

    def case_definition(self, case_id: str) -> dict[str, Any]:
        """A case as plain data (for diffs and reports)."""
        case = next(c for c in self.cases if c.id == case_id)
        return {
            "source": case.source,
            "text_sha256": hashlib.sha256((case.text or "").encode()).hexdigest(),
            "query": case.query,
            "content_type": case.content_type,
            "variant": case.variant,
            "asserts": [{"type": a.type, **a.options} for a in case.asserts],
        }
