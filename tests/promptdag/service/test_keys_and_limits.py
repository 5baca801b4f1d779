"""API keys with ids and their reload without a restart (file change, SIGHUP), the per-key
limits (token bucket, requests in flight), and `promptdag serve` without the serve extra."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promptdag.errors import ConfigError
from promptdag.service.keys import KeyRing, derived_key_id, parse_keys
from promptdag.service.limits import KeyLimits, TokenBucket
from promptdag.service.server import install_sighup
from promptdag.service.settings import ServiceSettings, env_api_keys
from tests.promptdag.service.conftest import SUMMARIZE, TEXT, assert_problem

KEY_A = "alpha-key-0123456789"
KEY_B = "bravo-key-0123456789"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# --- keys ---------------------------------------------------------------------------------


def test_keys_have_explicit_or_derived_ids() -> None:
    keys, problems = parse_keys([(f"team-a:{KEY_A}", "e1"), (KEY_B, "e2")])
    assert problems == []
    ring = KeyRing([f"team-a:{KEY_A}", KEY_B]).load()
    assert ring.identify(KEY_A) == "team-a"
    assert derived_key_id(KEY_B) == hashlib.sha256(KEY_B.encode()).hexdigest()[:8]
    assert ring.identify(KEY_B) == derived_key_id(KEY_B)
    assert ring.identify(f"team-a:{KEY_A}") is None  # the id is not part of the key
    assert ring.identify("nope-nope-nope") is None
    assert sorted(keys.values()) == sorted(["team-a", derived_key_id(KEY_B)])


def test_key_problems_are_listed_without_the_keys() -> None:
    with pytest.raises(ConfigError) as caught:
        KeyRing(["tiny7", f"a:{KEY_A}", f"a:{KEY_B}", f"b:{KEY_A}"]).load()
    problems = caught.value.problems
    assert problems == [
        "PROMPTDAG_API_KEYS entry 1: the key is shorter than 8 characters: use a long random key.",
        "PROMPTDAG_API_KEYS entry 3: key id 'a' is already used (PROMPTDAG_API_KEYS entry 2): "
        "ids must be unique.",
        "PROMPTDAG_API_KEYS entry 4: the same key is already listed as 'a' (PROMPTDAG_API_KEYS "
        "entry 2): give each key one id.",
    ]
    assert not any(k in str(caught.value) for k in (KEY_A, KEY_B, "tiny7"))


def test_env_keys_and_the_key_file_add_up(tmp_path: Path) -> None:
    file = tmp_path / "keys.txt"
    file.write_text(f"# ops team\nops:{KEY_B}\n\n", encoding="utf-8")
    settings = ServiceSettings(api_keys=env_api_keys(f" {KEY_A} ,,"), api_key_file=file)
    settings.check()
    ring = settings.key_ring()
    assert ring.ids == sorted([derived_key_id(KEY_A), "ops"])


def test_an_unreadable_key_file_stops_startup(tmp_path: Path) -> None:
    settings = ServiceSettings(api_key_file=tmp_path / "missing.txt")
    with pytest.raises(ConfigError, match=r"cannot read the API key file .*missing\.txt"):
        settings.check()


def _rewrite(path: Path, text: str) -> None:
    """Write `text` so that a reload sees a change (a new inode, whatever the clock)."""
    tmp = path.with_suffix(".new")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def test_the_key_file_is_reloaded_when_it_changes(make_client, tmp_path, caplog) -> None:
    file = tmp_path / "keys.txt"
    file.write_text(f"alpha:{KEY_A}\n", encoding="utf-8")
    client = make_client(api_keys=frozenset(), api_key_file=file, key_file_check_s=0.0)
    assert client.post(SUMMARIZE, headers=bearer(KEY_A), json={"text": TEXT}).status_code == 200
    assert client.post(SUMMARIZE, headers=bearer(KEY_B), json={"text": TEXT}).status_code == 401
    _rewrite(file, f"bravo:{KEY_B}\n")
    assert client.post(SUMMARIZE, headers=bearer(KEY_A), json={"text": TEXT}).status_code == 401
    assert client.post(SUMMARIZE, headers=bearer(KEY_B), json={"text": TEXT}).status_code == 200
    # a broken file (a short key) leaves the keys as they were, and says why in the log
    caplog.set_level(logging.ERROR, logger="promptdag.service")
    _rewrite(file, f"bravo:{KEY_B}\ncharlie:tiny\n")
    assert client.post(SUMMARIZE, headers=bearer(KEY_B), json={"text": TEXT}).status_code == 200
    assert "the API keys were not reloaded, the previous 1 stay in use" in caplog.text
    assert "line 2: the key is shorter than 8 characters" in caplog.text
    assert KEY_B not in caplog.text and "tiny" not in caplog.text


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_sighup_reloads_the_key_file(make_client, tmp_path) -> None:
    file = tmp_path / "keys.txt"
    file.write_text(f"alpha:{KEY_A}\n", encoding="utf-8")
    client = make_client(api_keys=frozenset(), api_key_file=file, key_file_check_s=3600.0)
    restore = install_sighup(client.app.state.promptdag)
    try:
        _rewrite(file, f"bravo:{KEY_B}\n")  # not looked at for an hour: only SIGHUP reloads
        assert client.post(SUMMARIZE, headers=bearer(KEY_A), json={"text": TEXT}).status_code == 200
        os.kill(os.getpid(), signal.SIGHUP)
        assert client.post(SUMMARIZE, headers=bearer(KEY_A), json={"text": TEXT}).status_code == 401
        assert client.post(SUMMARIZE, headers=bearer(KEY_B), json={"text": TEXT}).status_code == 200
    finally:
        restore()


# --- limits -------------------------------------------------------------------------------


def test_the_token_bucket_allows_bursts_then_the_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0)
    assert [bucket.take(10.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(10.0) == pytest.approx(0.5)  # empty: one token every 0.5 s
    assert bucket.take(10.5) == 0.0
    assert bucket.take(10.5) == pytest.approx(0.5)
    assert [bucket.take(100.0) for _ in range(4)][-1] > 0  # saves up at most `burst`


def test_key_limits_count_each_key_apart() -> None:
    limits = KeyLimits(max_in_flight=2, rate=1.0, burst=5)
    assert limits.admit("a", 0.0) is None and limits.admit("a", 0.0) is None
    refused = limits.admit("a", 0.0)
    assert refused is not None and refused.status == 429 and refused.slug == "key-concurrency"
    assert refused.headers == {"Retry-After": "1"} and "its cap is 2" in refused.detail
    assert limits.admit("b", 0.0) is None  # another key is not affected
    limits.release("a")
    assert limits.admit("a", 0.0) is None
    limits.release("a"), limits.release("a"), limits.release("b")
    assert limits.in_flight == {}


def test_key_rate_limit_says_when_to_retry() -> None:
    limits = KeyLimits(max_in_flight=None, rate=0.25, burst=1)
    assert limits.admit("a", 0.0) is None
    limits.release("a")
    refused = limits.admit("a", 1.0)  # 3 s until the next token
    assert refused is not None and refused.slug == "rate-limited"
    assert refused.headers == {"Retry-After": "3"}
    assert "may send 0.25 requests per second (bursts of 1)" in refused.detail
    assert limits.admit("a", 4.0) is None


def test_a_rate_limited_key_leaves_other_keys_alone(make_client, tmp_path) -> None:
    client = make_client(api_keys=frozenset({f"a:{KEY_A}", f"b:{KEY_B}"}), key_rate=0.01)
    assert client.post(SUMMARIZE, headers=bearer(KEY_A), json={"text": TEXT}).status_code == 200
    r = client.post(SUMMARIZE, headers=bearer(KEY_A), json={"text": TEXT})
    body = assert_problem(r, 429, "API key 'a' may send 0.01 requests per second", "rate-limited")
    assert body["key_id"] == "a" and int(r.headers["Retry-After"]) >= 1
    assert client.post(SUMMARIZE, headers=bearer(KEY_B), json={"text": TEXT}).status_code == 200
    metrics = client.get("/metrics").text
    assert 'promptdag_rejected_total{pipeline="summarize",reason="rate-limited"} 1.0' in metrics


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"key_max_in_flight": 0}, "key_max_in_flight=0: use 1 or more"),
        ({"key_rate": 0.0}, "key_rate=0.0: use a number of requests per second > 0"),
        ({"key_burst": 0, "key_rate": 1.0}, "key_burst=0: use 1 or more"),
        ({"body_timeout_s": 0.0}, "body_timeout_s=0.0: use a number of seconds > 0"),
        ({"header_timeout_s": -1.0}, "header_timeout_s=-1.0: use a number of seconds > 0"),
    ],
)
def test_bad_limits_stop_startup(overrides, words) -> None:
    with pytest.raises(ConfigError, match=words):
        ServiceSettings(api_keys=frozenset({KEY_A}), **overrides).check()


# --- the serve extra ----------------------------------------------------------------------


def test_serve_without_the_serve_extra_says_how_to_install_it(monkeypatch) -> None:
    from promptdag.cli import app

    for name in [m for m in sys.modules if m.startswith("promptdag.service")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "fastapi", None)  # an import of it now fails
    before = set(sys.modules)
    result = CliRunner().invoke(app, ["serve", "--insecure-no-auth"])
    for name in set(sys.modules) - before:  # half-imported by the failed attempt
        if name.startswith("promptdag.service"):
            del sys.modules[name]
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert lines == [
        "error: promptdag serve needs the serve extra (fastapi is not installed): "
        "pip install 'promptdag[serve]'"
    ]
