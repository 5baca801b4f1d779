"""promptdag as a library inside your own FastAPI app: build the pipeline once at startup, run
it per request, and trace every run with the same variant, git SHA and fingerprint as
`promptdag serve` does. Run it with `uvicorn examples.library_app:app` from the project root."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

import promptdag

PROJECT = (
    Path(__file__).resolve().parents[1]
)  # the project whose pyproject.toml has [tool.promptdag]


class Question(BaseModel):
    text: str
    user_query: str = ""


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    traces = promptdag.trace_writer(PROJECT)
    pipeline = promptdag.build_pipeline(
        pipeline="summarize", project=PROJECT, adapters=[promptdag.TraceAdapter(traces)]
    )
    app.state.pipeline = pipeline
    try:
        yield
    finally:
        await pipeline.aclose()
        traces.close()


app = FastAPI(lifespan=lifespan)


@app.post("/summaries")
async def summarize(question: Question) -> dict[str, object]:
    try:
        result = await app.state.pipeline.run(question.model_dump())
    except promptdag.InputError as exc:
        raise HTTPException(422, str(exc)) from exc
    return {"summary": result.answer, "fingerprint": result.fingerprint["id"]}
