"""The headless Chromium the screenshot tests drive: found on PATH, or the test skips (fails
in CI, where `make test` installs it)."""

from __future__ import annotations

import os
import shutil

import pytest

__all__ = ["chromium_binary"]


def chromium_binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    reason = "headless Chromium is not installed (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run this test: install it in `make test`.")
    pytest.skip(reason)
