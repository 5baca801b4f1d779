"""The collector settling of processes promptdag owns: `promptdag serve` settles once its
pipelines are built; an app made for an embedding caller (create_app's default) never does."""

from __future__ import annotations

import subprocess
import sys

import pytest

import promptdag.gc_tuning


def test_settling_freezes_what_exists_and_raises_the_young_threshold() -> None:
    code = (
        "import gc; from promptdag.gc_tuning import GC_THRESHOLDS, settle_process; "
        "before = gc.get_freeze_count(); settle_process(); "
        "print(before, gc.get_freeze_count() > 1000, gc.get_threshold() == GC_THRESHOLDS)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.split() == ["0", "True", "True"]


@pytest.mark.parametrize("settle", [True, False])
def test_the_service_settles_only_when_its_settings_say_so(
    make_client, monkeypatch: pytest.MonkeyPatch, settle: bool
) -> None:
    calls: list[int] = []
    monkeypatch.setattr(promptdag.gc_tuning, "settle_process", lambda: calls.append(1))
    client = make_client(settle_gc=settle)
    assert client.get("/healthz").status_code == 200
    assert calls == ([1] if settle else [])
