"""NodeTasks: Hamilton's async driver with a leaner node method. Same results and hooks as
Hamilton's adapter, one task per executed node (none per edge), every node task recorded for
its run, and a failing node's inputs never formatted or logged."""

from __future__ import annotations

import asyncio
import logging
import types
from collections.abc import Iterator
from typing import Any

import pytest
from hamilton import async_driver, base, driver
from hamilton.lifecycle.base import BasePostNodeExecuteAsync, BasePreNodeExecuteAsync

from promptdag.node_tasks import RUN_TASKS, NodeTasks, use_node_tasks
from tests.promptdag.flowmodule import flow_module

SOURCE = """
import asyncio

def a(x: int) -> int:
    if x == 7777:
        raise ValueError("a refuses 7777")
    return x + 1

async def b(a: int, x: int) -> int:
    await asyncio.sleep(0)
    return a * 2

def c(a: int, b: int, x: int) -> int:
    return a + b + x

async def d(b: int, c: int, a: int) -> int:
    if a == 100:
        raise ValueError("d refuses a == 100")
    return b * c
"""
NODES, EDGES = 4, 8  # a←x; b←a,x; c←a,b,x; d←b,c,a


@pytest.fixture(scope="module")
def module() -> Iterator[types.ModuleType]:
    with flow_module("tests_node_tasks_flow", SOURCE) as mod:
        yield mod


def build(module: types.ModuleType, *adapters: Any, lean: bool = True) -> async_driver.AsyncDriver:
    dr = (
        async_driver.Builder()
        .with_modules(module)
        .with_adapters(base.DictResult(), *adapters)
        .build_without_init()
    )
    return use_node_tasks(dr) if lean else dr


async def counted(dr: async_driver.AsyncDriver, x: int) -> tuple[dict[str, Any], int]:
    """The results and the number of tasks created while computing them."""
    made = []
    loop = asyncio.get_running_loop()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        made.append(coro)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)
    try:
        out = await dr.execute(["d"], inputs={"x": x})
    finally:
        loop.set_task_factory(None)
    return out, len(made)


def test_same_results_as_hamiltons_adapter_with_one_task_per_node(module) -> None:
    async def go() -> tuple[Any, Any]:
        return await counted(build(module), 1), await counted(build(module, lean=False), 1)

    (lean, lean_tasks), (stock, stock_tasks) = asyncio.run(go())
    assert lean == stock == {"d": 4 * (2 + 4 + 1)}
    assert lean_tasks == NODES + 1  # + Hamilton's one task per requested output
    assert stock_tasks >= NODES + 1 + EDGES  # Hamilton gathers each argument as a task


def test_every_node_task_is_recorded_for_the_run(module) -> None:
    async def go() -> list[asyncio.Task[Any]]:
        tasks: list[asyncio.Task[Any]] = []
        token = RUN_TASKS.set(tasks)
        try:
            await build(module).execute(["d"], inputs={"x": 1})
        finally:
            RUN_TASKS.reset(token)
        return tasks

    tasks = asyncio.run(go())
    assert len(tasks) == NODES and all(t.done() and not t.cancelled() for t in tasks)


class Hooks(BasePreNodeExecuteAsync, BasePostNodeExecuteAsync):
    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    async def pre_node_execute(self, *, run_id, node_, kwargs, task_id=None) -> None:
        self.seen.append(("pre", node_.name, dict(kwargs)))

    async def post_node_execute(
        self, *, run_id, node_, kwargs, success, error, result, task_id=None
    ) -> None:
        self.seen.append(("post", node_.name, success, type(error).__name__, result))


def test_async_node_hooks_see_resolved_arguments_and_the_outcome(module) -> None:
    hooks = Hooks()

    async def go() -> None:
        dr = build(module, hooks)
        await dr.ainit()
        await dr.execute(["d"], inputs={"x": 1})
        with pytest.raises(ValueError, match="refuses"):
            await dr.execute(["d"], inputs={"x": 99})

    asyncio.run(go())
    assert ("pre", "c", {"a": 2, "b": 4, "x": 1}) in hooks.seen  # values, not tasks
    assert ("post", "d", True, "NoneType", 28) in hooks.seen
    assert ("post", "d", False, "ValueError", None) in hooks.seen


def test_a_failing_node_logs_none_of_its_inputs(module, caplog) -> None:
    async def go(lean: bool) -> None:
        with pytest.raises(ValueError, match="refuses"):
            await build(module, lean=lean).execute(["d"], inputs={"x": 7777})

    with caplog.at_level(logging.DEBUG, logger="hamilton"):
        asyncio.run(go(lean=False))
        assert [r for r in caplog.records if "7777" in r.getMessage()]  # Hamilton's adapter does
        caplog.clear()
        asyncio.run(go(lean=True))
    assert not [r for r in caplog.records if "7777" in r.getMessage()]


def test_a_driver_without_hamiltons_async_adapter_is_refused(module) -> None:
    sync = driver.Builder().with_modules(module).build()
    with pytest.raises(RuntimeError, match="AsyncGraphAdapter"):
        use_node_tasks(sync)  # type: ignore[arg-type]
    dr = build(module)
    assert any(isinstance(a, NodeTasks) for a in dr.adapter.adapters)
    with pytest.raises(RuntimeError, match="found 0"):
        use_node_tasks(dr)  # already swapped: nothing left to swap
