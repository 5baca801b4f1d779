"""What changed between two versions of a suite (base ref vs head), for the gate's report: a
pull request cannot loosen its own bar, but reviewers must see that it tried."""

from __future__ import annotations

import json

from promptdag.evals.suite import Suite

__all__ = ["suite_changes"]


def _short(value: object) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def suite_changes(base: Suite, head: Suite) -> list[str]:
    """One line per difference: threshold, default variant, cases added, removed or changed
    (naming the changed fields). Empty when the two define the same bar."""
    lines: list[str] = []
    if base.threshold != head.threshold:
        direction = "lowered" if head.threshold < base.threshold else "raised"
        lines.append(
            f"threshold {direction}: {base.threshold:g} → {head.threshold:g} "
            "(the gate uses the base value)"
        )
    if base.usage_growth != head.usage_growth:
        direction = "loosened" if head.usage_growth > base.usage_growth else "tightened"
        lines.append(
            f"usage_growth {direction}: {base.usage_growth:g} → {head.usage_growth:g} "
            "(the gate uses the base value)"
        )
    if base.pipeline != head.pipeline:
        lines.append(f"pipeline: {base.pipeline!r} → {head.pipeline!r}")
    if base.variant != head.variant:
        lines.append(f"default variant: {base.variant!r} → {head.variant!r}")
    base_ids = [c.id for c in base.cases]
    head_ids = [c.id for c in head.cases]
    lines += [f"case removed: {i}" for i in base_ids if i not in head_ids]
    lines += [f"case added: {i} (not gated until merged)" for i in head_ids if i not in base_ids]
    for case_id in (i for i in base_ids if i in head_ids):
        old, new = base.case_definition(case_id), head.case_definition(case_id)
        for key in sorted(k for k in {*old, *new} if old.get(k) != new.get(k)):
            if key == "asserts":
                lines += [
                    f"case {case_id}: assertion removed: {_short(a)}"
                    for a in old[key]
                    if a not in new[key]
                ]
                lines += [
                    f"case {case_id}: assertion added: {_short(a)}"
                    for a in new[key]
                    if a not in old[key]
                ]
            else:
                before, after = _short(old.get(key)), _short(new.get(key))
                lines.append(f"case {case_id}: {key}: {before} → {after}")
    return lines
