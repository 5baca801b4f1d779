"""Replay recorded requests at their recorded git SHA (or another ref) and compare."""

from promptdag.replay.core import (
    ReplayError,
    ReplayResult,
    replay_many,
    replay_request,
    stored_request,
)

__all__ = ["ReplayError", "ReplayResult", "replay_many", "replay_request", "stored_request"]
