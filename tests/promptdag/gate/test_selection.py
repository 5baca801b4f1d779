"""DAG-aware case selection on small hand-made snapshots: which prompt nodes changed per variant
(`changed_prompt_nodes`), what lies downstream of a node (`downstream`), and which eval cases a
change can affect (`select_cases`), each with its reason."""

from __future__ import annotations

import copy
from typing import Any

from promptdag.gate.selection import (
    Selection,
    changed_nodes,
    changed_prompt_nodes,
    downstream,
    select_cases,
)

# prompt_a → requests → response_a → prompt_b → response_b → answer; response_a → notes
EDGES = [
    ["prompt_a", "requests"],
    ["requests", "response_a"],
    ["response_a", "prompt_b"],
    ["response_a", "notes"],
    ["prompt_b", "response_b"],
    ["response_b", "answer"],
    ["question", "prompt_b"],
]


def _entry(text: str, source: str = "src") -> dict[str, Any]:
    return {
        "source_sha256": source,
        "inputs": [],
        "rendered": {"fx1": {"sha256": f"sha-{text}-1"}, "fx2": {"sha256": f"sha-{text}-2"}},
    }


def _variant(pack: str = "p", a: str = "v1", b: str = "v1") -> dict[str, Any]:
    return {
        "pack": pack,
        "prompts": {"prompt_a": a, "prompt_b": b},
        "graph": {"nodes": [], "edges": EDGES},
    }


def snapshot() -> dict[str, Any]:
    """Two versions of each of two prompt nodes in pack `p`, one in pack `q`; three variants."""
    return {
        "prompts": {
            "p/prompt_a@v1": _entry("a1"),
            "p/prompt_a@v2": _entry("a2"),
            "p/prompt_b@v1": _entry("b1"),
            "p/prompt_b@v2": _entry("b2"),
            "q/prompt_a@v1": _entry("qa1"),
            "q/prompt_b@v1": _entry("qb1"),
        },
        "variants": {"one": _variant(), "two": _variant(b="v2"), "other": _variant(pack="q")},
        "default_variant": "one",
    }


def _cases(*specs: tuple[str, str, str]) -> list[dict[str, Any]]:
    """Cases of one-output pipelines: (id, variant, the pipeline's answer)."""
    return [{"id": i, "variant": v, "outputs": [o]} for i, v, o in specs]


# --- downstream ----------------------------------------------------------------------------


def test_downstream_follows_edges_transitively_and_excludes_the_node_itself() -> None:
    graph = {"edges": EDGES}
    assert downstream(graph, "prompt_a") == {
        "requests",
        "response_a",
        "prompt_b",
        "notes",
        "response_b",
        "answer",
    }
    assert downstream(graph, "prompt_b") == {"response_b", "answer"}
    assert downstream(graph, "answer") == set()


def test_downstream_of_a_node_not_in_the_graph_is_empty() -> None:
    assert downstream({"edges": EDGES}, "absent") == set()
    assert downstream({}, "prompt_a") == set()


def test_downstream_visits_a_diamond_once() -> None:
    graph = {"edges": [["a", "b"], ["a", "c"], ["b", "d"], ["c", "d"], ["d", "e"]]}
    assert downstream(graph, "a") == {"b", "c", "d", "e"}


# --- changed_prompt_nodes ------------------------------------------------------------------


def test_identical_snapshots_change_nothing() -> None:
    assert changed_prompt_nodes(snapshot(), snapshot()) == {}


def test_a_version_switch_changes_that_node_in_that_variant_only() -> None:
    head = snapshot()
    head["variants"]["one"]["prompts"]["prompt_b"] = "v2"
    assert changed_prompt_nodes(snapshot(), head) == {"one": {"prompt_b": "version v1 → v2"}}


def test_a_selected_version_that_renders_differently_changes_every_variant_selecting_it() -> None:
    """An edited helper: same version, same source hash, another rendered text."""
    head = snapshot()
    head["prompts"]["p/prompt_b@v1"]["rendered"]["fx2"]["sha256"] = "sha-edited"
    assert changed_prompt_nodes(snapshot(), head) == {"one": {"prompt_b": "v1 renders differently"}}


def test_a_source_change_with_the_same_rendered_text_still_counts() -> None:
    head = snapshot()
    head["prompts"]["p/prompt_a@v1"]["source_sha256"] = "another source"
    why = "v1's source changed; it renders identically on every fixture"
    assert changed_prompt_nodes(snapshot(), head) == {
        "one": {"prompt_a": why},
        "two": {"prompt_a": why},
    }


def test_a_fixture_added_or_removed_changes_no_prompt_node() -> None:
    head = snapshot()
    for entry in head["prompts"].values():
        entry["rendered"]["fx3"] = {"sha256": "a new fixture"}
        del entry["rendered"]["fx1"]
    assert changed_prompt_nodes(snapshot(), head) == {}


def test_a_version_no_variant_selects_changes_no_variant() -> None:
    head = snapshot()
    head["prompts"]["p/prompt_a@v2"]["rendered"]["fx1"]["sha256"] = "sha-edited"
    head["prompts"]["p/prompt_a@v3"] = _entry("a3")
    assert changed_prompt_nodes(snapshot(), head) == {}


