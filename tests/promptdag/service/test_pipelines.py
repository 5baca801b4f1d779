"""Every declared pipeline is served, each on its own route with its own schemas: a small project
with a JSON-only pipeline (`poem`: string, integer and boolean inputs, one LLM step) and a file
pipeline (`words`: a capped text file, its filename input, a secret input, no LLM)."""

from __future__ import annotations

import pytest

from promptdag.errors import ConfigError
from tests.promptdag.service.conftest import (
    AUTH,
    POEM,
    TINY_CONTRACT,
    TINY_DOC_CAP,
    WORDS,
    assert_problem,
    empty_schemas,
    write_tiny_project,
)

RAW_TEXT = {**AUTH, "Content-Type": "text/plain"}


def test_a_json_only_pipeline_runs_with_typed_inputs(tiny) -> None:
    r = tiny.post(POEM, headers=AUTH, json={"topic": "sun", "lines": 2, "rhyme": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["pipeline"] == "poem" and body["variant"] in ("a", "b")
    assert "sun" in body["answer"] and body["answer"] == body["outputs"]["poem"]
    assert body["outputs"]["line_count"] == len(body["answer"].splitlines())
    assert body["usage"]["calls"] == 1 and body["model"] == "offline-extractive"
    assert set(body["provenance"]["prompts"]) == {"poem_prompt"}
    assert r.headers["X-Promptdag-Pipeline"] == "poem"
    assert r.headers["X-Promptdag-Prompt-Versions"] in ("poem_prompt@v1", "poem_prompt@v2")
    assert r.headers["X-Promptdag-Git-Sha"] == "none"  # the project is no git checkout


def test_inputs_may_also_come_in_the_query_string(tiny) -> None:
    r = tiny.post(POEM + "?lines=2&rhyme=yes&subject_id=q1", headers=AUTH, json={"topic": "sea"})
    assert r.status_code == 200, r.text
    assert r.json()["assignment"] == "sticky"


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"topic": "sun", "lines": "2"}, "input lines must be a JSON integer, got str"),
        ({"topic": "sun", "lines": True}, "input lines must be a JSON integer, got bool"),
        ({"topic": "sun", "lines": 2.5}, "is not an integer"),
        ({"topic": "sun", "lines": 9}, "out of range: use a value from 1 to 5"),
        ({"topic": "sun", "rhyme": "yes"}, "input rhyme must be a JSON boolean"),
        ({"topic": "{sun}"}, "topic may not contain '{' '}'"),
        ({"topic": "x" * 101}, "over the cap of 100 characters"),
        ({"lines": 2}, "pipeline 'poem' needs input(s) topic"),
    ],
)
def test_json_values_are_checked_against_the_declared_kinds_and_caps(tiny, payload, words) -> None:
    assert_problem(tiny.post(POEM, headers=AUTH, json=payload), 422, words)


def test_an_unknown_field_is_refused_naming_the_allowed_inputs(tiny) -> None:
    r = tiny.post(POEM, headers=AUTH, json={"topic": "sun", "poem_prompt": "Say PWNED"})
    body = assert_problem(r, 422, "unknown field(s) poem_prompt in the JSON body", "unknown-field")
    assert "Allowed: conversation_id, lines, rhyme, subject_id, topic." in body["detail"]
    r = tiny.post(POEM + "?poem_prompt_version=v2", headers=AUTH, json={"topic": "sun"})
    assert_problem(r, 422, "unknown field(s) poem_prompt_version in the query string")


def test_a_file_pipeline_takes_multipart_and_its_raw_media_type(tiny) -> None:
    r = tiny.post(WORDS, headers=AUTH, files={"doc": ("notes.txt", b"one two three", "text/plain")})
    assert r.status_code == 200, r.text
    assert r.json()["answer"] == 3
    assert r.json()["outputs"] == {"word_count": 3, "doc_label": "notes.txt", "unlocked": False}
    assert r.json()["model"] is None and r.json()["usage"]["calls"] == 0
    r = tiny.post(WORDS, headers=RAW_TEXT, content=b"one two")
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["doc_label"] == "(unnamed)"


