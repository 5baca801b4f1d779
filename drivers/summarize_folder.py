"""The reference app's folder job: summarize every PDF (and .txt/.md) in a folder with one
Pipeline built once through promptdag, one JSON line per document on stdout (errors included,
typed), a summary line on stderr. Exit 1 when any document failed.

    python drivers/summarize_folder.py examples/ --variant concise
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import promptdag

SUFFIXES = {".pdf": "pdf_bytes", ".txt": "text", ".md": "text"}


def _inputs(path: Path) -> dict[str, object]:
    if SUFFIXES[path.suffix.lower()] == "text":
        return {"text": path.read_text(encoding="utf-8")}
    return {"pdf_bytes": path.read_bytes(), "source_name": path.name}


async def summarize_folder(folder: Path, variant: str | None) -> int:
    project = Path(__file__).resolve().parents[1]
    pipeline = promptdag.build_pipeline(pipeline="summarize", variant=variant, project=project)
    failed = 0
    try:
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES):
            try:
                result = await pipeline.run(_inputs(path))
                line = {"file": path.name, "status": "ok", "summary": result.answer,
                        "fingerprint": result.fingerprint["id"], "usage": result.usage}  # fmt: skip
            except promptdag.PromptdagError as exc:
                failed += 1
                line = {"file": path.name, "status": "error", "error": type(exc).__name__,
                        "message": str(exc)}  # fmt: skip
            print(json.dumps(line, ensure_ascii=False), flush=True)
    finally:
        await pipeline.aclose()
    print(f"{failed} failed (variant {pipeline.variant})", file=sys.stderr)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--variant", default=None)
    args = parser.parse_args()
    return asyncio.run(summarize_folder(args.folder, args.variant))


if __name__ == "__main__":
    sys.exit(main())
