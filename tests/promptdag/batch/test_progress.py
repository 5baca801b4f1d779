"""Batch progress: a line every few seconds when stderr is not a terminal."""

from __future__ import annotations

from promptdag.batch.progress import BatchProgress, duration


def test_without_a_terminal_progress_is_a_line_with_counts_rate_usage_and_failures() -> None:
    lines: list[str] = []
    row = {
        "status": "ok",
        "llm_calls": 2,
        "input_tokens": 100,
        "output_tokens": 20,
        "cost_usd": 0.5,
    }
    with BatchProgress(4, log_every=0.0, tty=False, write=lines.append, label="batch x") as p:
        p.update(row)
        p.update({**row, "status": "error", "cost_usd": None})
    assert len(lines) == 2
    assert lines[-1].startswith("batch x: 2/4 items · ")
    assert "4 calls · 200→40 tokens · $0.5000 · 1 failed" in lines[-1] and "ETA" in lines[-1]


def test_quiet_progress_writes_nothing() -> None:
    lines: list[str] = []
    with BatchProgress(1, enabled=False, log_every=0.0, tty=False, write=lines.append) as p:
        p.update({"status": "ok"})
        p.tick()
    assert lines == []


def test_durations_read_naturally() -> None:
    assert [duration(s) for s in (4.25, 42, 185, 7620)] == ["4.2 s", "42 s", "3m05s", "2h07m"]