def test_a_pack_switch_with_the_same_versions_counts_as_rendering_differently() -> None:
    head = snapshot()
    head["variants"]["one"]["pack"] = "q"
    assert changed_prompt_nodes(snapshot(), head) == {
        "one": {"prompt_a": "v1 renders differently", "prompt_b": "v1 renders differently"}
    }


def test_a_new_variant_changes_all_its_prompt_nodes() -> None:
    head = snapshot()
    head["variants"]["three"] = _variant(a="v2")
    assert changed_prompt_nodes(snapshot(), head) == {
        "three": {"prompt_a": "new variant", "prompt_b": "new variant"}
    }


def test_a_prompt_node_new_in_an_existing_variant() -> None:
    base = snapshot()
    del base["variants"]["one"]["prompts"]["prompt_b"]
    assert changed_prompt_nodes(base, snapshot()) == {"one": {"prompt_b": "new in this variant"}}


def test_removed_and_broken_variants_change_nothing_in_themselves() -> None:
    """A removed variant has no head cases to select; a variant that no longer builds has no
    resolved prompts (select_cases selects its cases for that reason instead)."""
    head = snapshot()
    del head["variants"]["two"]
    head["variants"]["other"] = {"weight": 0.0, "error": "does not build"}
    assert changed_prompt_nodes(snapshot(), head) == {}


# --- select_cases --------------------------------------------------------------------------


def test_cases_downstream_of_a_changed_node_are_selected_with_the_reason() -> None:
    head = snapshot()
    head["variants"]["one"]["prompts"]["prompt_a"] = "v2"
    changed = changed_prompt_nodes(snapshot(), head)
    cases = _cases(("c1", "one", "answer"), ("c2", "one", "notes"), ("c3", "two", "answer"))
    assert select_cases(cases, head, changed) == Selection(
        selected={
            "c1": "answer is downstream of prompt_a (version v1 → v2)",
            "c2": "notes is downstream of prompt_a (version v1 → v2)",
        },
        skipped={"c3": "nothing changed upstream of answer in variant two"},
    )


def test_a_case_upstream_of_the_changed_node_is_skipped() -> None:
    """`notes` hangs off response_a, before prompt_b: a prompt_b change cannot reach it."""
    head = snapshot()
    head["variants"]["one"]["prompts"]["prompt_b"] = "v2"
    changed = changed_prompt_nodes(snapshot(), head)
    selection = select_cases(
        _cases(("notes-case", "one", "notes"), ("answer-case", "one", "answer")), head, changed
    )
    assert selection.selected == {
        "answer-case": "answer is downstream of prompt_b (version v1 → v2)"
    }
    assert selection.skipped == {"notes-case": "nothing changed upstream of notes in variant one"}


def test_a_case_is_selected_when_any_output_of_its_pipeline_is_downstream() -> None:
    """Its pipeline's answer is `notes` (upstream of prompt_b), but `answer`, another of its
    outputs, is downstream of prompt_b: the case runs, and the reason names that output."""
    head = snapshot()
    head["variants"]["one"]["prompts"]["prompt_b"] = "v2"
    changed = changed_prompt_nodes(snapshot(), head)
    case = {"id": "c", "variant": "one", "outputs": ["notes", "answer"]}
    assert select_cases([case], head, changed).selected == {
        "c": "answer is downstream of prompt_b (version v1 → v2)"
    }


def test_reasons_name_the_answer_first_and_group_the_nodes_by_output() -> None:
    head = snapshot()
    head["variants"]["one"]["prompts"] = {"prompt_a": "v2", "prompt_b": "v2"}
    changed = changed_prompt_nodes(snapshot(), head)
    cases = [
        {"id": "answer-first", "variant": "one", "outputs": ["answer", "notes"]},
        {"id": "notes-first", "variant": "one", "outputs": ["notes", "answer"]},
    ]
    assert select_cases(cases, head, changed).selected == {
        "answer-first": "answer is downstream of prompt_a (version v1 → v2), "
        "prompt_b (version v1 → v2)",
        "notes-first": "notes is downstream of prompt_a (version v1 → v2); "
        "answer is downstream of prompt_b (version v1 → v2)",
    }


def test_a_skipped_case_names_every_output_of_its_pipeline() -> None:
    case = {"id": "c", "variant": "one", "outputs": ["answer", "notes"]}
    assert select_cases([case], snapshot(), {}).skipped == {
        "c": "nothing changed upstream of answer, notes in variant one"
    }


def test_a_case_checking_the_prompt_node_itself_is_selected() -> None:
    head = snapshot()
    head["variants"]["one"]["prompts"]["prompt_b"] = "v2"
    changed = changed_prompt_nodes(snapshot(), head)
    selection = select_cases(_cases(("c", "one", "prompt_b")), head, changed)
    assert selection.selected == {"c": "prompt_b itself changed (version v1 → v2)"}


