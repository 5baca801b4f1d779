"""How a pipeline's Driver runs each node: Hamilton's `AsyncGraphAdapter` with its one node
method, `do_node_execute`, made leaner, and every task it makes recorded for the run.

Hamilton's async adapter wraps each node in a task that first turns every argument into a
coroutine and gathers them, so `asyncio.gather` wraps each argument in a task of its own: one
task per edge of the DAG on every run, plus a log record that `repr`s every input when a node
fails. Here a node's task waits only on the arguments that are still pending (the upstream
nodes' tasks, gathered as they are; no new task per edge), then runs the node between the same
async lifecycle hooks, and never logs its inputs (a run's failure reaches the caller as a
typed error). Everything else (graph walk, result building, sync hooks, validation) stays
Hamilton's own. benchmarks/overhead.py measures what it saves.

The tasks are recorded in the running run's list (`RUN_TASKS`), so a failed or timed-out run
can cancel and reap its own tasks, and no others, without a task factory on the event loop."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from hamilton.async_driver import AsyncDriver, AsyncGraphAdapter

__all__ = ["RUN_TASKS", "NodeTasks", "use_node_tasks"]

RUN_TASKS: contextvars.ContextVar[list[asyncio.Task[Any]] | None] = contextvars.ContextVar(
    "promptdag_run_tasks", default=None
)


class NodeTasks(AsyncGraphAdapter):
    """`AsyncGraphAdapter` whose node tasks wait on pending arguments only (see the module)."""

    def do_node_execute(
        self,
        *,
        run_id: str,
        node_: Any,
        kwargs: dict[str, Any],
        task_id: str | None = None,
    ) -> asyncio.Task[Any]:
        hooks = self.adapter
        fn = node_.callable
        is_async = asyncio.iscoroutinefunction(fn)

        async def run() -> Any:
            values = await _arguments(kwargs)
            if hooks.does_hook("pre_node_execute", is_async=True):
                await hooks.call_all_lifecycle_hooks_async(
                    "pre_node_execute", run_id=run_id, node_=node_, kwargs=values, task_id=task_id
                )
            if not hooks.does_hook("post_node_execute", is_async=True):
                return await fn(**values) if is_async else fn(**values)
            result, error = None, None
            try:
                result = await fn(**values) if is_async else fn(**values)
                return result
            except Exception as exc:
                error = exc
                raise
            finally:
                await hooks.call_all_lifecycle_hooks_async(
                    "post_node_execute",
                    run_id=run_id,
                    node_=node_,
                    kwargs=values,
                    success=error is None,
                    error=error,
                    result=result,
                    task_id=task_id,
                )

        task = asyncio.create_task(run())
        tasks = RUN_TASKS.get()
        if tasks is not None:
            tasks.append(task)
        return task


async def _arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The node's arguments with every upstream task's result in place of the task."""
    pending = [v for v in kwargs.values() if isinstance(v, asyncio.Future)]
    if not pending:
        return kwargs
    if len(pending) == 1:
        await pending[0]
    else:
        await asyncio.gather(*pending)  # futures already: no new task each
    return {k: v.result() if isinstance(v, asyncio.Future) else v for k, v in kwargs.items()}


def use_node_tasks(driver: AsyncDriver) -> AsyncDriver:
    """Make `driver` (built by Hamilton's async `Builder`) run its nodes through `NodeTasks`.
    The adapter keeps its state (result builder, async hooks); only its node method changes."""
    found = [a for a in driver.adapter.adapters if type(a) is AsyncGraphAdapter]
    if len(found) != 1:
        raise RuntimeError(
            f"expected one AsyncGraphAdapter in the async driver, found {len(found)}: this "
            "Hamilton version builds its async driver otherwise; pin the version in the lock."
        )
    found[0].__class__ = NodeTasks
    return driver
