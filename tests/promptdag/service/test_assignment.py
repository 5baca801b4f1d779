"""A/B assignment: weights honoured, sticky per subject across restarts, forced only when allowed."""

from __future__ import annotations

from collections import Counter

import pytest

from promptdag.errors import ConfigError, InputError
from promptdag.service.assignment import Assigner
from tests.promptdag.service.conftest import AUTH, POEM, SUMMARIZE, TEXT, WORDS


@pytest.mark.parametrize(
    "weights", [{"a": 0.5, "b": 0.5}, {"a": 0.8, "b": 0.2}, {"a": 1, "b": 2, "c": 7}]
)
def test_split_over_10000_subjects_is_within_two_points_of_the_weights(weights) -> None:
    assigner = Assigner(weights)
    counts = Counter(assigner.assign(f"subject-{i}").variant for i in range(10_000))
    total = sum(weights.values())
    for name, w in weights.items():
        assert abs(counts[name] / 10_000 - w / total) <= 0.02, (name, counts)


def test_random_assignment_also_follows_the_weights() -> None:
    assigner = Assigner({"a": 0.9, "b": 0.1})
    counts = Counter(assigner.assign(None).variant for _ in range(10_000))
    assert abs(counts["a"] / 10_000 - 0.9) <= 0.02


def test_same_subject_same_variant_in_a_new_assigner() -> None:
    first = Assigner({"a": 0.5, "b": 0.5})
    second = Assigner({"b": 0.5, "a": 0.5})  # another process, weights listed in another order
    assert all(first.sticky(f"s{i}") == second.sticky(f"s{i}") for i in range(2_000))


def test_another_salt_reshuffles_subjects() -> None:
    a, b = Assigner({"a": 1, "b": 1}), Assigner({"a": 1, "b": 1}, salt="experiment-2")
    assert sum(a.sticky(f"s{i}") != b.sticky(f"s{i}") for i in range(1_000)) > 300


def test_zero_weight_variants_are_not_served_and_all_zero_is_an_error() -> None:
    assert set(Assigner({"a": 1, "b": 0}).weights) == {"a"}
    with pytest.raises(ConfigError, match="no variant has a weight > 0"):
        Assigner({"a": 0})


def test_forced_needs_permission_and_a_served_variant() -> None:
    with pytest.raises(InputError, match="disabled"):
        Assigner({"a": 1}).assign("s", forced="a")
    allowed = Assigner({"a": 1, "b": 1}, allow_forced=True)
    assert allowed.assign("s", forced="b").how == "forced"
    with pytest.raises(InputError, match="not served here"):
        allowed.assign("s", forced="zzz")


def test_sticky_assignment_survives_a_service_restart(make_client) -> None:
    subjects = [f"user-{i}" for i in range(12)]

    def variants(client) -> dict[str, str]:
        return {
            s: client.post(SUMMARIZE, headers=AUTH, json={"text": TEXT, "subject_id": s}).json()[
                "variant"
            ]
            for s in subjects
        }

    first = make_client()
    before = variants(first)
    first.__exit__(None, None, None)
    after = variants(make_client())
    assert before == after
    assert len(set(before.values())) == 2  # both variants are in use


def test_each_pipeline_splits_its_requests_and_a_subject_keeps_its_variant_in_every_one(
    tiny,
) -> None:
    subjects = [f"user-{i}" for i in range(16)]
    poem, words = {}, {}
    for s in subjects:
        r = tiny.post(POEM, headers=AUTH, json={"topic": "rain", "subject_id": s})
        assert r.status_code == 200, r.text
        poem[s] = r.json()["variant"]
        r = tiny.post(
            WORDS + f"?subject_id={s}",
            headers={**AUTH, "Content-Type": "text/plain"},
            content=b"one two",
        )
        assert r.status_code == 200, r.text
        words[s] = r.json()["variant"]
    assert set(poem.values()) == {"a", "b"}
    assert poem == words
