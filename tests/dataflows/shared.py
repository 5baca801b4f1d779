"""The real-world PDFs in ../shared/pdfs beside the repo (PROMPTDAG_SHARED_PDFS overrides), for
the dataflow tests: a test skips when they are missing, and fails in CI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def shared_pdfs() -> Path:
    return Path(os.environ.get("PROMPTDAG_SHARED_PDFS", REPO.parent / "shared" / "pdfs"))


def shared(name: str) -> bytes:
    """The bytes of ../shared/pdfs/NAME."""
    path = shared_pdfs() / name
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: CI must run with shared/ beside the repo")
        pytest.skip(f"{path} is missing (set PROMPTDAG_SHARED_PDFS)")
    return path.read_bytes()
