"""An app under test: built through the real factory, served in-process by Starlette's TestClient."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from promptdag.service.app import create_app
from promptdag.service.settings import ServiceSettings

REPO = Path(__file__).resolve().parents[3]
KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
SAMPLE = REPO / "examples" / "the-man-without-a-body.pdf"
TEXT = (
    "The committee met on Monday to review the budget. It found that spending on roads rose by 12% "
    "because two bridges needed repair. Therefore the committee proposed a new maintenance fund.\n\n"
    "Members disagreed about the size of the fund. Some argued for a small fund, since revenue is falling. "
    "In the end they agreed to revisit the question next year."
)


@pytest.fixture
def make_client(tmp_path, monkeypatch) -> Iterator[Callable[..., TestClient]]:
    monkeypatch.setenv("PROMPTDAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(REPO)
    clients: list[TestClient] = []

    def make(**overrides) -> TestClient:
        settings = ServiceSettings(**{"api_keys": frozenset({KEY}), "traces": True, **overrides})
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client) -> TestClient:
    return make_client()