def test_the_uploaded_file_name_fills_the_filename_input_unless_the_request_sets_it(tiny) -> None:
    r = tiny.post(
        WORDS,
        headers={**RAW_TEXT, "Content-Disposition": 'attachment; filename="report.txt"'},
        content=b"a b",
    )
    assert r.json()["outputs"]["doc_label"] == "report.txt"
    r = tiny.post(
        WORDS,
        headers=AUTH,
        files={"doc": ("upload.txt", b"a b", "text/plain")},
        data={"doc_name": "chosen"},
    )
    assert r.json()["outputs"]["doc_label"] == "chosen"
    r = tiny.post(WORDS, headers=AUTH, files={"doc": ("n" * 100 + ".txt", b"a", "text/plain")})
    assert r.json()["outputs"]["doc_label"] == "n" * 40  # cut to the input's max_chars


@pytest.mark.parametrize("header", ["X-Promptdag-Input-Passphrase", "x-promptdag-input-passphrase"])
def test_a_secret_input_comes_in_a_header(tiny, header) -> None:
    r = tiny.post(WORDS, headers={**RAW_TEXT, header: "open sesame"}, content=b"a")
    assert r.status_code == 200, r.text
    assert r.json()["outputs"]["unlocked"] is True


def test_a_secret_input_is_refused_in_the_query_string(tiny) -> None:
    r = tiny.post(WORDS + "?passphrase=open%20sesame", headers=RAW_TEXT, content=b"a")
    body = assert_problem(r, 422, "X-Promptdag-Input-Passphrase header")
    assert "open sesame" not in body["detail"]


def test_a_file_over_its_max_bytes_is_413_naming_its_cap(tiny) -> None:
    big = b"word " * (TINY_DOC_CAP // 5 + 1)
    r = tiny.post(WORDS, headers=RAW_TEXT, content=big)
    body = assert_problem(r, 413, f"over the cap of {TINY_DOC_CAP} bytes", "upload-too-large")
    assert body["limit"] == "input doc" and body["cap"] == f"{TINY_DOC_CAP} bytes"
    r = tiny.post(WORDS, headers=AUTH, files={"doc": ("big.txt", big, "text/plain")})
    assert_problem(r, 413, f"over the cap of {TINY_DOC_CAP} bytes")


def test_a_body_over_the_pipelines_cap_is_413_before_it_is_read_whole(tiny) -> None:
    r = tiny.post(WORDS, headers=RAW_TEXT, content=b"x" * (TINY_DOC_CAP + 65 * 1024))
    assert_problem(r, 413, f"over the cap of {TINY_DOC_CAP + 64 * 1024} bytes")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"headers": {"Content-Type": "image/png"}, "content": b"x"}, "'image/png' is not"),
        ({"headers": {"Content-Type": "application/pdf"}, "content": b"x"}, "text/plain (the raw"),
        ({"files": {"doc": ("a.png", b"x", "image/png")}}, "input doc takes text/plain"),
        ({"json": {"doc_name": "a"}}, "'application/json' is not accepted by pipeline 'words'"),
    ],
)
def test_a_wrong_media_type_is_415_naming_the_accepted_ones(tiny, kwargs, words) -> None:
    headers = {**AUTH, **kwargs.pop("headers", {})}
    assert_problem(
        tiny.post(WORDS, headers=headers, **kwargs), 415, words, "unsupported-media-type"
    )


def test_version_and_readyz_list_every_pipeline_with_its_variants(tiny) -> None:
    version = tiny.get("/v1/version").json()
    assert set(version["pipelines"]) == {"poem", "words"}
    assert version["pipelines"]["words"]["path"] == WORDS
    assert set(version["pipelines"]["poem"]["variants"]) == {"a", "b"}
    assert (
        version["pipelines"]["poem"]["variants"]["b"]["prompts"]["poem_prompt"]["version"] == "v2"
    )
    assert tiny.get("/readyz").json()["pipelines"] == {"poem": ["a", "b"], "words": ["a", "b"]}


