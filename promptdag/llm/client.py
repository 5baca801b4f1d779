"""The LLM layer every dataflow node calls: the openai SDK (`AsyncOpenAI`) for every backend,
a bounded work-conserving fan-out that keeps order, the response cache, a whole-run deadline,
cost estimates, and errors that name the backend, the model and the chunk.

Backends: `offline` (the embedded `offline-extractive` model, answering in-process through an
httpx transport) and `openai` (any OpenAI-compatible endpoint: OPENAI_BASE_URL, OPENAI_API_KEY).

Honest answers: the SDK returns a cut-off (`finish_reason` "length"), filtered
("content_filter") or refused (`message.refusal`) answer as a normal completion, and a 200 whose
body is not a chat completion (HTML, bad JSON) as a `str` or a `json.JSONDecodeError`. Every
response is checked: the first three raise LLMIncompleteError unless `allow_incomplete`
(config `llm_allow_incomplete`), which returns them with `LLMCall.incomplete`; the others raise
LLMMalformedResponseError. Incomplete answers are never cached.

The run's record: every call attempted inside a `run_scope` is appended to `RunState.calls`,
answered or not: a call that failed after reaching the server (an HTTP error after its retries,
a malformed or incomplete answer, a cancellation when a sibling of its fan-out failed) is
recorded with its attempts, the tokens and cost it was billed (when the server said), and
`error_type`/`error_message`. The trace adapter stores that record, so a failed run's trace has
its real calls and cost.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

import jsonschema

if TYPE_CHECKING:  # the SDK (about a second of imports) loads when the first client is made
    import httpx2
    import openai

from promptdag.errors import (
    CacheMissError,
    ConfigError,
    DeadlineExceededError,
    LLMError,
    LLMIncompleteError,
    LLMMalformedResponseError,
    LLMOutputError,
    LLMRequestError,
    LLMUnavailableError,
    PromptdagError,
)
from promptdag.llm.cache import ResponseCache, cache_key, current_namespace, incomplete_reason
from promptdag.prompting import ChatPrompt, prompt_messages, prompt_text
from promptdag.redaction import redact_url, redact_urls
from promptdag.tracing.context import current_request

__all__ = [
    "CALL_LISTENERS",
    "HTTP_CLIENTS",
    "LLM",
    "CallLimiter",
    "LLMCall",
    "LLMSettings",
    "RunState",
    "aiohttp_installed",
    "current_run",
    "resolve_http_client",
    "run_scope",
]

# The request fields sent to the provider (the rest of a request is promptdag's own key).
_BODY_KEYS = ("model", "messages", "temperature", "max_tokens", "response_format")
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
    base_url: str = field(default="", repr=False)  # may hold credentials: never printed
    allow_incomplete: bool = False  # return cut-off/filtered/refused answers, flagged
    http_client: str = "httpx"  # "httpx" or "aiohttp" (real endpoints only; see HTTP_CLIENTS)


@dataclass(frozen=True)
class LLMCall:
    """One LLM call, as the dataflow and the traces see it. A node only ever receives answered
    calls (`incomplete` only under `allow_incomplete`); the run's record (`RunState.calls`) also
    holds failed ones, with `error_type` and `error_message`."""

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
    node: str = ""  # the dataflow node that made the call ("" outside a pipeline run)
    incomplete: bool = False  # cut off, filtered or refused, and allowed by allow_incomplete
    refusal: str | None = field(default=None, repr=False)  # the model's refusal message
    error_type: str | None = None  # set on a failed call (only in the run's record)
    error_message: str | None = None
    finished_ts: float = 0.0  # wall-clock time the call ended

    @property
    def ok(self) -> bool:
        return self.error_type is None

    def record(self) -> dict[str, Any]:
        """The call's metadata without the prompt and response texts."""
        out = asdict(self)
        for key in ("text", "prompt", "parsed", "refusal"):
            out.pop(key)
        return out


@dataclass
class _Pending:
    """One call in progress: its attempts (counted by the HTTP hook) and, once the server has
    answered, the answer as a call (so a failure after that is recorded with its tokens)."""

    started: float = field(default_factory=time.perf_counter)
    key: str = ""
    attempts: list[int] = field(default_factory=lambda: [0])
    answered: LLMCall | None = None