def test_several_changed_nodes_are_named_in_order() -> None:
    head = snapshot()
    head["variants"]["one"]["prompts"] = {"prompt_a": "v2", "prompt_b": "v2"}
    changed = changed_prompt_nodes(snapshot(), head)
    selection = select_cases(_cases(("c", "one", "answer")), head, changed)
    assert selection.selected == {
        "c": "answer is downstream of prompt_a (version v1 → v2), prompt_b (version v1 → v2)"
    }


def test_a_case_whose_variant_does_not_build_at_head_is_selected() -> None:
    head = snapshot()
    head["variants"]["two"] = {"weight": 0.0, "error": "does not build"}
    cases = _cases(("c1", "two", "answer"), ("c2", "missing", "answer"), ("c3", "one", "answer"))
    selection = select_cases(cases, head, changed_prompt_nodes(snapshot(), head))
    assert selection.selected == {
        "c1": "variant two is new or does not build at head",
        "c2": "variant missing is new or does not build at head",
    }
    assert selection.skipped == {"c3": "nothing changed upstream of answer in variant one"}


def test_run_all_selects_every_case_even_without_changes() -> None:
    cases = _cases(("c1", "one", "answer"), ("c2", "missing", "answer"))
    assert select_cases(cases, snapshot(), {}, run_all=True) == Selection(
        selected={"c1": "--all", "c2": "--all"}, skipped={}
    )


def test_no_changes_skip_every_case() -> None:
    cases = _cases(("c1", "one", "answer"), ("c2", "two", "notes"))
    assert select_cases(cases, snapshot(), {}) == Selection(
        selected={},
        skipped={
            "c1": "nothing changed upstream of answer in variant one",
            "c2": "nothing changed upstream of notes in variant two",
        },
    )


def test_selection_does_not_modify_the_snapshots() -> None:
    base, head = snapshot(), snapshot()
    head["variants"]["one"]["prompts"]["prompt_a"] = "v2"
    before = copy.deepcopy((base, head))
    select_cases(
        _cases(("c", "one", "answer")), head, changed_prompt_nodes(base, head), run_all=False
    )
    assert (base, head) == before


# --- changed_nodes: code, config and model settings, not only prompts -----------------------


def _with_code_and_config(snap: dict[str, Any]) -> dict[str, Any]:
    """`snap` with Hamilton node versions, a resolved config (a config node `chunk_size` feeding
    `requests`, the model settings) and the LLM input feeding both responses."""
    out = copy.deepcopy(snap)
    for v in out["variants"].values():
        v["graph"]["nodes"] = [{"name": n} for n in ("chunk_size", "llm", "requests", "answer")]
        v["graph"]["edges"] = [
            *EDGES,
            ["chunk_size", "requests"],
            ["llm", "response_a"],
            ["llm", "response_b"],
        ]
        v["node_versions"] = {"requests": "r1", "answer": "a1", "response_b": "rb1"}
        v["resolved"] = {"chunk_size": 500, "llm_model": "m1", "llm_temperature": 0.0}
    return out


def test_a_node_whose_code_changed_selects_the_cases_downstream_of_it() -> None:
    base = _with_code_and_config(snapshot())
    head = copy.deepcopy(base)
    head["variants"]["one"]["node_versions"]["response_b"] = "rb2"
    changed = changed_nodes(base, head)
    assert changed == {"one": {"response_b": "its code changed"}}
    selection = select_cases(_cases(("c1", "one", "answer"), ("c2", "one", "notes")), head, changed)
    assert selection.selected == {"c1": "answer is downstream of response_b (its code changed)"}
    assert set(selection.skipped) == {"c2"}


def test_a_changed_config_default_selects_the_cases_downstream_of_its_node() -> None:
    base = _with_code_and_config(snapshot())
    head = copy.deepcopy(base)
    for v in head["variants"].values():
        v["resolved"]["chunk_size"] = 250
    changed = changed_nodes(base, head)
    assert changed["two"] == {"chunk_size": "config chunk_size 500 → 250"}
    selection = select_cases(_cases(("c1", "two", "notes")), head, changed)
    assert selection.selected == {
        "c1": "notes is downstream of chunk_size (config chunk_size 500 → 250)"
    }


def test_a_model_switch_reaches_every_llm_call_through_the_llm_input() -> None:
    base = _with_code_and_config(snapshot())
    head = copy.deepcopy(base)
    head["variants"]["one"]["resolved"].update(llm_model="m2", llm_temperature=0.7)
    changed = changed_nodes(base, head)
    assert changed == {
        "one": {"llm": 'config llm_model "m1" → "m2", config llm_temperature 0.0 → 0.7'}
    }
    selection = select_cases(_cases(("c1", "one", "notes"), ("c2", "two", "notes")), head, changed)
    assert selection.selected["c1"].startswith("notes is downstream of llm (config llm_model")
    assert set(selection.skipped) == {"c2"}


def test_a_prompt_version_switch_is_not_also_reported_as_a_config_change() -> None:
    base = _with_code_and_config(snapshot())
    head = copy.deepcopy(base)
    head["variants"]["one"]["prompts"]["prompt_b"] = "v2"
    head["variants"]["one"]["resolved"]["prompt_b_version"] = "v2"
    assert changed_nodes(base, head) == {"one": {"prompt_b": "version v1 → v2"}}
