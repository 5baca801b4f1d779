"""The prompt gate on a one-prompt change: how many LLM calls `promptdag gate` makes with a warm
response cache, against a full uncached run of every eval case, and how long each takes.

A throwaway git repository holds a copy of this project (tests/promptdag/gate/repo.py builds it). A full
`promptdag gate HEAD --all` on the unchanged tree warms the response cache; then one commit adds
`final_summary_prompt@v3` and switches variant `concise` to it (re-locked). Each rep restores the
warm cache and times, in a fresh process each, (a) `promptdag gate HEAD~1` (the selected cases,
warm cache), (b) `promptdag gate HEAD~1 --all --cache off` (every case, every call made) and
(c) `promptdag gate HEAD` (no change, nothing selected: the gate's fixed cost); wall and CPU time."""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks._report import Report, at_most, differences, median, require, spread
from tests.promptdag.gate.repo import GateRun, ThrowawayRepo, final_summary_version, switch_variant

__all__ = ["NAME", "TITLE", "run"]

NAME = "gate"
TITLE = "Prompt gate on a one-prompt change"
GOAL_S = 15.0
FIXED_BEFORE_S = 5.4  # the fixed cost before issue 9 (docs/benchmarks.md, two snapshot processes)
FIXED_GOAL_S = FIXED_BEFORE_S / 2
AFFECTED = {"pdf-concise-query", "news-query"}  # the cases of variant concise
FINAL_V3 = final_summary_version(
    "v3", "Write a very short summary of {content_type} in at most 3 sentences of plain prose."
)