@dataclass
class RunState:
    """Per-run state shared by the run's tasks: the deadline, the step running now, and every
    LLM call attempted (answered or failed), in the order they ended."""

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


class CallLimiter(Protocol):
    """Admits each request sent to the provider (cache hits are not sent): limits shared by many
    processes, such as a batch's rate and concurrency limits. `async with limiter.hold(request)
    as settle:` waits for a slot; `settle(input_tokens, output_tokens)` reports the usage."""

    def hold(
        self, request: Mapping[str, Any]
    ) -> contextlib.AbstractAsyncContextManager[Callable[[int, int], None]]: ...


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


# The SDK's HTTP stacks for real endpoints: httpx2 (its default) or aiohttp through the SDK's
# `DefaultAioHttpClient` (`openai[aiohttp]`), which costs less CPU per call (no per-request walk
# of the connection pool). "auto" is aiohttp when installed, else httpx. The offline model always
# answers through its httpx2 transport.
HTTP_CLIENTS = ("auto", "aiohttp", "httpx")


def aiohttp_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("aiohttp") is not None


def resolve_http_client(kind: str) -> str:
    """ "httpx" or "aiohttp" for a configured `kind` (one of HTTP_CLIENTS)."""
    if kind not in HTTP_CLIENTS:
        raise ConfigError(
            [f"LLM HTTP client {kind!r} is not known. Use one of: {', '.join(HTTP_CLIENTS)}."]
        )
    if kind == "auto":
        return "aiohttp" if aiohttp_installed() else "httpx"
    if kind == "aiohttp" and not aiohttp_installed():
        raise ConfigError(
            [
                "the aiohttp LLM HTTP client needs aiohttp: pip install 'promptdag[serve]', or use httpx."
            ]
        )
    return kind


def _http_client(backend: str, kind: str = "httpx") -> httpx2.AsyncClient:
    import httpx2
    import openai

    hooks = {"request": [_count_attempt]}
    if backend == "offline":
        from promptdag.llm.offline import OfflineTransport

        return httpx2.AsyncClient(transport=OfflineTransport(), event_hooks=hooks)
    if resolve_http_client(kind) == "aiohttp":
        return openai.DefaultAioHttpClient(event_hooks=hooks)
    return openai.DefaultAsyncHttpxClient(event_hooks=hooks)


def make_openai_client(settings: LLMSettings, api_key: str) -> openai.AsyncOpenAI:
    """The SDK client for `settings`: the offline transport, or a real endpoint."""
    import openai

    base_url = "http://offline.invalid/v1" if settings.backend == "offline" else settings.base_url
    return openai.AsyncOpenAI(
        api_key=api_key or "offline",
        base_url=base_url or None,
        max_retries=settings.max_retries,
        timeout=settings.timeout_s,
        http_client=_http_client(settings.backend, settings.http_client),
    )


class _SharedClient:
    """The SDK client of an LLM and of all its node views: made on first use (a pipeline that
    is only built, checked or rendered never imports the SDK), once, whichever view asks."""

    def __init__(self, make: Callable[[], openai.AsyncOpenAI]):
        self.make = make
        self.value: openai.AsyncOpenAI | None = None
        self._lock = threading.Lock()

    def get(self) -> openai.AsyncOpenAI:
        value = self.value
        if value is None:
            with self._lock:
                if self.value is None:
                    self.value = self.make()
                value = self.value
        return value


