"""The LLM layer every dataflow node calls: the openai SDK (`AsyncOpenAI`) for every backend,
a bounded work-conserving fan-out that keeps order, the response cache, a whole-run deadline,
cost estimates, and errors that name the backend, the model and the chunk.

Backends: `offline` (the embedded `offline-extractive` model, answering in-process through an
httpx transport) and `openai` (any OpenAI-compatible endpoint: OPENAI_BASE_URL, OPENAI_API_KEY).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx2
import jsonschema
import openai

from promptdag.prompting import ChatPrompt, prompt_messages, prompt_text
from promptdag.errors import (
    CacheMissError,
    ConfigError,
    DeadlineExceededError,
    LLMError,
    LLMOutputError,
    LLMRequestError,
    LLMUnavailableError,
    PromptdagError,
)
from promptdag.llm.cache import ResponseCache, request_key

__all__ = [
    "CALL_LISTENERS",
    "LLM",
    "LLMCall",
    "LLMSettings",
    "RunState",
    "current_run",
    "run_scope",
]

_REJECTED_HINTS = {
    400: "Check the request parameters (llm_max_output_tokens, llm_temperature) for this model.",
    401: "Check OPENAI_API_KEY.",
    403: "Check that the key may use this model.",
    404: "Check llm_model and OPENAI_BASE_URL.",
    422: "Check the request parameters for this server.",
}


@dataclass(frozen=True)
class LLMSettings:
    """Build-time LLM config (from the driver factory)."""

    backend: str
    model: str
    temperature: float
    max_output_tokens: int
    timeout_s: float
    max_retries: int
    max_concurrency: int
    base_url: str = ""


@dataclass(frozen=True)
class LLMCall:
    """One answered LLM call, as the dataflow and the traces see it."""

    step: str
    index: int | None
    model: str
    text: str
    finish_reason: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    latency_s: float
    cached: bool
    attempts: int
    request_key: str
    prompt: str = field(default="", repr=False)
    parsed: Any = field(default=None, repr=False)

    def record(self) -> dict[str, Any]:
        """The call's metadata without the prompt and response texts."""
        out = asdict(self)
        for key in ("text", "prompt", "parsed"):
            out.pop(key)
        return out


@dataclass
class RunState:
    """Per-run state shared by the run's tasks: the deadline and the step running now."""

    deadline: float | None = None
    step: str = ""
    attempts: list[int] = field(default_factory=list)
    calls: list[LLMCall] = field(default_factory=list)


_RUN: contextvars.ContextVar[RunState | None] = contextvars.ContextVar(
    "promptdag_run", default=None
)
_ATTEMPTS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "promptdag_attempts", default=None
)


# Called with every LLMCall as it completes (the CLI's progress display); process-wide.
CALL_LISTENERS: list[Callable[[LLMCall], None]] = []


def current_run() -> RunState | None:
    return _RUN.get()


@contextlib.contextmanager
def run_scope(deadline_s: float | None) -> Iterator[RunState]:
    """Everything called inside shares one deadline, `deadline_s` seconds from now, and records
    its LLM calls."""
    state = RunState(deadline=None if deadline_s is None else time.monotonic() + deadline_s)
    token = _RUN.set(state)
    try:
        yield state
    finally:
        _RUN.reset(token)


async def _count_attempt(request: httpx2.Request) -> None:
    attempts = _ATTEMPTS.get()
    if attempts is not None:
        attempts[0] += 1


def _http_client(backend: str) -> httpx2.AsyncClient:
    hooks = {"request": [_count_attempt]}
    if backend == "offline":
        from promptdag.llm.offline import OfflineTransport

        return httpx2.AsyncClient(transport=OfflineTransport(), event_hooks=hooks)
    return openai.DefaultAsyncHttpxClient(event_hooks=hooks)


def make_openai_client(settings: LLMSettings, api_key: str) -> openai.AsyncOpenAI:
    """The SDK client for `settings`: the offline transport, or a real endpoint."""
    base_url = "http://offline.invalid/v1" if settings.backend == "offline" else settings.base_url
    return openai.AsyncOpenAI(
        api_key=api_key or "offline",
        base_url=base_url or None,
        max_retries=settings.max_retries,
        timeout=settings.timeout_s,
        http_client=_http_client(settings.backend),
    )


