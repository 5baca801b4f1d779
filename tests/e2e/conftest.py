"""Fixtures for end-to-end runs of the `promptdag` command on real PDFs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def shared_pdfs() -> Path:
    """The real-world PDFs in ../shared/pdfs (PROMPTDAG_SHARED_PDFS overrides); in CI they must exist."""
    path = Path(os.environ.get("PROMPTDAG_SHARED_PDFS", REPO.parent / "shared" / "pdfs"))
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: CI must run with shared/ beside the repo")
        pytest.skip(f"{path} is missing (set PROMPTDAG_SHARED_PDFS)")
    return path


def promptdag_bin() -> list[str]:
    exe = Path(sys.executable).with_name("promptdag")
    return [str(exe)] if exe.exists() else [shutil.which("promptdag") or "promptdag"]


@pytest.fixture
def cli(tmp_path: Path):
    """Run `promptdag ARGS` in the repo with a private data dir; returns the CompletedProcess."""

    def run(*args: str, timeout: float = 120, cwd: Path = REPO, env: dict[str, str] | None = None):
        base = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
        full_env = {**base, "PROMPTDAG_DATA_DIR": str(tmp_path / "data"), **(env or {})}
        return subprocess.run(
            [*promptdag_bin(), *args],
            cwd=cwd,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run