class LLM:
    """Chat completions with caching, bounded concurrency, deadlines and typed errors."""

    def __init__(
        self,
        settings: LLMSettings,
        client: openai.AsyncOpenAI | Callable[[], openai.AsyncOpenAI],
        *,
        cache: ResponseCache | None = None,
        prices: Mapping[str, Sequence[float]] | None = None,
    ):
        """`client`: the SDK client, or a function that makes it when a call first needs it."""
        self.settings = settings
        self._client = _SharedClient(client if callable(client) else lambda: client)
        self.cache = cache if cache is not None and cache.mode != "off" else None
        self.prices = dict(prices or {})
        self.limiter: CallLimiter | None = None  # set by whoever shares limits (batch runs)
        self.node: str | None = None  # set on a view bound to one node of a run
        self.bound_step: str | None = None
        self.declared: tuple[str, ...] = ()

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The SDK client, made now if no call has needed it yet."""
        return self._client.get()

    @client.setter
    def client(self, value: openai.AsyncOpenAI) -> None:
        self._client.value = value

    async def use_http_client(self, kind: str) -> None:
        """Talk to a real endpoint through the HTTP stack `kind` (one of HTTP_CLIENTS) from now
        on: a new SDK client with the same key, endpoint, retries and timeout. Call it before
        the first run, from the event loop that makes the calls (an aiohttp session belongs to
        one loop). The offline backend keeps its transport."""
        if self.settings.backend == "offline":
            return
        settings = replace(self.settings, http_client=resolve_http_client(kind))
        if settings.http_client == self.settings.http_client:
            return
        import openai

        old = self.client
        self.client = openai.AsyncOpenAI(
            api_key=old.api_key,
            base_url=old.base_url,
            max_retries=settings.max_retries,
            timeout=settings.timeout_s,
            http_client=_http_client(settings.backend, settings.http_client),
        )
        self.settings = settings
        await old.close()

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
            "base_url": redact_url(self.settings.base_url),
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
        pending = _Pending()
        try:
            call = await self._complete(prompt, step, index, pending)
        except BaseException as exc:
            failed = self._failed_call(pending, prompt, step, index, exc)
            if failed is not None:
                _record(failed)
            raise
        _record(call)
        for listener in CALL_LISTENERS:
            listener(call)
        return call

    async def _complete(
        self, prompt: str | ChatPrompt, step: str, index: int | None, pending: _Pending
    ) -> LLMCall:
        request = self._request(prompt)
        ctx = current_request()
        # Per tenant: an explicit cache_namespace, else the API key id of the request.
        namespace = current_namespace() or (None if ctx is None else ctx.key_id)
        key = pending.key = cache_key(request, namespace)
        started = pending.started
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                pending.answered = self._call(
                    step, index, key, hit, started, cached=True, attempts=0, prompt=prompt
                )
                return self._checked(pending.answered, prompt)
            if self.cache.mode == "replay-only":
                raise CacheMissError(
                    f"llm_cache=replay-only and the {step} request"
                    f"{'' if index is None else f' for chunk {index}'} is not in the response cache "
                    f"({self.cache.path}). Record it first with --config llm_cache=use.",
                    backend=self.settings.backend,
                    model=self.settings.model,
                    step=step,
                    index=index,
                )
        if self.limiter is None:
            response = await self._send(request, step, index, pending.attempts)
        else:
            async with self.limiter.hold(request) as settle:
                response = await self._send(request, step, index, pending.attempts)
                settle(response["input_tokens"], response["output_tokens"])
        pending.answered = self._call(
            step,
            index,
            key,
            response,
            started,
            cached=False,
            attempts=pending.attempts[0],
            prompt=prompt,
        )
        call = self._checked(pending.answered, prompt)
        if self.cache is not None and not call.incomplete:
            self.cache.put(
                key,
                request,
                response,
                namespace=namespace,
                subject=None if ctx is None else ctx.subject_id,
            )
        return call

    def _failed_call(
        self,
        pending: _Pending,
        prompt: str | ChatPrompt,
        step: str,
        index: int | None,
        exc: BaseException,
    ) -> LLMCall | None:
        """The record of a call that failed after reaching the server (or the cache): its
        answer's tokens and cost if there was one, else none, with its attempts and error.
        None for a call that never left (a cache miss in replay-only, a deadline already past)."""
        if pending.answered is None and pending.attempts[0] == 0:
            return None
        if isinstance(exc, asyncio.CancelledError):
            message = "cancelled: another call of the run failed, or the run was stopped"
        elif isinstance(exc, PromptdagError):
            message = str(exc)
        else:
            message = self._redact(f"{type(exc).__name__}: {exc}")
        base = pending.answered or LLMCall(
            step=step,
            index=index,
            model=self.settings.model,
            text="",
            finish_reason="",
            input_tokens=0,
            output_tokens=0,
            cost_usd=self.cost(self.settings.model, 0, 0),
            latency_s=round(time.perf_counter() - pending.started, 6),
            cached=False,
            attempts=pending.attempts[0],
            request_key=pending.key,
            prompt=prompt_text(prompt),
            node=self.node or "",
            finished_ts=time.time(),
        )
        return replace(base, parsed=None, error_type=type(exc).__name__, error_message=message)

    def _checked(self, call: LLMCall, prompt: str | ChatPrompt) -> LLMCall:
        """`call` if its answer is complete (flagged `incomplete` if not and that is allowed),
        with its structured answer parsed; else LLMIncompleteError or LLMOutputError."""
        reason = incomplete_reason({"finish_reason": call.finish_reason, "refusal": call.refusal})
        if reason is not None:
            if not self.settings.allow_incomplete:
                raise self._incomplete_error(call, reason, "")
            call = replace(call, incomplete=True)
        if isinstance(prompt, ChatPrompt) and prompt.schema is not None:
            try:
                parsed = self._parse(call.text, prompt.schema, call.step, call.index)
            except LLMOutputError as exc:
                if reason is None:
                    raise
                raise self._incomplete_error(
                    call,
                    reason,
                    " What came back cannot be parsed as the prompt's structured answer, so "
                    "llm_allow_incomplete cannot return it either.",
                ) from exc
            call = replace(call, parsed=parsed)
        return call

    def _incomplete_error(self, call: LLMCall, reason: str, extra: str) -> LLMIncompleteError:
        where = self._where(call.step, call.index)
        allow = "or set llm_allow_incomplete=true to get such answers flagged incomplete."
        if reason == "length":
            what = (
                f"the answer was cut off at llm_max_output_tokens={self.settings.max_output_tokens} "
                f"(finish_reason=length, {call.output_tokens} output tokens). Raise "
                f"llm_max_output_tokens, send smaller items (e.g. smaller chunks), {allow}"
            )
        elif reason == "content_filter":
            what = (
                "the provider's content filter withheld the answer (finish_reason=content_filter). "
                f"Check the input for content this provider blocks, try another model, {allow}"
            )
        else:
            refusal = " ".join((call.refusal or "").split())
            shown = refusal if len(refusal) <= 160 else refusal[:157] + "..."
            what = (
                f"the model refused to answer ({shown!r}). Check the input and the prompt "
                f"version, try another model, {allow}"
            )
        return LLMIncompleteError(
            f"{where}: {what}{extra}",
            reason=reason,
            backend=self.settings.backend,
            model=self.settings.model,
            step=call.step,
            index=call.index,
        )

    async def _send(
        self, request: dict[str, Any], step: str, index: int | None, attempts: list[int]
    ) -> dict[str, Any]:
        timeout = self._remaining(step)
        run = _RUN.get()
        deadline = None if run is None else run.deadline
        token = _ATTEMPTS.set(attempts)
        import openai  # loaded with the client, above

        try:
            # The SDK retries (and sleeps for retry-after) inside this call: the run's deadline
            # bounds all of it, not only each attempt.
            async with asyncio.timeout(None if deadline is None else deadline - time.monotonic()):
                # `client.post` with the body as plain JSON and `cast_to=object`: the same
                # request, retries and errors as `chat.completions.create`, without the SDK's
                # typed transform of the body and pydantic model of the answer (about half
                # of the SDK's CPU per call); `_response` checks the answer itself.
                completion = await self.client.post(
                    "/chat/completions",
                    body={k: request[k] for k in _BODY_KEYS if k in request},
                    cast_to=object,
                    options={"timeout": timeout},
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
        except json.JSONDecodeError as exc:  # a 200 whose body is not JSON
            raise self._malformed(
                f"the body is not JSON ({exc.msg} at character {exc.pos})", step, index
            ) from exc
        except openai.APIResponseValidationError as exc:
            raise self._malformed(
                f"the body has the wrong shape ({exc.message})", step, index
            ) from exc
        finally:
            _ATTEMPTS.reset(token)
        return self._response(completion, request, step, index)

    def _response(
        self, completion: Any, request: dict[str, Any], step: str, index: int | None
    ) -> dict[str, Any]:
        """The parts of a chat completion promptdag uses, checked: the SDK hands back the
        decoded JSON as it is (any JSON value), or a str for a body that is not JSON."""
        if not isinstance(completion, dict):
            raise self._malformed(_describe_body(completion), step, index)
        try:
            choice = completion["choices"][0]
            message = choice["message"]
            content, refusal = message.get("content"), message.get("refusal")
            finish = choice.get("finish_reason")
            usage = completion.get("usage")
            tokens = (
                (0, 0)
                if usage is None
                else (usage.get("prompt_tokens"), usage.get("completion_tokens"))
            )
        except (AttributeError, IndexError, KeyError, TypeError) as exc:
            what = f"the body is JSON of another shape ({type(exc).__name__}: {exc})"
            raise self._malformed(what, step, index) from exc
        problems = [
            name
            for name, value, kinds in (
                ("message.content", content, (str, type(None))),
                ("message.refusal", refusal, (str, type(None))),
                ("finish_reason", finish, (str, type(None))),
                ("usage.prompt_tokens", tokens[0], (int, type(None))),
                ("usage.completion_tokens", tokens[1], (int, type(None))),
            )
            if not isinstance(value, kinds) or isinstance(value, bool)
        ]
        if content is None and not refusal and finish not in ("length", "content_filter"):
            problems.append("message.content (missing)")
        if problems:
            what = f"these fields are invalid: {', '.join(problems)}"
            raise self._malformed(what, step, index)
        model = completion.get("model")
        return {
            "model": model if isinstance(model, str) and model else request["model"],
            "text": content or "",
            "finish_reason": finish or "",
            "refusal": refusal or None,
            "input_tokens": tokens[0] or 0,
            "output_tokens": tokens[1] or 0,
        }

    def _malformed(self, what: str, step: str, index: int | None) -> LLMMalformedResponseError:
        return LLMMalformedResponseError(
            f"{self._where(step, index)}: the response is not a chat completion: "
            f"{self._redact(what)}. Check that llm_base_url (or OPENAI_BASE_URL) is the server's "
            "OpenAI-compatible /v1 endpoint (a proxy, gateway or login page answers HTML), "
            "or retry if the server is flaky.",
            backend=self.settings.backend,
            model=self.settings.model,
            step=step,
            index=index,
        )

    def _redact(self, text: str) -> str:
        """Servers and proxies may echo the key (or a URL with credentials) back in an error:
        never pass them on."""
        key = self.client.api_key
        text = text.replace(key, "<OPENAI_API_KEY>") if isinstance(key, str) and key else text
        return redact_urls(text)

    def _deadline_passed(self, step: str, index: int | None, attempts: int) -> LLMError:
        return self._deadline_error(
            step,
            f"{self._where(step, index)}: the run's deadline passed after {max(attempts, 1)} attempt(s).",
            index,
        )

    def _deadline_error(
        self, step: str, what: str, index: int | None = None
    ) -> DeadlineExceededError:
        return DeadlineExceededError(
            f"{what} Raise llm_deadline_s, or send a shorter document.",
            backend=self.settings.backend,
            model=self.settings.model,
            step=step,
            index=index,
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
                index=index,
            )
        return self._unavailable(
            f"HTTP {status}: {self._redact(exc.message)}", step, index, attempts
        )

    def _unavailable(self, what: str, step: str, index: int | None, attempts: int) -> LLMError:
        return LLMUnavailableError(
            f"{self._where(step, index)} failed after {max(attempts, 1)} attempt(s): "
            f"{self._redact(what)}. "
            "The provider is overloaded or unreachable; retry later or raise llm_max_retries.",
            backend=self.settings.backend,
            model=self.settings.model,
            step=step,
            index=index,
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
        """The answer `r` (from the server or the cache) as a call; not checked yet."""
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
            node=self.node or "",
            refusal=r.get("refusal") or None,
            finished_ts=time.time(),
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
            index=index,
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
        if self._client.value is not None:  # never made: nothing to close
            await self._client.value.close()


def _record(call: LLMCall) -> None:
    """Add `call` to the record of the run in progress, if any."""
    run = _RUN.get()
    if run is not None:
        run.calls.append(call)


def _describe_body(body: Any) -> str:
    """What a non-completion body is, for an error message: its kind and its first characters."""
    if isinstance(body, str):
        start = " ".join(body[:300].split())
        lowered = start.lower()
        kind = (
            "an HTML page"
            if lowered.startswith(("<!doctype", "<html", "<head", "<body")) or "<html" in lowered
            else "a text body"
        )
        shown = start[:80] + ("..." if len(start) > 80 else "")
        return f"the body is {kind} ({shown!r})" if shown else "the body is empty"
    return f"the body is a JSON {type(body).__name__}"


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
