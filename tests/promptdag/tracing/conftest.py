"""A trace database with known rows (tests.promptdag.tracing.rows.KNOWN), for the query and CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.promptdag.tracing.rows import write_known


@pytest.fixture
def known_db(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "traces.sqlite"
    write_known(path)
    return path
