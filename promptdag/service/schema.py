"""The OpenAPI description of each pipeline's run route: its request bodies (JSON, multipart,
raw file), query and header parameters from the contract's inputs, and its response body, whose
`answer` and `outputs` are typed from the built graph's node types (known once the service has
started and built every variant; before that they are described, not typed)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter

from promptdag.contract import InputSpec, PipelineSpec
from promptdag.pipeline import Pipeline
from promptdag.service.body import (
    JSON,
    META_FIELDS,
    META_MAX_CHARS,
    MULTIPART,
    accepts_json,
    raw_media_types,
    secret_header,
)

__all__ = [
    "PROBLEM_REF",
    "request_openapi",
    "run_path",
    "run_response_schema",
    "run_schema_name",
    "shared_schemas",
]

_REF = "#/components/schemas/{model}"
PROBLEM_REF = {"$ref": _REF.format(model="Problem")}
ANY_JSON: dict[str, Any] = {
    "description": "Any JSON value.",
    "type": ["string", "number", "integer", "boolean", "array", "object", "null"],
}
_META_DESCRIPTIONS = {
    "subject_id": "Sticky A/B assignment key: the same subject gets the same variant.",
    "conversation_id": "Groups requests in the traces.",
}


def run_path(pipeline: str) -> str:
    return f"/v1/pipelines/{pipeline}/runs"


def run_schema_name(pipeline: str) -> str:
    """`summarize` → `SummarizeRun`, `doc-qa` → `DocQaRun`."""
    return "".join(p.capitalize() for p in re.split(r"[^0-9A-Za-z]+", pipeline) if p) + "Run"


def _forbidden_pattern(chars: str) -> str:
    escaped = "".join("\\" + c if c in "\\]^-[" else c for c in sorted(set(chars)))
    return f"^[^{escaped}]*$"


def input_schema(spec: InputSpec) -> dict[str, Any]:
    """The JSON Schema of one input's value (a file: binary)."""
    if spec.is_file:
        out: dict[str, Any] = {"type": "string", "format": "binary"}
        if spec.max_bytes is not None:
            out["maxLength"] = spec.max_bytes
    elif spec.kind in ("number", "integer", "boolean"):
        out = {"type": spec.kind}
        if spec.min is not None:
            out["minimum"] = spec.min
        if spec.max is not None:
            out["maximum"] = spec.max
    else:
        out = {"type": "string"}
        if spec.max_chars is not None:
            out["maxLength"] = spec.max_chars
        if spec.kind == "string" and spec.default != "":  # promptdag.inputs refuses blanks
            out["minLength"] = 1
        if spec.forbidden_chars:
            out["pattern"] = _forbidden_pattern(spec.forbidden_chars)
    if spec.default is not None:
        out["default"] = spec.default
    if spec.description:
        out["description"] = spec.description
    return out


def _meta_schema(name: str) -> dict[str, Any]:
    return {"type": "string", "maxLength": META_MAX_CHARS, "description": _META_DESCRIPTIONS[name]}


def _object(spec: PipelineSpec, names: Sequence[str]) -> dict[str, Any]:
    """An object of `names` (inputs) plus the meta fields, with the contract's required inputs
    and `one_of` groups (as far as `names` can meet them)."""
    grouped = {n for g in spec.one_of for n in g}
    out: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **{n: input_schema(spec.inputs[n]) for n in names},
            **{m: _meta_schema(m) for m in META_FIELDS},
        },
    }
    required = [n for n in names if spec.inputs[n].required and n not in grouped]
    groups = [[n for n in g if n in names] for g in spec.one_of]
    required += [g[0] for g in groups if len(g) == 1]
    if required:
        out["required"] = sorted(required)
    choices = [{"oneOf": [{"required": [n]} for n in g]} for g in groups if len(g) > 1]
    if choices:
        out["allOf"] = choices
    return out


def request_openapi(spec: PipelineSpec) -> dict[str, Any]:
    """`openapi_extra` of the pipeline's run route: its request bodies and parameters."""
    fields = [n for n, s in spec.inputs.items() if not s.is_file]
    content: dict[str, Any] = {}
    if accepts_json(spec):
        content[JSON] = {"schema": _object(spec, fields)}
    multipart = _object(spec, list(spec.inputs))
    encoding = {
        n: {"contentType": ", ".join(s.media_types)}
        for n, s in spec.inputs.items()
        if s.is_file and s.media_types
    }
    content[MULTIPART] = {"schema": multipart, **({"encoding": encoding} if encoding else {})}
    for media_type, name in raw_media_types(spec).items():
        content[media_type] = {
            "schema": {**input_schema(spec.inputs[name]), "description": f"The raw {name}."}
        }
    parameters = [
        {
            "name": n,
            "in": "query",
            "required": False,
            "schema": input_schema(spec.inputs[n]),
            "description": f"Input {n} (any body; the only place for it with a raw body).",
        }
        for n in fields
        if not spec.inputs[n].secret
    ]
    parameters += [
        {"name": m, "in": "query", "required": False, "schema": _meta_schema(m)}
        for m in META_FIELDS
    ]
    parameters += [
        {
            "name": secret_header(n),
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": f"Secret input {n} (never in the query string).",
        }
        for n in fields
        if spec.inputs[n].secret
    ]
    return {
        "requestBody": {"required": True, "content": content},
        "parameters": parameters,
    }


