"""Triage one ticket from the command line, through the same driver factory as the CLI and the
service: `python drivers/triage_once.py "The app crashes on login"` (or pipe the ticket in).

A driver script builds the Driver through promptdag, runs it, and holds no framework logic.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import promptdag

ROOT = Path(__file__).resolve().parents[1]


async def triage_once(ticket: str, variant: str | None = None) -> dict[str, object]:
    """The triage of `ticket` and where it goes, with the run's fingerprint id."""
    pipeline = promptdag.build_pipeline(pipeline="triage", variant=variant, project=ROOT)
    try:
        result = await pipeline.run({"ticket": ticket})
    finally:
        await pipeline.aclose()
    return {**result.outputs, "fingerprint": result.fingerprint["id"]}


def main(argv: list[str]) -> int:
    ticket = " ".join(argv) if argv else sys.stdin.read()
    try:
        out = asyncio.run(triage_once(ticket))
    except promptdag.PromptdagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
