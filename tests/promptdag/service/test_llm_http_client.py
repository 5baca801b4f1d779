"""The served pipelines' LLM HTTP stack: the SDK's aiohttp client by default (aiohttp is
installed with the serve extra), httpx2 with PROMPTDAG_LLM_HTTP_CLIENT=httpx, an unknown name
refused at startup; the offline model keeps its in-process transport; answers are the same."""

from __future__ import annotations

from typing import Any

import pytest

from promptdag.errors import ConfigError
from tests.fakes.openai_server import OpenAIServer
from tests.promptdag.service.conftest import AUTH, SUMMARIZE, TEXT

OPENAI = {"llm_backend": "openai", "llm_model": "gpt-test", "llm_cache": "off"}


def _openai(monkeypatch: pytest.MonkeyPatch, server: OpenAIServer) -> dict[str, Any]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    return {**OPENAI, "llm_base_url": server.base_url}


def _transport(client: Any) -> str:
    pipeline = client.app.state.promptdag.pipelines["summarize"]["baseline"]
    return type(pipeline.llm.client._client._transport).__name__


@pytest.mark.parametrize(
    ("env", "transport"), [(None, "AiohttpTransport"), ("httpx", "AsyncHTTPTransport")]
)
def test_the_service_talks_to_a_real_endpoint_through_the_chosen_http_stack(
    make_client, monkeypatch: pytest.MonkeyPatch, openai_server: OpenAIServer, env, transport
) -> None:
    if env is None:
        monkeypatch.delenv("PROMPTDAG_LLM_HTTP_CLIENT", raising=False)
    else:
        monkeypatch.setenv("PROMPTDAG_LLM_HTTP_CLIENT", env)
    client = make_client(config=_openai(monkeypatch, openai_server), variants=("baseline",))
    name = _transport(client)
    assert name == transport
    r = client.post(SUMMARIZE, json={"text": TEXT}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["calls"] == len(openai_server.history) >= 2


def test_an_unknown_http_client_refuses_to_start(make_client, monkeypatch) -> None:
    monkeypatch.setenv("PROMPTDAG_LLM_HTTP_CLIENT", "requests")
    with pytest.raises(ConfigError, match="Use one of: auto, aiohttp, httpx"):
        make_client(variants=("baseline",))


def test_the_offline_model_keeps_its_transport(make_client, monkeypatch) -> None:
    monkeypatch.delenv("PROMPTDAG_LLM_HTTP_CLIENT", raising=False)
    client = make_client(variants=("baseline",))
    assert _transport(client) == "OfflineTransport"
    assert client.post(SUMMARIZE, json={"text": TEXT}, headers=AUTH).status_code == 200
