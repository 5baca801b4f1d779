"""CLI start-up: `promptdag --help` and `promptdag --version` in fresh processes against
`python -c pass` measured in the same run (commands import their heavy modules only when run)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from benchmarks._report import Report, at_most, median, spread

__all__ = ["NAME", "TITLE", "run"]

NAME = "startup"
TITLE = "CLI start-up time"
GOAL_S = 0.5
ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "promptdag --help": [sys.executable, "-m", "promptdag", "--help"],
    "promptdag --version": [sys.executable, "-m", "promptdag", "--version"],
}


def _once(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, capture_output=True, check=True)
    return time.perf_counter() - start


def run(quick: bool = False) -> Report:
    reps = 5 if quick else 15
    times: dict[str, list[float]] = {k: [] for k in CASES}
    for _ in range(reps):
        for label, argv in CASES.items():  # interleaved: a load burst hits all alike
            times[label].append(_once(argv))
    base = median(times["python -c pass"])
    rows = [
        [label, f"{median(t):.3f} s", spread(t, 1, 3) + " s", f"{median(t) / base:.1f}×"]
        for label, t in times.items()
    ]
    helps = median(times["promptdag --help"])
    return Report(
        name=NAME,
        title=TITLE,
        goals=[
            at_most("`promptdag --help` wall time", GOAL_S, helps, " s", 2),
            at_most(
                "`promptdag --version` wall time",
                GOAL_S,
                median(times["promptdag --version"]),
                " s",
                2,
            ),
        ],
        headers=["Command", "Median", f"Range, {reps} runs", "× python -c pass"],
        rows=rows,
        method=(
            f"Each command in a fresh process, {reps} interleaved rounds, medians; the interpreter "
            "is the project's virtualenv; the cwd is the project root."
        ),
        explanation=(
            f"`promptdag --help` takes {helps:.2f} s, {helps - base:.2f} s over a bare interpreter: "
            "typer and rich, the command modules and the contract types. openai, pandas, Hamilton "
            "and FastAPI load only inside the commands that use them (a test checks that "
            "`import promptdag` loads none of them)."
        ),
    )
