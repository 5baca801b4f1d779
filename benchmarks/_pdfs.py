"""Where the benchmarks find the shared real-world PDFs: $PROMPTDAG_SHARED_PDFS, else
../shared/pdfs beside the repo. A benchmark that needs them and finds none returns
`skipped(...)`, a Report that says so, instead of failing the whole run."""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks._report import Report

__all__ = ["ENV", "missing", "pdf_dir", "skipped"]

ENV = "PROMPTDAG_SHARED_PDFS"
ROOT = Path(__file__).resolve().parents[1]


def pdf_dir() -> Path:
    """The folder of shared PDFs ($PROMPTDAG_SHARED_PDFS, else ../shared/pdfs)."""
    return Path(os.environ.get(ENV) or ROOT.parent / "shared" / "pdfs")


def missing(*names: str) -> str:
    """Why the benchmark cannot run ('' when the folder and every named PDF are there)."""
    folder = pdf_dir()
    if not folder.is_dir():
        return f"{folder} is missing (set {ENV} to a folder of the shared PDFs)"
    absent = [n for n in names if not (folder / n).is_file()]
    return f"{', '.join(absent)} not in {folder} (set {ENV})" if absent else ""


def skipped(name: str, title: str, why: str) -> Report:
    """The report of a benchmark that could not run here: no goals, one line saying why."""
    return Report(
        name=name, title=title, goals=[], headers=[], rows=[], explanation="", skipped=why
    )
