"""The eval suite model: a suite, its cases and their assertions, as loaded from a suite file
(`promptdag/evals/suite_file.py` reads and validates the TOML against the project's contract)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptdag.contract import PipelineSpec
from promptdag.errors import ConfigError

__all__ = ["AssertionSpec", "Case", "Suite"]

# An input value longer than this is shown by its length and hash in reports and suite diffs.
_SHOWN_CHARS = 120


@dataclass(frozen=True)
class AssertionSpec:
    """One `[[cases.assert]]` table: its position in the case, its type and its options."""

    index: int
    type: str
    options: dict[str, Any]

    @property
    def output(self) -> str | None:
        """The output it checks (None: the pipeline's answer)."""
        value = self.options.get("output")
        return value if isinstance(value, str) else None


def _shown(value: Any) -> Any:
    """A value as a report shows it: short values as they are, long text by length and hash."""
    if isinstance(value, str) and len(value) > _SHOWN_CHARS:
        digest = hashlib.sha256(value.encode()).hexdigest()[:12]
        return f"<{len(value)} chars, sha256 {digest}>"
    return value


@dataclass(frozen=True)
class Case:
    """One golden case: the pipeline inputs it sends (values, and files read from the project
    tree), an optional variant, and its assertions."""

    id: str
    asserts: tuple[AssertionSpec, ...]
    inputs: Mapping[str, Any] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)
    variant: str | None = None

    @property
    def source(self) -> str:
        """What the case sends, in a few words: its files, else its inputs."""
        if self.files:
            return ", ".join(self.files[name] for name in sorted(self.files))
        parts = [
            f"{name} ({len(value)} chars)"
            if isinstance(value, str) and len(value) > 40
            else f"{name}={value!r}"
            for name, value in sorted(self.inputs.items())
        ]
        return ", ".join(parts) or "no inputs"

    def request_inputs(self, root: Path, spec: PipelineSpec) -> dict[str, Any]:
        """The inputs for `Pipeline.run`: the case's values, plus each of its files read from
        under `root` (a file input as bytes, any other as UTF-8 text), and the file's name in
        the input's `filename_input` unless the case sets that itself. OSError when unreadable."""
        inputs = dict(self.inputs)
        for name, rel in sorted(self.files.items()):
            path = root / rel
            target = spec.inputs.get(name)
            if target is not None and target.is_file:
                inputs[name] = path.read_bytes()
            else:
                inputs[name] = path.read_text(encoding="utf-8")
            if target is not None and target.filename_input:
                inputs.setdefault(target.filename_input, path.name)
        return inputs

    def definition(self) -> dict[str, Any]:
        """The case as plain data (for diffs and reports): `inputs.NAME`, `files.NAME`,
        `variant` and `asserts`; long input values by their length and hash."""
        out: dict[str, Any] = {"variant": self.variant}
        out.update({f"inputs.{k}": _shown(v) for k, v in sorted(self.inputs.items())})
        out.update({f"files.{k}": v for k, v in sorted(self.files.items())})
        out["asserts"] = [{"type": a.type, **a.options} for a in self.asserts]
        return out


@dataclass(frozen=True)
class Suite:
    """A loaded, valid suite of one declared pipeline; `root` is the project tree its file
    paths are relative to."""

    name: str
    description: str
    threshold: float
    variant: str | None
    cases: tuple[Case, ...]
    path: Path
    root: Path
    sha256: str = ""
    pipeline: str = ""
    usage_growth: float = 0.25

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
        return next(c for c in self.cases if c.id == case_id).definition()