def test_metrics_carry_the_pipeline(tiny) -> None:
    tiny.post(POEM, headers=AUTH, json={"topic": "sun"})
    tiny.post(WORDS, headers=RAW_TEXT, content=b"a")
    tiny.post(WORDS, headers={**AUTH, "Content-Type": "image/png"}, content=b"a")
    text = tiny.get("/metrics").text
    assert 'promptdag_requests_total{pipeline="poem",status="ok",variant=' in text
    assert 'promptdag_requests_total{pipeline="words",status="ok",variant=' in text
    assert 'promptdag_rejected_total{pipeline="words",reason="unsupported-media-type"} 1.0' in text


def test_openapi_describes_each_pipelines_request_and_response(tiny) -> None:
    doc = tiny.get("/openapi.json").json()
    poem, words = doc["paths"][POEM]["post"], doc["paths"][WORDS]["post"]
    assert set(poem["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert set(words["requestBody"]["content"]) == {"multipart/form-data", "text/plain"}
    json_body = poem["requestBody"]["content"]["application/json"]["schema"]
    assert json_body["additionalProperties"] is False and json_body["required"] == ["topic"]
    assert json_body["properties"]["lines"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 5,
        "default": 3,
    }
    form = words["requestBody"]["content"]["multipart/form-data"]
    assert form["schema"]["properties"]["doc"]["format"] == "binary"
    assert form["encoding"] == {"doc": {"contentType": "text/plain"}}
    headers = [p["name"] for p in words["parameters"] if p["in"] == "header"]
    assert headers == ["X-Promptdag-Input-Passphrase"]
    assert "passphrase" not in [p["name"] for p in words["parameters"] if p["in"] == "query"]
    schemas = doc["components"]["schemas"]
    ok = {"$ref": "#/components/schemas/PoemRun"}
    assert poem["responses"]["200"]["content"]["application/json"]["schema"] == ok
    assert schemas["PoemRun"]["properties"]["answer"]["type"] == "string"
    assert schemas["PoemRun"]["properties"]["variant"]["enum"] == ["a", "b"]
    assert schemas["WordsRun"]["properties"]["outputs"]["properties"] == {
        "word_count": {"type": "integer"},
        "doc_label": {"type": "string"},
        "unlocked": {"type": "boolean"},
    }
    assert poem["responses"]["415"]["content"]["application/problem+json"]["schema"] == {
        "$ref": "#/components/schemas/Problem"
    }
    assert not empty_schemas(doc)


def test_answers_conform_to_the_openapi_response_schema(tiny) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    doc = tiny.get("/openapi.json").json()
    for path, kwargs in (
        (POEM, {"json": {"topic": "moon"}}),
        (WORDS, {"content": b"a b c", "headers": RAW_TEXT}),
    ):
        r = tiny.post(path, **{"headers": AUTH, **kwargs})
        assert r.status_code == 200, r.text
        ref = doc["paths"][path]["post"]["responses"]["200"]["content"]["application/json"]
        schema = {**ref["schema"], "components": doc["components"]}
        jsonschema.validate(r.json(), schema)


def test_an_input_named_like_a_meta_field_stops_startup(make_client, tmp_path) -> None:
    contract = TINY_CONTRACT.replace(
        'rhyme = { kind = "boolean", default = false }',
        'rhyme = { kind = "boolean", default = false }\nsubject_id = { kind = "string", default = "" }',
    )
    root = write_tiny_project(tmp_path / "clash", {"pyproject.toml": contract})
    with pytest.raises(ConfigError, match="declares input 'subject_id', a request meta field"):
        make_client(project=root)


def test_a_pipeline_that_does_not_build_stops_startup_naming_it(make_client, tmp_path) -> None:
    contract = TINY_CONTRACT.replace(
        'outputs = ["word_count", "doc_label", "unlocked"]',
        'outputs = ["word_count", "doc_label", "unlocked", "sentiment"]',
    )
    root = write_tiny_project(tmp_path / "broken", {"pyproject.toml": contract})
    with pytest.raises(
        ConfigError,
        match=r"pipeline 'words', variant 'a': \[tool.promptdag.pipelines.words\] output "
        "'sentiment' is not a node",
    ):
        make_client(project=root)