def _cpu_of_children() -> float:
    """CPU seconds (user + system) of this process's ended children (and theirs, reaped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(repo: ThrowawayRepo, base: str, *args: str) -> tuple[GateRun, float, float]:
    """One gate run: (run, wall seconds, CPU seconds of the gate and every process it started).
    It must pass, or (a live variant's prompt changed and no judge runs offline) end in exit
    3, needs a judge or a reviewer's approval."""
    cpu = _cpu_of_children()
    start = time.perf_counter()
    gate = repo.gate(base, *args)
    seconds = time.perf_counter() - start
    require(
        gate.returncode in (0, 3), f"promptdag gate {base} {' '.join(args)}: {gate.stderr[-800:]}"
    )
    return gate, seconds, _cpu_of_children() - cpu


def _measure(where: Path, reps: int) -> Report:
    repo = ThrowawayRepo.create(where)
    warm = repo.gate("HEAD", "--all")
    require(warm.returncode == 0, f"warming the cache failed: {warm.stderr[-800:]}")
    warm_dir = where / "warm-cache"
    shutil.copytree(repo.data_dir, warm_dir)
    repo.append("prompts/default.py", FINAL_V3)
    switch_variant(repo, "concise", "final_summary_prompt", "v3")
    repo.lock()
    repo.commit("final_summary_prompt@v3 for concise")

    runs: dict[str, list[tuple[GateRun, float, float]]] = {"gate": [], "full": [], "none": []}
    commands = {
        "gate": ("HEAD~1",),
        "full": ("HEAD~1", "--all", "--cache", "off"),
        "none": ("HEAD",),
    }
    order = list(commands)
    for rep in range(reps):
        for key in order[rep % 3 :] + order[: rep % 3]:  # rotate: drift in load hits all alike
            if key == "gate":  # as warm as right after the base's full run
                shutil.rmtree(repo.data_dir)
                shutil.copytree(warm_dir, repo.data_dir)
            runs[key].append(_timed(repo, *commands[key]))
    for gate, _, _ in runs["gate"]:
        require(set(gate.suite()["selected"]) == AFFECTED, "the gate selected other cases")
    for gate, _, _ in runs["full"]:
        require(gate.suite()["skipped"] == {}, "--all skipped cases")
    for gate, _, _ in runs["none"]:
        require(gate.suite()["selected"] == {}, "the gate selected cases on an unchanged tree")

    made = {k: [g.llm_calls_made() for g, _, _ in v] for k, v in runs.items()}
    total = {k: [g.report["llm_calls"]["calls"] for g, _, _ in v] for k, v in runs.items()}
    secs = {k: [s for _, s, _ in v] for k, v in runs.items()}
    cpus = {k: [c for _, _, c in v] for k, v in runs.items()}
    cases = {k: len(v[0][0].suite()["selected"]) for k, v in runs.items()}
    gate_calls, full_calls = median(made["gate"]), median(made["full"])
    gate_s, full_s, fixed_s = (median(secs[k]) for k in ("gate", "full", "none"))
    gate_evals = median(differences(secs["gate"], secs["none"]))
    full_evals = median(differences(secs["full"], secs["none"]))
    only_finals = (
        "the one final-summary call per selected case, whose prompt changed; their chunk-summary "
        "calls came from the cache"
        if gate_calls == cases["gate"]
        else "more than the one final-summary call per selected case that changed"
    )

    def row(label: str, key: str) -> list[str]:
        return [
            label,
            str(cases[key]),
            f"{median(made[key]):.0f} of {median(total[key]):.0f}",
            f"{median(secs[key]):.1f} s",
            spread(secs[key], 1, 1),
            f"{median(cpus[key]):.1f} s",
        ]

    return Report(
        name=NAME,
        title=TITLE,
        goals=[
            at_most("LLM calls the gate makes (warm cache)", len(AFFECTED), gate_calls, ""),
            at_most("gate wall time (warm cache)", GOAL_S, gate_s, " s", 1),
            at_most(
                f"fixed cost (half of the {FIXED_BEFORE_S} s before)",
                FIXED_GOAL_S,
                fixed_s,
                " s",
                1,
            ),
        ],
        headers=[
            "Run",
            "Cases run",
            "LLM calls made (of calls)",
            "Wall time",
            "Range (s)",
            "CPU time",
        ],
        rows=[
            row("`promptdag gate HEAD~1` (selected cases, warm cache)", "gate"),
            row("`promptdag gate HEAD~1 --all --cache off` (full run)", "full"),
            row("`promptdag gate HEAD` (no change: the fixed cost)", "none"),
        ],
        method=(
            "A throwaway git repository with a copy of this project (offline model "
            "`offline-extractive`, no judge). `promptdag gate HEAD --all` on the unchanged tree "
            "warms the response cache; one commit then adds `final_summary_prompt@v3` and switches "
            "variant `concise` to it. Each rep runs `promptdag gate HEAD~1` on that warm cache "
            "(restored first), `promptdag gate HEAD~1 --all --cache off` and `promptdag gate HEAD` "
            "(no change, nothing selected: the fixed cost), in an order that rotates from rep to "
            "rep, each in a fresh process timed from start to exit. CPU time is user + system "
            "time of the gate and every process it started (git, its helper processes). LLM "
            f"calls made are report.json's `llm_calls.calls - cached_calls`. Medians of {reps} "
            "reps."
        ),
        explanation=(
            f"The gate selected the {cases['gate']} cases downstream of the changed prompt node "
            f"and made {gate_calls:.0f} LLM call(s): {only_finals}. The full run made "
            f"{full_calls:.0f}. Wall time: {gate_s:.1f} s against {full_s:.1f} s, and "
            f"{fixed_s:.1f} s with nothing to evaluate: the fixed cost every gate run pays "
            "(importing Hamilton, pandas and the openai SDK once, the head's prompt snapshot in "
            "the gate's process while the base's is taken in a process forked from it after "
            "those imports, the lock check and the reports; it was two snapshot processes one "
            f"after the other, {FIXED_BEFORE_S} s, then a fresh snapshot interpreter beside the "
            "gate). Each selected case also runs on the base tree, in that same forked process, "
            "through the warm cache, so its output can be shown beside the head's. "
            "The offline model answers in milliseconds, so the evals themselves add little: "
            f"{gate_evals:+.1f} s for the gate and {full_evals:+.1f} s for the full run (median "
            "paired differences to the fixed cost; compare them with the ranges, which show this "
            "shared machine's noise). With a real model at hundreds of ms to seconds a call, the "
            "difference in calls is the difference that counts, in time and in money."
        ),
    )


def run(quick: bool = False) -> Report:
    with tempfile.TemporaryDirectory(prefix="promptdag-bench-gate-") as tmp:
        return _measure(Path(tmp), reps=1 if quick else 3)
