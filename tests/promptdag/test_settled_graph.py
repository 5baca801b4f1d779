"""settle_graph: a built Driver's nodes keep their stable attributes once read, and its graph
memoizes the upstream walk per (outputs, input names, override names). Same answers as
Hamilton's own graph, for every combination of optional inputs and overrides; only the Driver
given changes."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Iterator
from typing import Any

import pytest
from hamilton import async_driver, base
from hamilton import graph as hamilton_graph
from hamilton import node as hamilton_node

from promptdag.node_tasks import use_node_tasks
from promptdag.settled_graph import SettledGraph, SettledNode, settle_graph
from tests.promptdag.flowmodule import flow_module

SOURCE = """
def a(x: int, bonus: int = 0) -> int:
    return x + 1 + bonus

async def b(a: int) -> int:
    return a * 2

def c(a: int, b: int, scale: int = 1) -> int:
    return (a + b) * scale

def unused(c: int) -> int:
    return -c
"""


@pytest.fixture(scope="module")
def module() -> Iterator[types.ModuleType]:
    with flow_module("tests_settled_graph_flow", SOURCE) as mod:
        yield mod


def build(module: types.ModuleType, *, settled: bool) -> async_driver.AsyncDriver:
    dr = use_node_tasks(
        async_driver.Builder()
        .with_modules(module)
        .with_adapters(base.DictResult())
        .build_without_init()
    )
    return settle_graph(dr) if settled else dr


CASES: list[tuple[list[str], dict[str, Any], dict[str, Any]]] = [
    (["c"], {"x": 1}, {}),
    (["c"], {"x": 1, "bonus": 5}, {}),
    (["c"], {"x": 1, "scale": 3}, {}),
    (["c", "a"], {"x": 2, "bonus": 1, "scale": 2}, {}),
    (["c"], {"x": 1}, {"b": 100}),
    (["c"], {"x": 1}, {"a": 10}),
    (["b"], {"x": 4}, {}),
    (["c"], {"x": 1}, {}),  # again, after the others: from the memo
]


def test_same_results_and_upstream_sets_as_hamiltons_graph(module) -> None:
    settled, plain = build(module, settled=True), build(module, settled=False)

    async def go() -> None:
        for outputs, inputs, overrides in CASES:
            mine = await settled.execute(outputs, inputs=inputs, overrides=overrides)
            theirs = await plain.execute(outputs, inputs=inputs, overrides=overrides)
            assert mine == theirs, (outputs, inputs, overrides)
            got = settled.graph.get_upstream_nodes(outputs, inputs, overrides)
            want = plain.graph.get_upstream_nodes(outputs, inputs, overrides)
            assert [sorted(n.name for n in s) for s in got] == [
                sorted(n.name for n in s) for s in want
            ]

    asyncio.run(go())
    memo = settled.graph.__dict__["_promptdag_upstream"]
    assert len(memo) == len({(tuple(o), frozenset(i), frozenset(v)) for o, i, v in CASES})


def test_callers_get_their_own_sets(module) -> None:
    graph = build(module, settled=True).graph
    nodes, _ = graph.get_upstream_nodes(["c"], {"x": 1})
    nodes.clear()
    again, _ = graph.get_upstream_nodes(["c"], {"x": 1})
    assert sorted(n.name for n in again) == ["a", "b", "c", "x"]


def test_unknown_outputs_still_fail_as_hamilton_says_and_are_not_memoized(module) -> None:
    graph = build(module, settled=True).graph
    with pytest.raises(ValueError, match="Unknown nodes"):
        graph.get_upstream_nodes(["nope"], {"x": 1})
    assert not graph.__dict__.get("_promptdag_upstream")


def test_nodes_keep_hamiltons_values_and_only_this_driver_changes(module) -> None:
    settled, plain = build(module, settled=True), build(module, settled=False)
    assert isinstance(settled.graph, SettledGraph)
    assert type(plain.graph) is hamilton_graph.FunctionGraph
    assert all(type(n) is hamilton_node.Node for n in plain.graph.nodes.values())
    for name, n in settled.graph.nodes.items():
        assert type(n) is SettledNode
        twin = plain.graph.nodes[name]
        assert n.name == name == twin.name
        assert n.user_defined == twin.user_defined
        assert [d.name for d in n.dependencies] == [d.name for d in twin.dependencies]
        assert sorted(d.name for d in n.depended_on_by) == sorted(
            d.name for d in twin.depended_on_by
        )
        assert n.input_types == twin.input_types
        assert n.callable is twin.callable
        assert "name" in vars(n)  # read once, then kept on the node


def test_refuses_a_graph_it_does_not_know(module) -> None:
    dr = build(module, settled=False)

    class Other(hamilton_graph.FunctionGraph):
        pass

    dr.graph.__class__ = Other
    with pytest.raises(RuntimeError, match="pin the version"):
        settle_graph(dr)


def test_pipelines_are_built_settled(tmp_path) -> None:
    from promptdag.factory import build_pipeline
    from tests.promptdag.tinyproject import write_tiny_project

    pipeline = build_pipeline(project=write_tiny_project(tmp_path))
    assert isinstance(pipeline.driver.graph, SettledGraph)
    assert all(type(n) is SettledNode for n in pipeline.driver.graph.nodes.values())
