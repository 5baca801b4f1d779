"""A built Driver's graph, settled for running many times: what Hamilton recomputes on every run
from a graph that never changes once built is computed once.

On every run Hamilton's graph walk reads each node's `name` (a property joining the node's
namespace and name: about 500 reads per run of the reference app), `dependencies`,
`input_types` and `user_defined`, each through a property call; and it recomputes the set of
nodes upstream of the requested outputs (`FunctionGraph.get_upstream_nodes`), a walk over the
graph that depends only on the outputs and on which inputs and overrides are given.
`settle_graph` makes each node of one Driver's graph keep those attributes once read
(`functools.cached_property`, so the values are Hamilton's own) and memoizes the upstream
walk per (outputs, input names, override names). The walk, the execution and the results stay
Hamilton's; only the same answers are not computed again. benchmarks/overhead.py measures it.

Only the Driver given is changed (its graph's class and its nodes' class), never Hamilton's
classes or any other Driver."""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from typing import Any

from hamilton import graph as hamilton_graph
from hamilton import node as hamilton_node
from hamilton.async_driver import AsyncDriver

__all__ = ["SettledGraph", "SettledNode", "settle_graph"]

# Node properties that a built graph never changes and the graph walk reads on every run.
_STABLE = ("name", "user_defined", "dependencies", "depended_on_by", "input_types", "callable")
_MEMO_SIZE = 256  # distinct (outputs, input names, override names) kept per graph


class SettledNode(hamilton_node.Node):
    """A Hamilton node whose stable properties are read once, then kept on the instance."""


for _attr in _STABLE:
    _cached = functools.cached_property(getattr(hamilton_node.Node, _attr).fget)
    _cached.__set_name__(SettledNode, _attr)
    setattr(SettledNode, _attr, _cached)


class SettledGraph(hamilton_graph.FunctionGraph):
    """A FunctionGraph that memoizes `get_upstream_nodes`: its answer depends only on the
    requested outputs, the names (not values) of the inputs and overrides, and the graph and
    config fixed at build. Callers get their own copies of the sets."""

    def get_upstream_nodes(
        self,
        final_vars: list[str],
        runtime_inputs: Mapping[str, Any] | None = None,
        runtime_overrides: Mapping[str, Any] | None = None,
    ) -> tuple[set[hamilton_node.Node], set[hamilton_node.Node]]:
        key = (tuple(final_vars), _names(runtime_inputs), _names(runtime_overrides))
        memo: dict[Any, tuple[frozenset[Any], frozenset[Any]]] = self.__dict__.setdefault(
            "_promptdag_upstream", {}
        )
        found = memo.get(key)
        if found is None:
            nodes, user_nodes = super().get_upstream_nodes(
                final_vars,
                None if runtime_inputs is None else dict(runtime_inputs),
                None if runtime_overrides is None else dict(runtime_overrides),
            )
            if len(memo) >= _MEMO_SIZE:
                memo.clear()
            found = memo[key] = (frozenset(nodes), frozenset(user_nodes))
        return set(found[0]), set(found[1])


def _names(values: Collection[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


def settle_graph(driver: AsyncDriver) -> AsyncDriver:
    """Settle `driver`'s built graph (see the module): call once, after the build."""
    graph = driver.graph
    if type(graph) is not hamilton_graph.FunctionGraph and not isinstance(graph, SettledGraph):
        raise RuntimeError(
            f"expected Hamilton's FunctionGraph in the driver, found {type(graph).__name__}: "
            "this Hamilton version builds its driver otherwise; pin the version in the lock."
        )
    for node_ in graph.nodes.values():
        if type(node_) is hamilton_node.Node:
            node_.__class__ = SettledNode
    graph.__class__ = SettledGraph
    return driver
