"""The reference app's batch job: summarize every PDF (and .txt/.md) in a folder into one Parquet
file, one row per document, on this machine's cores or on a Ray cluster, through promptdag's
batch runner (what `promptdag batch summarize FOLDER --out OUT` does). Exit 1 when any
document failed.

    python drivers/batch.py examples/ runs/examples.parquet
    python drivers/batch.py papers/ runs/papers.parquet --resume --rpm 500 --max-cost-usd 20
    python drivers/batch.py papers/ runs/papers.parquet --engine ray --ray-address auto
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import promptdag
from promptdag import BatchOptions, Limits, run_batch


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--engine", choices=("local", "ray"), default="local")
    parser.add_argument("--ray-address", default=None, help="auto, or the head's HOST:PORT")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--variant", default=None)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--rpm", type=float, default=None)
    parser.add_argument("--max-cost-usd", type=float, default=None)
    args = parser.parse_args()
    options = BatchOptions(
        source=str(args.folder),
        out=args.out,
        pipeline="summarize",
        project=Path(__file__).resolve().parents[1],
        engine=args.engine,
        ray_address=args.ray_address,
        workers=args.workers,
        variant=args.variant,
        resume=args.resume,
        limits=Limits(rpm=args.rpm),
        max_cost_usd=args.max_cost_usd,
    )
    try:
        summary = asyncio.run(run_batch(options, say=_say))
    except promptdag.PromptdagError as exc:
        _say(f"error: {exc}")
        return exc.exit_code
    for input_id, error_type, message in summary.errors:
        _say(f"failed: {input_id}: {error_type}: {message}")
    _say(summary.line())
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
