"""The project contract: what a project declares in `[tool.promptdag]` of its `pyproject.toml`.

Every command and the library read it; nothing in promptdag knows an application's nodes.

    [tool.promptdag]
    dataflows = ["dataflows"]            # packages or modules holding Hamilton functions
    prompts = "prompts"                  # the package whose modules are prompt packs
    variants = "prompts/variants.toml"   # named variants (default: that path)
    fixtures = "prompts/fixtures.toml"   # inputs every prompt version is rendered on
    suites = "ci/evals/suites"           # eval suites (*.toml)
    default_pipeline = "triage"          # optional when there is one pipeline

    [tool.promptdag.config.max_reply_words]       # app config: build-time, per variant
    default = 120
    min = 10
    max = 1000

    [tool.promptdag.llm_steps.classify]           # the node calling the LLM, and its prompt
    node = "classification_response"
    prompt = "classification_prompt"
    rendered = "classification_requests"          # optional: per-item rendered prompts

    [tool.promptdag.pipelines.triage]
    outputs = ["classification", "reply"]
    answer = "reply"                              # what `run` prints and evals check
    file_input = "attachment"                     # a positional file binds here
    one_of = [["ticket", "attachment"]]           # exactly one of these per run

    [tool.promptdag.pipelines.triage.inputs.attachment]
    kind = "file"                                 # file | text | string | number | integer | boolean
    media_types = ["text/plain"]
    max_bytes = 1048576
    filename_input = "attachment_name"

Unknown keys and broken references are one ConfigError listing every problem and what exists.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptdag.errors import ConfigError, ProjectError

__all__ = [
    "CONTRACT_FILE",
    "INPUT_KINDS",
    "ConfigKey",
    "Contract",
    "InputSpec",
    "LLMStep",
    "PipelineSpec",
    "load_contract",
]

CONTRACT_FILE = "pyproject.toml"
INPUT_KINDS = ("file", "text", "string", "number", "integer", "boolean")
_TOP_KEYS = {
    "dataflows",
    "prompts",
    "variants",
    "fixtures",
    "suites",
    "default_pipeline",
    "config",
    "llm_steps",
    "pipelines",
}
_INPUT_KEYS = {
    "kind",
    "description",
    "required",
    "default",
    "media_types",
    "max_bytes",
    "max_chars",
    "min",
    "max",
    "suffixes",
    "filename_input",
    "secret",
    "forbidden_chars",
}
_PIPELINE_KEYS = {"description", "outputs", "answer", "file_input", "one_of", "inputs", "notes"}
_CONFIG_KEYS = {"default", "min", "max", "choices", "description"}
_STEP_KEYS = {"node", "prompt", "rendered"}
_DEFAULT_MAX_CHARS = 1_000_000


@dataclass(frozen=True)
class InputSpec:
    """One per-request input of a pipeline: its kind, whether it is required, and its caps."""

    name: str
    kind: str
    description: str = ""
    required: bool = True
    default: Any = None
    media_types: tuple[str, ...] = ()
    max_bytes: int | None = None
    max_chars: int | None = None
    min: float | None = None
    max: float | None = None
    suffixes: tuple[str, ...] = ()
    filename_input: str | None = None
    secret: bool = False
    forbidden_chars: str = ""

    @property
    def is_file(self) -> bool:
        return self.kind == "file"


@dataclass(frozen=True)
class PipelineSpec:
    """A named pipeline: the outputs it returns, its answer, and the inputs a request may set."""

    name: str
    outputs: tuple[str, ...]
    answer: str
    inputs: dict[str, InputSpec]
    description: str = ""
    file_input: str | None = None
    one_of: tuple[tuple[str, ...], ...] = ()
    notes: str | None = None

    @property
    def final_vars(self) -> list[str]:
        """What the Driver computes for one run: the outputs, the answer and the notes."""
        extra = [self.answer, *([self.notes] if self.notes else [])]
        return list(dict.fromkeys([*self.outputs, *extra]))

    def file_input_for(self, path: Path) -> InputSpec:
        """The input a file at `path` binds to: the one whose `suffixes` match, else
        `file_input`; a ConfigError naming both when there is none."""
        suffix = path.suffix.lower()
        for spec in self.inputs.values():
            if suffix and suffix in spec.suffixes:
                return spec
        if self.file_input is None:
            raise ConfigError(
                [
                    f"pipeline {self.name!r} takes no file (it declares no file_input). "
                    f"Give its inputs with --input NAME=VALUE: {', '.join(sorted(self.inputs))}."
                ]
            )
        return self.inputs[self.file_input]


@dataclass(frozen=True)
class ConfigKey:
    """An app config key: build-time, set per variant or with `--config`."""

    name: str
    default: Any
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class LLMStep:
    """The declared link between the node that calls the LLM and the prompt node it renders."""

    name: str
    node: str
    prompt: str
    rendered: str | None = None


@dataclass(frozen=True)
class Contract:
    """A project's declared contract, with paths resolved against its root."""

    root: Path
    dataflows: tuple[str, ...]
    prompts: str
    variants: Path
    fixtures: Path
    suites: Path
    config: dict[str, ConfigKey]
    llm_steps: dict[str, LLMStep]
    pipelines: dict[str, PipelineSpec]
    default_pipeline: str

    def pipeline(self, name: str | None) -> PipelineSpec:
        """The named pipeline (the default for None), or a ConfigError listing them."""
        key = name or self.default_pipeline
        if key not in self.pipelines:
            raise ConfigError(
                [
                    f"pipeline {key!r} is not declared in [tool.promptdag.pipelines] of "
                    f"{self.root / CONTRACT_FILE}. Declared: {', '.join(sorted(self.pipelines))}."
                ]
            )
        return self.pipelines[key]

    def step_for_node(self, node: str) -> LLMStep | None:
        return next((s for s in self.llm_steps.values() if s.node == node), None)

    def relpath(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return str(path)


def _unknown(where: str, raw: Mapping[str, Any], known: set[str], problems: list[str]) -> None:
    for key in sorted(set(raw) - known):
        problems.append(f"{where}: unknown key {key!r}. Known: {', '.join(sorted(known))}.")


def _str_list(where: str, value: Any, problems: list[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        problems.append(f"{where} must be a list of names, got {value!r}.")
        return ()
    return tuple(value)


def _number(where: str, raw: Mapping[str, Any], key: str, problems: list[str]) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.append(f"{where}.{key} must be a number, got {value!r}.")
        return None
    return value


def _input(where: str, name: str, raw: Any, problems: list[str]) -> InputSpec | None:
    if not isinstance(raw, dict):
        problems.append(f"{where} must be a table (kind = ...), got {raw!r}.")
        return None
    _unknown(where, raw, _INPUT_KEYS, problems)
    kind = raw.get("kind", "string")
    if kind not in INPUT_KINDS:
        problems.append(
            f"{where}.kind = {kind!r} is not a kind. Use one of: {', '.join(INPUT_KINDS)}."
        )
        return None
    has_default = "default" in raw
    required = bool(raw.get("required", not has_default))
    max_bytes = _number(where, raw, "max_bytes", problems)
    max_chars = _number(where, raw, "max_chars", problems)
    if kind == "file" and max_bytes is None:
        problems.append(f"{where}: a file input needs max_bytes (a cap on its size).")
    if kind in ("text", "string") and max_chars is None:
        max_chars = _DEFAULT_MAX_CHARS
    return InputSpec(
        name=name,
        kind=kind,
        description=str(raw.get("description", "")),
        required=required,
        default=raw.get("default"),
        media_types=_str_list(f"{where}.media_types", raw.get("media_types", []), problems),
        max_bytes=None if max_bytes is None else int(max_bytes),
        max_chars=None if max_chars is None else int(max_chars),
        min=_number(where, raw, "min", problems),
        max=_number(where, raw, "max", problems),
        suffixes=tuple(
            s.lower() for s in _str_list(f"{where}.suffixes", raw.get("suffixes", []), problems)
        ),
        filename_input=raw.get("filename_input"),
        secret=bool(raw.get("secret", False)),
        forbidden_chars=str(raw.get("forbidden_chars", "")),
    )


def _pipeline(name: str, raw: Any, problems: list[str]) -> PipelineSpec | None:
    where = f"[tool.promptdag.pipelines.{name}]"
    if not isinstance(raw, dict):
        problems.append(f"{where} must be a table.")
        return None
    _unknown(where, raw, _PIPELINE_KEYS, problems)
    outputs = _str_list(f"{where} outputs", raw.get("outputs", []), problems)
    answer = raw.get("answer") or (outputs[0] if outputs else "")
    if not answer:
        problems.append(f'{where} needs outputs = [...] and answer = "<node>".')
        return None
    inputs: dict[str, InputSpec] = {}
    for iname, iraw in (raw.get("inputs") or {}).items():
        spec = _input(f"{where[:-1]}.inputs.{iname}]", iname, iraw, problems)
        if spec is not None:
            inputs[iname] = spec
    groups = tuple(_str_list(f"{where} one_of", g, problems) for g in raw.get("one_of", []) or [])
    refs = [("file_input", raw.get("file_input"))]
    refs += [(f"{s.name}.filename_input", s.filename_input) for s in inputs.values()]
    refs += [("one_of", n) for g in groups for n in g]
    for what, ref in refs:
        if ref is not None and ref not in inputs:
            problems.append(
                f"{where} {what} = {ref!r} names no input. Inputs: {', '.join(sorted(inputs))}."
            )
    file_input = raw.get("file_input")
    if (
        file_input in inputs
        and not inputs[file_input].is_file
        and inputs[file_input].kind != "text"
    ):
        problems.append(f"{where} file_input = {file_input!r} must be a file or text input.")
    return PipelineSpec(
        name=name,
        outputs=outputs,
        answer=str(answer),
        inputs=inputs,
        description=str(raw.get("description", "")),
        file_input=file_input if file_input in inputs else None,
        one_of=groups,
        notes=raw.get("notes"),
    )


def _config_key(name: str, raw: Any, problems: list[str]) -> ConfigKey | None:
    where = f"[tool.promptdag.config.{name}]"
    if not isinstance(raw, dict):
        raw = {"default": raw}
    _unknown(where, raw, _CONFIG_KEYS, problems)
    if "default" not in raw:
        problems.append(f"{where} needs a default.")
        return None
    return ConfigKey(
        name=name,
        default=raw["default"],
        min=_number(where, raw, "min", problems),
        max=_number(where, raw, "max", problems),
        choices=tuple(raw.get("choices", ())),
        description=str(raw.get("description", "")),
    )


def _step(name: str, raw: Any, problems: list[str]) -> LLMStep | None:
    where = f"[tool.promptdag.llm_steps.{name}]"
    if (
        not isinstance(raw, dict)
        or not isinstance(raw.get("node"), str)
        or not isinstance(raw.get("prompt"), str)
    ):
        problems.append(
            f'{where} needs node = "<node calling the LLM>" and prompt = "<prompt node>".'
        )
        return None
    _unknown(where, raw, _STEP_KEYS, problems)
    return LLMStep(name, raw["node"], raw["prompt"], raw.get("rendered"))


def _read(root: Path) -> dict[str, Any]:
    path = root / CONTRACT_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProjectError(f"cannot read the project contract {path}: {exc}") from exc
    section = (data.get("tool") or {}).get("promptdag")
    if not isinstance(section, dict):
        raise ProjectError(
            f"{path} has no [tool.promptdag] table: declare the project's dataflows, prompts and "
            "pipelines there (see `promptdag init` for a working example)."
        )
    return section


def load_contract(root: Path) -> Contract:
    """Read and check `[tool.promptdag]` of `root/pyproject.toml`; every problem at once."""
    raw = _read(root)
    problems: list[str] = []
    _unknown("[tool.promptdag]", raw, _TOP_KEYS, problems)
    dataflows = _str_list(
        "[tool.promptdag] dataflows", raw.get("dataflows", ["dataflows"]), problems
    )
    config = {}
    for name, value in (raw.get("config") or {}).items():
        key = _config_key(name, value, problems)
        if key is not None:
            config[name] = key
    steps = {}
    for name, value in (raw.get("llm_steps") or {}).items():
        step = _step(name, value, problems)
        if step is not None:
            steps[name] = step
    pipelines = {}
    for name, value in (raw.get("pipelines") or {}).items():
        spec = _pipeline(name, value, problems)
        if spec is not None:
            pipelines[name] = spec
    if not pipelines and not problems:
        problems.append(
            "[tool.promptdag] declares no pipelines: add [tool.promptdag.pipelines.NAME]."
        )
    default = raw.get("default_pipeline") or (sorted(pipelines)[0] if pipelines else "")
    if pipelines and default not in pipelines:
        problems.append(
            f"[tool.promptdag] default_pipeline = {default!r} is not declared. "
            f"Declared: {', '.join(sorted(pipelines))}."
        )
    if problems:
        raise ConfigError([f"{root / CONTRACT_FILE}: {p}" for p in problems])
    return Contract(
        root=root,
        dataflows=dataflows,
        prompts=str(raw.get("prompts", "prompts")),
        variants=root / str(raw.get("variants", "prompts/variants.toml")),
        fixtures=root / str(raw.get("fixtures", "prompts/fixtures.toml")),
        suites=root / str(raw.get("suites", "ci/evals/suites")),
        config=config,
        llm_steps=steps,
        pipelines=pipelines,
        default_pipeline=default,
    )
