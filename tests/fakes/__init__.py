"""Test doubles that ship next to the tests: a scriptable OpenAI-compatible server."""

from tests.fakes.openai_server import OpenAIServer, Reply

__all__ = ["OpenAIServer", "Reply"]
