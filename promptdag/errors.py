"""Every error promptdag raises on purpose. Each says what failed, the bad value, the valid
options and what to do next; each carries its data as attributes and an exit code for the CLI.

    PromptdagError                    exit 1 unless noted
    ├── ProjectError                  no promptdag project (dataflows/ + prompts/) found     exit 2
    ├── ConfigError                   build-time config is invalid (problems listed)        exit 2
    │   └── VariantError              unknown variant, or a broken variants file            exit 2
    ├── InputError                    a per-request input is wrong                          exit 3
    │   ├── ForbiddenInputError       a request tried to set a prompt node or config value
    │   ├── DocumentError             an input document cannot be read (apps subclass it)
    │   └── LimitExceededError        a cap on bytes, pages, tokens or time was hit
    │       └── WorkerLimitError      a call in a worker process passed its time or memory cap
    ├── LLMError                      the model could not answer                            exit 4
    │   ├── LLMRequestError           rejected at once (400/401/404/422): fix config or key
    │   ├── LLMUnavailableError       retries exhausted (429/5xx/timeouts)
    │   ├── LLMOutputError            the answer breaks the prompt's schema, or is not JSON
    │   ├── LLMIncompleteError        the answer was cut off (length), filtered or refused
    │   ├── LLMMalformedResponseError the server's reply is not a chat completion (HTML, bad JSON)
    │   ├── DeadlineExceededError     the whole-run deadline passed
    │   └── CacheMissError            cache mode replay-only and the request is not cached
    ├── RenderError                   a diagram could not be rendered                       exit 5
    ├── DirtyTreeError                --require-clean and the tree has uncommitted changes  exit 6
    ├── GateError                     a prompt gate could not run (git, a ref, a subprocess) exit 2
    ├── OverloadedError               a bounded queue is full or shutting down: retry later
    ├── WorkerError                   a worker process died during a call (crash, signal)
    └── TraceStoreError               the trace database cannot be opened, written or read
        ├── NoTracesError             no trace database yet                                 exit 3
        └── TraceWriterClosedError    a trace was submitted to a closed (or unstarted) writer
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "CacheMissError",
    "ConfigError",
    "DeadlineExceededError",
    "DirtyTreeError",
    "DocumentError",
    "ForbiddenInputError",
    "GateError",
    "InputError",
    "LLMError",
    "LLMIncompleteError",
    "LLMMalformedResponseError",
    "LLMOutputError",
    "LLMRequestError",
    "LLMUnavailableError",
    "LimitExceededError",
    "NoTracesError",
    "OverloadedError",
    "ProjectError",
    "PromptdagError",
    "RenderError",
    "TraceStoreError",
    "TraceWriterClosedError",
    "VariantError",
    "WorkerError",
    "WorkerLimitError",
]


def _rebuild(cls: type[PromptdagError], message: str, state: dict[str, object]) -> PromptdagError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class PromptdagError(Exception):
    """Base class: a message a user can act on, and the CLI exit code."""

    exit_code = 1

    def __reduce__(self) -> tuple[object, ...]:
        """Pickle by message and attributes (errors cross process boundaries from workers)."""
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))


class ProjectError(PromptdagError):
    exit_code = 2


class ConfigError(PromptdagError):
    """All build-time problems at once, one per line."""

    exit_code = 2

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} config problems:\n" + "\n".join(
                f"  - {p}" for p in self.problems
            )
        super().__init__(message)


class VariantError(ConfigError):
    pass


class InputError(PromptdagError):
    exit_code = 3


class ForbiddenInputError(InputError):
    def __init__(self, names: Sequence[str], allowed: Sequence[str]):
        self.names = sorted(names)
        self.allowed = sorted(allowed)
        super().__init__(
            f"request inputs may not set {', '.join(self.names)}: prompts and config are chosen "
            f"when the Driver is built. Allowed inputs: {', '.join(self.allowed)}."
        )


class DocumentError(InputError):
    """An input document (a file a request sent) cannot be read; `source` names it."""

    def __init__(self, message: str, *, source: str = ""):
        self.source = source
        super().__init__(f"{source}: {message}" if source else message)


class LimitExceededError(InputError):
    def __init__(self, limit: str, value: object, cap: object, hint: str):
        self.limit = limit
        self.value = value
        self.cap = cap
        super().__init__(f"{limit} is {value}, over the cap of {cap}. {hint}")


class WorkerLimitError(LimitExceededError):
    """A call in a worker process passed its cap: `resource` is "time" or "memory"; `ref` is
    the function (`module:function`). Its worker was killed or replaced."""

    def __init__(self, resource: str, value: object, cap: object, ref: str):
        self.resource = resource
        self.ref = ref
        super().__init__(
            f"{ref} {resource}", value, cap, "The call was stopped and its worker replaced."
        )


class OverloadedError(PromptdagError):
    """A bounded queue (`resource` names it) is full or shutting down; a server answers 503 with
    `Retry-After: retry_after`."""

    def __init__(self, message: str, *, resource: str, retry_after: int):
        self.resource = resource
        self.retry_after = retry_after
        super().__init__(message)


class WorkerError(PromptdagError):
    """A worker process died during a call (a crash in native code, a signal), or its call
    cannot travel back; `ref` is the function (`module:function`)."""

    def __init__(self, message: str, *, ref: str = ""):
        self.ref = ref
        super().__init__(message)


class LLMError(PromptdagError):
    """`step` and `index` (the item of a fan-out, e.g. the chunk) say which call failed."""

    exit_code = 4

    def __init__(
        self,
        message: str,
        *,
        backend: str = "",
        model: str = "",
        step: str = "",
        index: int | None = None,
    ):
        self.backend = backend
        self.model = model
        self.step = step
        self.index = index
        super().__init__(message)


class LLMRequestError(LLMError):
    pass


class LLMUnavailableError(LLMError):
    pass


class LLMOutputError(LLMError):
    pass


class LLMIncompleteError(LLMError):
    """The model answered, but not completely: `reason` is "length" (cut off at the output
    token cap), "content_filter" (withheld by the provider's filter) or "refusal"."""

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        backend: str = "",
        model: str = "",
        step: str = "",
        index: int | None = None,
    ):
        self.reason = reason
        super().__init__(message, backend=backend, model=model, step=step, index=index)


class LLMMalformedResponseError(LLMError):
    """The server answered 200 with something that is not a chat completion: not JSON, an HTML
    page, or JSON of another shape (a misconfigured base URL or a proxy's error page)."""


class DeadlineExceededError(LLMError):
    pass


class CacheMissError(LLMError):
    pass


class RenderError(PromptdagError):
    exit_code = 5


class DirtyTreeError(PromptdagError):
    exit_code = 6


class GateError(PromptdagError):
    """The gate could not run at all (as opposed to running and failing): exit 2."""

    exit_code = 2


class TraceStoreError(PromptdagError):
    """The trace database cannot be opened, written or read."""


class NoTracesError(TraceStoreError):
    exit_code = 3

    def __init__(self, path: Path):
        self.path = path
        super().__init__(
            f"no traces yet at {path}: run `promptdag serve` (traces are on by default) and send "
            "a request, or point --db at a trace database."
        )


class TraceWriterClosedError(TraceStoreError):
    pass