def _no_empty(schema: Any) -> Any:
    """`schema` with every empty sub-schema (pydantic's for `Any`) spelled out as any JSON."""
    if isinstance(schema, list):
        return [_no_empty(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if not schema:
        return dict(ANY_JSON)
    out = dict(schema)
    for key in ("items", "additionalProperties", "not", "contains"):
        if isinstance(out.get(key), dict):
            out[key] = _no_empty(out[key])
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(out.get(key), list):
            out[key] = [_no_empty(s) for s in out[key]]
    for key in ("properties", "$defs"):
        if isinstance(out.get(key), dict):
            out[key] = {k: _no_empty(v) for k, v in out[key].items()}
    return out


def _type_schema(tp: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON Schema of a node's value as the response carries it, and its definitions."""
    try:
        schema = TypeAdapter(tp).json_schema(mode="serialization", ref_template=_REF)
    except Exception:  # pydantic knows no schema for it: the response carries str(value)
        name = getattr(tp, "__name__", str(tp))
        return {"type": "string", "description": f"The {name} value as text."}, {}
    schema = _no_empty(schema)
    defs = schema.pop("$defs", {})
    return schema, defs


def _value_schema(node: str, built: Sequence[Pipeline], defs: dict[str, Any]) -> dict[str, Any]:
    if not built:
        return {
            "description": f"The value of node {node}; typed once the service has built it.",
            **{k: v for k, v in ANY_JSON.items() if k != "description"},
        }
    schemas: list[dict[str, Any]] = []
    for pipeline in built:
        schema, more = _type_schema(pipeline.graph[node].type)
        defs.update(more)
        if schema not in schemas:
            schemas.append(schema)
    return schemas[0] if len(schemas) == 1 else {"anyOf": schemas}


def run_response_schema(
    spec: PipelineSpec, built: Mapping[str, Pipeline]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The schema of a 200 answer of `spec`'s route (variants: those `built`), and the
    definitions its node types need."""
    defs: dict[str, Any] = {}
    pipelines = list(built.values())
    outputs = {n: _value_schema(n, pipelines, defs) for n in spec.outputs}
    variant: dict[str, Any] = {"type": "string", "description": "The variant that answered."}
    if built:
        variant["enum"] = sorted(built)
    schema = {
        "type": "object",
        "description": spec.description or f"A run of pipeline {spec.name}.",
        "additionalProperties": False,
        "required": [
            "request_id",
            "pipeline",
            "variant",
            "assignment",
            "answer",
            "outputs",
            "model",
            "usage",
            "latency_s",
            "incomplete",
            "notes",
            "provenance",
        ],
        "properties": {
            "request_id": {"type": "string"},
            "pipeline": {"type": "string", "const": spec.name},
            "variant": variant,
            "assignment": {"type": "string", "enum": ["forced", "random", "sticky"]},
            "answer": {
                **_value_schema(spec.answer, pipelines, defs),
                "description": f"The answer: the value of node {spec.answer}.",
            },
            "outputs": {
                "type": "object",
                "additionalProperties": False,
                "required": list(spec.outputs),
                "properties": outputs,
            },
            "model": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "usage": {"$ref": _REF.format(model="Usage")},
            "latency_s": {"type": "number"},
            "incomplete": {
                "type": "boolean",
                "description": "An answer the model cut off, filtered or refused, returned "
                "because the pipeline allows it (llm_allow_incomplete); else such a run fails.",
            },
            "notes": {"type": "array", "items": {"type": "string"}},
            "provenance": {"$ref": _REF.format(model="Provenance")},
        },
    }
    return schema, defs


def shared_schemas() -> dict[str, Any]:
    """Problem, Usage and Provenance: the same for every pipeline."""
    string, sha = {"type": "string"}, {"type": "string", "pattern": "^[0-9a-f]{64}$"}
    nullable = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    return {
        "Problem": {
            "type": "object",
            "description": "An RFC 9457 problem.",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": string,
                "title": string,
                "status": {"type": "integer"},
                "detail": string,
                "request_id": string,
                "limit": string,
                "cap": string,
                "step": string,
            },
        },
        "Usage": {
            "type": "object",
            "required": [
                "calls",
                "cached_calls",
                "input_tokens",
                "output_tokens",
                "cost_usd",
                "llm_seconds",
            ],
            "properties": {
                "calls": {"type": "integer"},
                "cached_calls": {"type": "integer"},
                "input_tokens": {"type": "integer"},
                "output_tokens": {"type": "integer"},
                "cost_usd": {"anyOf": [{"type": "number"}, {"type": "null"}]},
                "llm_seconds": {"type": "number"},
            },
        },
        "PromptProvenance": {
            "type": "object",
            "required": ["version", "pack", "source_sha256", "defined_at", "rendered_sha256"],
            "properties": {
                "version": string,
                "pack": string,
                "source_sha256": string,
                "defined_at": string,
                "rendered_sha256": {"anyOf": [sha, {"type": "null"}]},
            },
        },
        "GitState": {
            "type": "object",
            "required": ["available"],
            "properties": {
                "available": {"type": "boolean"},
                "source": string,
                "sha": string,
                "branch": nullable,
                "dirty": {"type": "boolean"},
                "diff_sha256": nullable,
                "reason": string,
            },
        },
        "Provenance": {
            "type": "object",
            "required": ["fingerprint", "git", "graph_version", "config_sha256", "prompts"],
            "properties": {
                "fingerprint": string,
                "git": {"$ref": _REF.format(model="GitState")},
                "graph_version": string,
                "config_sha256": sha,
                "prompts": {
                    "type": "object",
                    "additionalProperties": {"$ref": _REF.format(model="PromptProvenance")},
                },
            },
        },
    }
