"""Reading one run request of a declared pipeline. Three bodies are accepted:

- `application/json`: an object of the pipeline's non-file inputs, each in its JSON type
  (text and string: a string; number; integer; boolean). File inputs are not accepted in JSON
  (no base64): send them as a multipart part or as the raw body. A pipeline that cannot run
  without a file does not accept JSON at all (415).
- `multipart/form-data`: a file part per file input, named after it (`-F NAME=@doc.pdf` for a file input NAME),
  and every other input as a form field (parsed by its kind); a text input may also come as a
  file part (UTF-8). A file part's own Content-Type, when it is not application/octet-stream,
  must be one of the input's `media_types` (else 415).
- a raw body whose Content-Type is one of a file input's `media_types` (for a file input that
  declares none: application/octet-stream): that input's bytes; its filename, when the client
  sends `Content-Disposition: attachment; filename="..."`.

With every body, the other inputs may also come in the query string (a raw body has no other
place for them). Inputs declared `secret = true` come in the body or in a header
`X-Promptdag-Input-<name>` (`X-Promptdag-Input-Pdf-Password`: dashes or underscores, any case),
never in the query string, which ends up in logs. `subject_id` and `conversation_id` (sticky A/B
assignment, traces) are request meta fields, accepted in every body and never passed to the
pipeline. An uploaded file's name fills the input's `filename_input` unless the request sets it.

A JSON body may nest at most MAX_JSON_DEPTH levels and hold at most MAX_JSON_CONTAINERS arrays
and objects (it needs one: an object of values); beyond is a 422 before it is parsed. The whole body must arrive within the server's body
timeout (`--body-timeout`): a 408 otherwise, so a slow upload cannot hold a connection for ever.

The byte cap on a whole body is one number per pipeline (`body_cap`): `--max-upload-bytes` when
the operator gives it, else the pipeline's largest file input `max_bytes` (or, with no file
input, 6 bytes per character its text inputs may hold, for JSON escapes) plus 64 KiB for the
other fields and the multipart framing. Over it is a 413; so is a file over its own `max_bytes`.
Unknown fields are refused naming the allowed ones, so no request can name a prompt node or a
config key; values are checked against the contract by `promptdag.inputs`."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.message import Message
from typing import Any

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request

from promptdag.contract import InputSpec, PipelineSpec
from promptdag.errors import InputError, LimitExceededError
from promptdag.inputs import check_inputs, coerce_input
from promptdag.service.problems import ServiceError
from promptdag.service.settings import ServiceSettings

__all__ = [
    "BODY_MARGIN",
    "JSON",
    "MAX_JSON_CONTAINERS",
    "MAX_JSON_DEPTH",
    "META_FIELDS",
    "META_MAX_CHARS",
    "MULTIPART",
    "OCTET_STREAM",
    "RunRequest",
    "accepts_json",
    "body_cap",
    "raw_media_types",
    "read_run_request",
    "secret_header",
    "servable_problems",
]

JSON = "application/json"
MULTIPART = "multipart/form-data"
OCTET_STREAM = "application/octet-stream"
META_FIELDS = ("conversation_id", "subject_id")
META_MAX_CHARS = 200
BODY_MARGIN = 64 * 1024
SECRET_PREFIX = "x-promptdag-input-"
MAX_JSON_DEPTH = 32
MAX_JSON_CONTAINERS = 256
_OPENERS = frozenset(b"[{")
_PARSE_IN_THREAD_BYTES = 1 << 20
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_JSON_BYTES_PER_CHAR = 6  # a JSON "\u" escape plus four hex digits
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "text": (str,),
    "string": (str,),
    "number": (int, float),
    "integer": (int, float),
    "boolean": (bool,),
}


@dataclass(frozen=True)
class RunRequest:
    """A request's pipeline inputs (as sent: checked, not yet coerced) and its meta fields."""

    inputs: dict[str, Any]
    subject_id: str | None = None
    conversation_id: str | None = None


def body_cap(spec: PipelineSpec, settings: ServiceSettings) -> int:
    """The most bytes a request body of `spec` may have (the rule is in the module doc)."""
    if settings.max_upload_bytes is not None:
        return settings.max_upload_bytes
    files = [s.max_bytes or 0 for s in spec.inputs.values() if s.is_file]
    text = sum(
        _JSON_BYTES_PER_CHAR * (s.max_chars or 0)
        for s in spec.inputs.values()
        if s.kind in ("text", "string")
    )
    return max([*files, text]) + BODY_MARGIN


