"""Reading a summary request: multipart (`file` + fields), a raw `application/pdf` body (fields
in the query string), or JSON (`text` + fields). Bodies are read under a byte cap; unknown
fields are refused, so no request can name a prompt node or a config key."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request

from promptdag.service.problems import ServiceError
from promptdag.service.settings import ServiceSettings

__all__ = ["SummaryInput", "SummaryText", "read_summary_input", "request_body_openapi"]

FIELDS = ("user_query", "content_type", "conversation_id", "subject_id")
PASSWORD_HEADER = "x-promptdag-pdf-password"


class SummaryText(BaseModel):
    """A JSON summary request."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, description="The document text.")
    user_query: str = Field(
        "", max_length=2000, description="A question the summary should answer."
    )
    content_type: str | None = Field(
        None, min_length=1, max_length=100, description="What the document is."
    )
    conversation_id: str | None = Field(None, max_length=200)
    subject_id: str | None = Field(None, max_length=200, description="Sticky A/B assignment key.")


@dataclass(frozen=True)
class SummaryInput:
    pdf_bytes: bytes | None = None
    text: str | None = None
    source_name: str = ""
    user_query: str = ""
    content_type: str | None = None
    pdf_password: str = ""
    subject_id: str | None = None
    conversation_id: str | None = None

    def pipeline_inputs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"user_query": self.user_query}
        if self.text is not None:
            out["text"] = self.text
        else:
            out.update(pdf_bytes=self.pdf_bytes, source_name=self.source_name)
            if self.pdf_password:
                out["pdf_password"] = self.pdf_password
        if self.content_type is not None:
            out["content_type"] = self.content_type
        return out


def _too_large(size: str, cap: int) -> ServiceError:
    return ServiceError(
        413,
        "upload-too-large",
        "Upload too large",
        f"the request body is {size}, over the cap of {cap} bytes (max_upload_bytes).",
    )


async def _read_capped(request: Request, cap: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise _too_large(f"{declared} bytes", cap)
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > cap:
            raise _too_large(f"more than {cap} bytes", cap)
    return bytes(buf)


def _invalid(detail: str) -> ServiceError:
    return ServiceError(422, "invalid-request", "Invalid request", detail)


def _fields(values: dict[str, str], allowed: tuple[str, ...]) -> dict[str, str]:
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise _invalid(
            f"unknown field(s) {', '.join(unknown)}. Allowed: {', '.join(allowed)}. "
            "Prompts and config are chosen by the server, not the request."
        )
    return values


def _validated(data: dict[str, Any]) -> SummaryText:
    try:
        return SummaryText.model_validate(data)
    except ValidationError as exc:
        raise _invalid(
            "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
            )
        ) from exc


def _from_fields(values: dict[str, str], **document: Any) -> SummaryInput:
    meta = _validated({"text": "-", **values})
    return SummaryInput(
        user_query=meta.user_query,
        content_type=meta.content_type,
        subject_id=meta.subject_id,
        conversation_id=meta.conversation_id,
        **document,
    )


async def _json(request: Request, settings: ServiceSettings) -> SummaryInput:
    raw = await _read_capped(request, settings.max_upload_bytes)
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _invalid(f"the body is not valid JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise _invalid('the JSON body must be an object like {"text": "..."}.')
    body = _validated(data)
    if len(body.text) > settings.max_text_chars:
        raise ServiceError(
            413,
            "upload-too-large",
            "Text too long",
            f"text is {len(body.text)} characters, over the cap of {settings.max_text_chars}.",
        )
    return SummaryInput(
        text=body.text,
        user_query=body.user_query,
        content_type=body.content_type,
        subject_id=body.subject_id,
        conversation_id=body.conversation_id,
    )


async def _raw_pdf(request: Request, settings: ServiceSettings) -> SummaryInput:
    values = _fields(dict(request.query_params), FIELDS)
    data = await _read_capped(request, settings.max_upload_bytes)
    return _from_fields(
        values,
        pdf_bytes=data,
        source_name="upload.pdf",
        pdf_password=request.headers.get(PASSWORD_HEADER, ""),
    )


async def _multipart(request: Request, settings: ServiceSettings) -> SummaryInput:
    raw = await _read_capped(request, settings.max_upload_bytes + 64 * 1024)

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=len(FIELDS) + 2)
    except (HTTPException, MultiPartException) as exc:
        raise _invalid(
            f"the multipart body cannot be read: {exc.detail if isinstance(exc, HTTPException) else exc.message}."
        ) from exc
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise _invalid(
                "multipart requests need the PDF in a part named 'file' (curl -F file=@doc.pdf)."
            )
        values = {
            k: v
            for k, v in form.items()
            if k not in ("file", "pdf_password") and isinstance(v, str)
        }
        password = form.get("pdf_password")
        data = await upload.read()
        if len(data) > settings.max_upload_bytes:
            raise _too_large(f"{len(data)} bytes", settings.max_upload_bytes)
        return _from_fields(
            _fields(values, FIELDS),
            pdf_bytes=data,
            source_name=upload.filename or "upload.pdf",
            pdf_password=password if isinstance(password, str) else "",
        )
    finally:
        await form.close()


async def read_summary_input(request: Request, settings: ServiceSettings) -> SummaryInput:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        return await _json(request, settings)
    if kind == "application/pdf":
        return await _raw_pdf(request, settings)
    if kind == "multipart/form-data":
        return await _multipart(request, settings)
    raise ServiceError(
        415,
        "unsupported-media-type",
        "Unsupported content type",
        f"content type {kind or '(none)'!r} is not accepted. Send multipart/form-data with a "
        "'file' part, application/pdf, or application/json with a 'text' field.",
    )


def request_body_openapi() -> dict[str, Any]:
    """The three accepted bodies, for /docs and for schema-driven tests."""
    meta = {k: v for k, v in SummaryText.model_json_schema()["properties"].items() if k != "text"}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": SummaryText.model_json_schema()},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "additionalProperties": False,
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "pdf_password": {"type": "string"},
                            **meta,
                        },
                    }
                },
                "application/pdf": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "parameters": [
            {
                "name": k,
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": "with application/pdf bodies",
            }
            for k in FIELDS
        ],
    }