class LLM:
    """Chat completions with caching, bounded concurrency, deadlines and typed errors."""

    def __init__(
        self,
        settings: LLMSettings,
        client: openai.AsyncOpenAI,
        *,
        cache: ResponseCache | None = None,
        prices: Mapping[str, Sequence[float]] | None = None,
    ):
        self.settings = settings
        self.client = client
        self.cache = cache if cache is not None and cache.mode != "off" else None
        self.prices = dict(prices or {})
        self.node: str | None = None  # set on a view bound to one node of a run
        self.bound_step: str | None = None
        self.declared: tuple[str, ...] = ()

    def bound(self, node: str, step: str | None, declared: Sequence[str]) -> LLM:
        """A view of this client for one node: its calls carry the node's declared step; a node
        with no declared step may not call the model. Shares the client, cache and prices."""
        view = copy.copy(self)
        view.node, view.bound_step, view.declared = node, step, tuple(sorted(declared))
        return view

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        price = self.prices.get(model) or self.prices.get(self.settings.model)
        if price is None:
            return None
        return round((input_tokens * price[0] + output_tokens * price[1]) / 1_000_000, 8)

    def _request(self, prompt: str | ChatPrompt) -> dict[str, Any]:
        request = {
            "backend": self.settings.backend,
            "base_url": self.settings.base_url,
            "model": self.settings.model,
            "messages": prompt_messages(prompt),
            "temperature": self.settings.temperature,
            "max_tokens": self.settings.max_output_tokens,
        }
        if isinstance(prompt, ChatPrompt) and prompt.schema is not None:
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": prompt.schema_name,
                    "schema": prompt.schema,
                    "strict": True,
                },
            }
        return request

    def _step(self, step: str | None) -> str:
        """The declared step of the node this view is bound to; a node the contract does not
        declare as an LLM step may not call the model (its calls would be untraceable to a
        prompt). Unbound (used outside a pipeline run): `step`, else "llm"."""
        if self.node is None:
            return step or "llm"
        if self.bound_step is None:
            raise ConfigError(
                [
                    f"node {self.node!r} called the LLM but [tool.promptdag.llm_steps] declares no "
                    f"step for it. Declared LLM nodes: {', '.join(self.declared) or 'none'}. Add "
                    f'[tool.promptdag.llm_steps.NAME] with node = "{self.node}" and its prompt node.'
                ]
            )
        return self.bound_step

    def _remaining(self, step: str) -> float:
        run = _RUN.get()
        if run is None or run.deadline is None:
            return self.settings.timeout_s
        run.step = step
        left = run.deadline - time.monotonic()
        if left <= 0:
            raise self._deadline_error(
                step, f"the run's deadline passed before step {step} could call the model."
            )
        return min(self.settings.timeout_s, left)

    async def complete(
        self, prompt: str | ChatPrompt, *, step: str | None = None, index: int | None = None
    ) -> LLMCall:
        """One chat completion for `prompt` (text, or a ChatPrompt with roles and an optional
        answer schema), from the cache when allowed. The step is the calling node's declared one."""
        step = self._step(step)
        call = await self._complete(prompt, step, index)
        run = _RUN.get()
        if run is not None:
            run.calls.append(call)
        for listener in CALL_LISTENERS:
            listener(call)
        return call

    async def _complete(self, prompt: str | ChatPrompt, step: str, index: int | None) -> LLMCall:
        request = self._request(prompt)
        key = request_key(request)
        started = time.perf_counter()
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return self._call(
                    step, index, key, hit, started, cached=True, attempts=0, prompt=prompt
                )
            if self.cache.mode == "replay-only":
                raise CacheMissError(
                    f"llm_cache=replay-only and the {step} request"
                    f"{'' if index is None else f' for chunk {index}'} is not in the response cache "
                    f"({self.cache.path}). Record it first with --config llm_cache=use.",
                    backend=self.settings.backend,
                    model=self.settings.model,
                    step=step,
                )
        response, attempts = await self._send(request, step, index)
        call = self._call(
            step, index, key, response, started, cached=False, attempts=attempts, prompt=prompt
        )
        if self.cache is not None:
            self.cache.put(key, request, response)
        return call

    async def _send(
        self, request: dict[str, Any], step: str, index: int | None
    ) -> tuple[dict[str, Any], int]:
        timeout = self._remaining(step)
        run = _RUN.get()
        deadline = None if run is None else run.deadline
        attempts = [0]
        token = _ATTEMPTS.set(attempts)
        try:
            # The SDK retries (and sleeps for retry-after) inside this call: the run's deadline
            # bounds all of it, not only each attempt.
            async with asyncio.timeout(None if deadline is None else deadline - time.monotonic()):
                extra = (
                    {"response_format": request["response_format"]}
                    if "response_format" in request
                    else {}
                )
                completion = await self.client.chat.completions.create(
                    model=request["model"],
                    messages=request["messages"],
                    temperature=request["temperature"],
                    max_tokens=request["max_tokens"],
                    timeout=timeout,
                    **extra,
                )
        except TimeoutError as exc:
            raise self._deadline_passed(step, index, attempts[0]) from exc
        except openai.APIStatusError as exc:
            raise self._status_error(exc, step, index, attempts[0]) from exc
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            if deadline is not None and time.monotonic() >= deadline:
                raise self._deadline_passed(step, index, attempts[0]) from exc
            raise self._unavailable(
                f"{type(exc).__name__}: {exc}", step, index, attempts[0]
            ) from exc
        finally:
            _ATTEMPTS.reset(token)
        choice = completion.choices[0] if completion.choices else None
        usage = completion.usage
        return {
            "model": completion.model or request["model"],
            "text": (choice.message.content or "") if choice else "",
            "finish_reason": (choice.finish_reason or "") if choice else "",
            "input_tokens": usage.prompt_tokens if usage else 0,
            "output_tokens": usage.completion_tokens if usage else 0,
        }, attempts[0]

    def _redact(self, text: str) -> str:
        """Servers and proxies may echo the key back in an error: never pass it on."""
        key = self.client.api_key
        return text.replace(key, "<OPENAI_API_KEY>") if isinstance(key, str) and key else text

    def _deadline_passed(self, step: str, index: int | None, attempts: int) -> LLMError:
        return self._deadline_error(
            step,
            f"{self._where(step, index)}: the run's deadline passed after {max(attempts, 1)} attempt(s).",
        )

    def _deadline_error(self, step: str, what: str) -> DeadlineExceededError:
        return DeadlineExceededError(
            f"{what} Raise llm_deadline_s, or send a shorter document.",
            backend=self.settings.backend,
            model=self.settings.model,
            step=step,
        )

    def _where(self, step: str, index: int | None) -> str:
        chunk = "" if index is None else f" (chunk {index})"
        return f"{step}{chunk}: {self.settings.backend} backend, model {self.settings.model}"

    def _status_error(
        self, exc: openai.APIStatusError, step: str, index: int | None, attempts: int
    ) -> LLMError:
        status = exc.status_code
        if status in _REJECTED_HINTS:
            return LLMRequestError(
                f"{self._where(step, index)} rejected the request ({status}): {self._redact(exc.message)} "
                f"{_REJECTED_HINTS[status]}",
                backend=self.settings.backend,
                model=self.settings.model,
                step=step,
            )
        return self._unavailable(
            f"HTTP {status}: {self._redact(exc.message)}", step, index, attempts
        )

    def _unavailable(self, what: str, step: str, index: int | None, attempts: int) -> LLMError:
        return LLMUnavailableError(
            f"{self._where(step, index)} failed after {max(attempts, 1)} attempt(s): {what}. "
            "The provider is overloaded or unreachable; retry later or raise llm_max_retries.",
            backend=self.settings.backend,
            model=self.settings.model,
            step=step,
        )

    def _call(
        self,
        step: str,
        index: int | None,
        key: str,
        r: dict[str, Any],
        started: float,
        *,
        cached: bool,
        attempts: int,
        prompt: str | ChatPrompt,
    ) -> LLMCall:
        parsed = None
        if isinstance(prompt, ChatPrompt) and prompt.schema is not None:
            parsed = self._parse(r["text"], prompt.schema, step, index)
        return LLMCall(
            step=step,
            index=index,
            model=r["model"],
            text=r["text"],
            finish_reason=r["finish_reason"],
            input_tokens=r["input_tokens"],
            output_tokens=r["output_tokens"],
            cost_usd=0.0
            if cached
            else self.cost(r["model"], r["input_tokens"], r["output_tokens"]),
            latency_s=round(time.perf_counter() - started, 6),
            cached=cached,
            attempts=attempts,
            request_key=key,
            prompt=prompt_text(prompt),
            parsed=parsed,
        )

    def _parse(self, text: str, schema: dict[str, Any], step: str, index: int | None) -> Any:
        """The structured answer, parsed and validated against the prompt's schema."""
        try:
            value = json.loads(text)
            jsonschema.validate(value, schema)
        except json.JSONDecodeError as exc:
            what = f"the answer is not JSON ({exc.msg} at character {exc.pos})"
        except jsonschema.ValidationError as exc:
            where = "/".join(map(str, exc.absolute_path)) or "the top level"
            what = f"the answer does not match the prompt's schema at {where}: {exc.message}"
        else:
            return value
        raise LLMOutputError(
            f"{self._where(step, index)}: {what}. Retry, or try another model or prompt version.",
            backend=self.settings.backend,
            model=self.settings.model,
            step=step,
        )

    async def complete_all(
        self, prompts: Sequence[str | ChatPrompt], *, step: str | None = None
    ) -> list[LLMCall]:
        """One call per prompt, at most `max_concurrency` at once (a new call starts as soon as
        one ends), results in prompt order; the first failure cancels the rest and is raised."""
        gate = asyncio.Semaphore(max(1, self.settings.max_concurrency))
        step = self._step(step)

        async def one(i: int, prompt: str | ChatPrompt) -> LLMCall:
            async with gate:
                return await self.complete(prompt, step=step, index=i)

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(i, p)) for i, p in enumerate(prompts)]
        except BaseExceptionGroup as eg:
            raise _first_error(eg) from None
        return [t.result() for t in tasks]

    async def aclose(self) -> None:
        await self.client.close()


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The most useful error of a failed fan-out: ours first, else the first one."""
    flat: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        e = stack.pop(0)
        if isinstance(e, BaseExceptionGroup):
            stack.extend(e.exceptions)
        else:
            flat.append(e)
    ours = [e for e in flat if isinstance(e, PromptdagError)]
    return (ours or flat)[0]