def raw_media_types(spec: PipelineSpec) -> dict[str, str]:
    """Content type of a raw body → the input it fills (the pipeline's `file_input` first)."""
    out: dict[str, str] = {}
    for s in sorted(spec.inputs.values(), key=lambda s: (s.name != spec.file_input, s.name)):
        types = s.media_types or ((OCTET_STREAM,) if s.is_file else ())
        if s.is_file or s.kind == "text":
            for media_type in types:
                out.setdefault(media_type.lower(), s.name)
    return out


def _file_inputs(spec: PipelineSpec) -> list[str]:
    return [n for n, s in spec.inputs.items() if s.is_file]


def accepts_json(spec: PipelineSpec) -> bool:
    """Whether a JSON body (no files) can satisfy the pipeline: no required file input, and no
    `one_of` group made of file inputs only."""
    files = set(_file_inputs(spec))
    grouped = {n for g in spec.one_of for n in g}
    if any(spec.inputs[n].required and n not in grouped for n in files):
        return False
    return not any(set(g) <= files for g in spec.one_of)


def secret_header(name: str) -> str:
    """The header a secret input may come in: X-Promptdag-Input-Api-Token for api_token."""
    return "X-Promptdag-Input-" + "-".join(p.capitalize() for p in name.split("_"))


def servable_problems(spec: PipelineSpec) -> list[str]:
    """What stops the service from reading requests of `spec` unambiguously."""
    where = f"[tool.promptdag.pipelines.{spec.name}]"
    problems = [
        f"{where} declares input {name!r}, a request meta field of the service "
        f"({', '.join(META_FIELDS)}): rename the input."
        for name in META_FIELDS
        if name in spec.inputs
    ]
    for media_type, name in raw_media_types(spec).items():
        if media_type in (JSON, MULTIPART):
            problems.append(
                f"{where} input {name!r} declares media type {media_type!r}, which the service "
                "reads as a body of fields: declare the file's own type."
            )
    return problems


def _invalid(detail: str) -> ServiceError:
    return ServiceError(422, "invalid-request", "Invalid request", detail)


def _too_large(size: str, cap: int) -> ServiceError:
    return ServiceError(
        413,
        "upload-too-large",
        "Upload too large",
        f"the request body is {size}, over the cap of {cap} bytes (the pipeline's largest file "
        "plus 64 KiB, or the server's --max-upload-bytes).",
    )


async def _read_capped(request: Request, cap: int, deadline: float | None) -> bytes:
    """The whole body, at most `cap` bytes, by `deadline` (the event loop's clock)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise _too_large(f"{declared} bytes", cap)
    buf = bytearray()
    try:
        async with asyncio.timeout_at(deadline):
            async for chunk in request.stream():
                buf += chunk
                if len(buf) > cap:
                    raise _too_large(f"more than {cap} bytes", cap)
    except TimeoutError:
        raise ServiceError(
            408,
            "body-timeout",
            "Request body timeout",
            f"the request body did not arrive in time ({len(buf)} bytes came before the "
            "server's --body-timeout). Send the whole body at once, or from a faster link.",
            {"Connection": "close"},
        ) from None
    except ClientDisconnect:
        raise ServiceError(
            400,
            "incomplete-body",
            "Incomplete body",
            f"the client closed the connection after {len(buf)} bytes of the body.",
        ) from None
    return bytes(buf)


def _json_shape_problem(raw: bytes) -> str | None:
    """What makes the JSON text `raw` too deep or too branched to parse, or None: at most
    MAX_JSON_DEPTH levels and MAX_JSON_CONTAINERS arrays and objects outside strings. A few
    passes over the bytes at C speed, so a hostile body costs no recursion and little time."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return None
    outside = _JSON_STRING.sub(b"", raw)
    containers = outside.count(b"[") + outside.count(b"{")
    if containers > MAX_JSON_CONTAINERS:
        return f"the JSON body holds {containers} arrays and objects, over the cap of {MAX_JSON_CONTAINERS}"
    depth = 0
    for byte in outside.translate(None, _NOT_BRACKETS):
        depth += 1 if byte in _OPENERS else -1
        if depth > MAX_JSON_DEPTH:
            return f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels"
    return None


def _parse_json(raw: bytes) -> Any:
    shape = _json_shape_problem(raw)
    if shape is not None:
        raise _invalid(f'{shape}: send one object of input values, like {{"name": value}}.')
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _invalid(f"the body is not valid JSON ({exc}).") from exc


def _preview(value: Any) -> str:
    """A short, cheap rendering of a JSON value for an error message (never a whole container)."""
    if isinstance(value, str):
        return repr(value[:80])
    if isinstance(value, bool | int | float) or value is None:
        return repr(value)
    return f"a JSON {'array' if isinstance(value, list) else 'object'}"


def _unique(items: Iterable[tuple[str, Any]], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in items:
        if key in out:
            raise _invalid(f"field {key!r} is given twice in the {where}: give it once.")
        out[key] = value
    return out


def _refuse_unknown(values: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    allowed = sorted(allowed)
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ServiceError(
            422,
            "unknown-field",
            "Unknown field",
            f"unknown field(s) {', '.join(unknown)} in the {where}. Allowed: "
            f"{', '.join(allowed) or 'none'}. Prompts and config are chosen by the server, not "
            "the request.",
        )


def _utf8(name: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"input {name} is not UTF-8 text ({exc}).") from exc


def _media_type(value: str | None) -> str:
    return (value or "").split(";")[0].strip().lower()


def _secrets(request: Request, spec: PipelineSpec) -> dict[str, str]:
    names = {
        n.lower().replace("_", "-"): n for n, s in spec.inputs.items() if s.secret and not s.is_file
    }
    out: dict[str, str] = {}
    for key, value in request.headers.items():
        if not key.startswith(SECRET_PREFIX):
            continue
        name = names.get(key[len(SECRET_PREFIX) :].replace("_", "-"))
        if name is None:
            allowed = ", ".join(secret_header(n) for n in sorted(names.values())) or "none"
            raise ServiceError(
                422,
                "unknown-field",
                "Unknown field",
                f"header {key!r} names no secret input of pipeline {spec.name!r}. "
                f"Secret inputs come in: {allowed}.",
            )
        if name in out:
            raise _invalid(f"header {secret_header(name)} is given twice: give it once.")
        out[name] = value
    return out


def _query(request: Request, spec: PipelineSpec, exclude: str | None) -> dict[str, str]:
    values = _unique(request.query_params.multi_items(), "query string")
    secret = sorted(n for n in values if n in spec.inputs and spec.inputs[n].secret)
    if secret:
        raise _invalid(
            f"{', '.join(secret)} is secret: send it in the {secret_header(secret[0])} header "
            "or the body, never in the URL (URLs end up in logs)."
        )
    allowed = [n for n, s in spec.inputs.items() if not s.is_file and not s.secret and n != exclude]
    _refuse_unknown(values, [*allowed, *META_FIELDS], "query string")
    return values


def _check_json_value(spec: InputSpec, value: Any) -> None:
    types = _JSON_TYPES[spec.kind]
    if not isinstance(value, types) or (isinstance(value, bool) and spec.kind != "boolean"):
        kind = "string" if spec.kind == "text" else spec.kind
        raise InputError(
            f"input {spec.name} must be a JSON {kind}, got {type(value).__name__}: "
            f"{_preview(value)}."
        )


async def _json(
    request: Request, spec: PipelineSpec, cap: int, deadline: float | None
) -> dict[str, Any]:
    raw = await _read_capped(request, cap, deadline)
    # A large body is checked and parsed off the event loop, so other requests go on meanwhile.
    big = len(raw) > _PARSE_IN_THREAD_BYTES
    data = await asyncio.to_thread(_parse_json, raw) if big else _parse_json(raw)
    if not isinstance(data, dict):
        raise _invalid('the JSON body must be an object of inputs, like {"name": value}.')
    files = sorted(n for n in data if n in spec.inputs and spec.inputs[n].is_file)
    if files:
        raise _invalid(
            f"{', '.join(files)} is a file input: JSON bodies carry no files. Send it as a "
            f"multipart part (curl -F {files[0]}=@FILE) or as the raw body."
        )
    fields = [n for n, s in spec.inputs.items() if not s.is_file]
    _refuse_unknown(data, [*fields, *META_FIELDS], "JSON body")
    for name, value in data.items():
        if name in spec.inputs:
            _check_json_value(spec.inputs[name], value)
    return data


def _check_part_type(spec: InputSpec, upload: UploadFile) -> None:
    media_type = _media_type(upload.content_type)
    accepted = {m.lower() for m in spec.media_types} | {OCTET_STREAM}
    if spec.media_types and media_type and media_type not in accepted:
        raise ServiceError(
            415,
            "unsupported-media-type",
            "Unsupported content type",
            f"part {spec.name!r} has content type {media_type!r}; input {spec.name} takes "
            f"{', '.join(spec.media_types)} (or {OCTET_STREAM}).",
        )


async def _multipart(
    request: Request, spec: PipelineSpec, cap: int, deadline: float | None
) -> tuple[dict[str, Any], dict[str, str]]:
    raw = await _read_capped(request, cap, deadline)

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    fields = len(spec.inputs) + len(META_FIELDS)
    try:
        form = await Request(request.scope, replay).form(
            max_files=len(spec.inputs), max_fields=fields, max_part_size=cap
        )
    except (HTTPException, MultiPartException) as exc:
        reason = exc.detail if isinstance(exc, HTTPException) else exc.message
        raise _invalid(f"the multipart body cannot be read: {reason}.") from exc
    try:
        parts = _unique(form.multi_items(), "multipart body")
        _refuse_unknown(parts, [*spec.inputs, *META_FIELDS], "multipart body")
        values: dict[str, Any] = {}
        filenames: dict[str, str] = {}
        for name, part in parts.items():
            s = spec.inputs.get(name)
            is_upload = isinstance(part, UploadFile)
            if is_upload and (s is None or not (s.is_file or s.kind == "text")):
                raise _invalid(f"part {name!r} is a file, but {name} is a form field: send text.")
            if not is_upload and s is not None and s.is_file:
                raise _invalid(
                    f"{name} is a file input: send it as a file part (curl -F {name}=@FILE)."
                )
            if not isinstance(part, UploadFile):
                values[name] = part
                continue
            assert s is not None
            _check_part_type(s, part)
            data = await part.read()
            values[name] = data if s.is_file else _utf8(name, data)
            if part.filename:
                filenames[name] = part.filename
        return values, filenames
    finally:
        await form.close()


def _disposition_filename(value: str | None) -> str | None:
    if not value:
        return None
    message = Message()
    message["content-disposition"] = value
    return message.get_filename()


def _unsupported(spec: PipelineSpec, media_type: str) -> ServiceError:
    accepted = [*([JSON] if accepts_json(spec) else []), MULTIPART]
    accepted += [f"{t} (the raw {n})" for t, n in raw_media_types(spec).items()]
    return ServiceError(
        415,
        "unsupported-media-type",
        "Unsupported content type",
        f"content type {media_type or '(none)'!r} is not accepted by pipeline {spec.name!r}. "
        f"Send one of: {', '.join(accepted)}.",
    )


def _meta(name: str, value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > META_MAX_CHARS:
        raise InputError(f"{name} must be a string of at most {META_MAX_CHARS} characters.")
    return value or None


def _fill_filenames(spec: PipelineSpec, values: dict[str, Any], names: dict[str, str]) -> None:
    for name, filename in names.items():
        target = spec.inputs[name].filename_input
        if target is None or target in values:
            continue
        cap = spec.inputs[target].max_chars
        values[target] = filename[:cap] if cap is not None else filename


def _checked(spec: PipelineSpec, values: dict[str, Any]) -> None:
    """Every input against the contract; a file over its `max_bytes` is a 413."""
    for name in _file_inputs(spec):
        if name in values:
            try:
                coerce_input(spec.inputs[name], values[name])
            except LimitExceededError as exc:
                raise ServiceError(
                    413,
                    "upload-too-large",
                    "Upload too large",
                    str(exc),
                    extra={"limit": exc.limit, "cap": str(exc.cap)},
                ) from exc
    check_inputs(spec, values)


async def read_run_request(
    request: Request, spec: PipelineSpec, cap: int, body_timeout_s: float | None = None
) -> RunRequest:
    """The request's inputs and meta fields, checked against `spec`, the body read within
    `body_timeout_s`; a ServiceError or an InputError says what is wrong."""
    deadline = (
        None if body_timeout_s is None else asyncio.get_running_loop().time() + body_timeout_s
    )
    media_type = _media_type(request.headers.get("content-type"))
    raw = raw_media_types(spec)
    filenames: dict[str, str] = {}
    target = raw.get(media_type) if media_type not in (JSON, MULTIPART) else None
    secrets = _secrets(request, spec)
    query = _query(request, spec, target)
    if media_type == JSON and accepts_json(spec):
        values = await _json(request, spec, cap, deadline)
    elif media_type == MULTIPART:
        values, filenames = await _multipart(request, spec, cap, deadline)
    elif target is not None:
        data = await _read_capped(request, cap, deadline)
        values = {target: data if spec.inputs[target].is_file else _utf8(target, data)}
        filename = _disposition_filename(request.headers.get("content-disposition"))
        if filename:
            filenames[target] = filename
    else:
        raise _unsupported(spec, media_type)
    for source, extra in (("query string", query), ("header", secrets)):
        both = sorted(set(values) & set(extra))
        if both:
            raise _invalid(f"{', '.join(both)} is given both in the body and in the {source}.")
        values.update(extra)
    subject_id = _meta("subject_id", values.pop("subject_id", ""))
    conversation_id = _meta("conversation_id", values.pop("conversation_id", ""))
    _fill_filenames(spec, values, filenames)
    _checked(spec, values)
    return RunRequest(values, subject_id=subject_id, conversation_id=conversation_id)
