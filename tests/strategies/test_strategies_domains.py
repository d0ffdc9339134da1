"""Vote domains of a round and the privacy events they plan."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernels import candidate_count, kept_count, kernel_keep_fraction
from privacy import (
    DATA_FREE,
    LAPLACE_HISTOGRAM,
    LAPLACE_MONOTONE_TOPK,
    UNIT_CLIENT,
    UNIT_RECORD,
    share,
)
from strategies import (
    PrivacySettings,
    SearchSettings,
    StrategyError,
    VoteDomain,
    build_domains,
    domain_epsilon,
    plan_round_events,
    round_config_record,
)

SHAPES = {"conv1": (4, 2, 3, 3), "conv2": (6, 4, 3, 3), "fc": (10, 24), "head": (3, 10)}
POLICIES = {"conv1": "pattern", "conv2": "pattern", "fc": "unstructured", "head": "dense"}
SPLIT = {"patterns": 0.25, "kernels:conv2": 0.75}


def _domains(density: float = 0.25) -> tuple[VoteDomain, ...]:
    settings = SearchSettings(kernel_vote_layers=("conv2",))
    return build_domains(shapes=SHAPES, policies=POLICIES, settings=settings, density=density)


def test_domains_of_a_round() -> None:
    patterns, kernels = _domains(0.25)
    assert (patterns.name, patterns.size, patterns.top_k, patterns.max_entries) == ("patterns", 56, 8, 8)
    assert patterns.layers == ("conv1", "conv2") and patterns.layer is None
    kept = kept_count(kernel_keep_fraction(0.25, 4), 24)
    assert (kernels.name, kernels.size, kernels.top_k, kernels.max_entries) == ("kernels:conv2", 24, kept, kept)
    assert kernels.layer == "conv2" and kernels.max_payload_bytes == 8 * kept
    assert candidate_count(4) == 56


def test_domains_refuse_what_cannot_be_built() -> None:
    with pytest.raises(StrategyError, match="density of round"):
        _domains(0.5)  # patterns of 4 entries keep at most 4/9 of a layer
    with pytest.raises(StrategyError, match="kernel_vote_layers must be pattern layers"):
        build_domains(shapes=SHAPES, policies=POLICIES, settings=SearchSettings(kernel_vote_layers=("fc",)),
                      density=0.25)
    with pytest.raises(StrategyError, match="library_size must be <= 56"):
        build_domains(shapes=SHAPES, policies=POLICIES, settings=SearchSettings(library_size=57), density=0.25)
    with pytest.raises(StrategyError, match="at least one pattern layer"):
        build_domains(shapes=SHAPES, policies=dict.fromkeys(SHAPES, "dense"), settings=SearchSettings(),
                      density=0.25)


@pytest.mark.parametrize(
    ("split", "match"),
    [
        ({"patterns": 0.5, "kernels:conv2": 0.4}, "must sum to 1"),
        ({"patterns": 1.0, "kernels:conv2": 0.0}, r"must be a number in \(0, 1\]"),
        ({"patterns": math.nan, "kernels:conv2": 1.0}, r"must be a number in \(0, 1\]"),
        ({}, "non-empty mapping"),
    ],
)
def test_bad_splits_are_refused(split: dict, match: str) -> None:
    with pytest.raises(StrategyError, match=match):
        PrivacySettings(epsilon_split=split)


def test_split_must_name_exactly_the_domains() -> None:
    privacy = PrivacySettings(epsilon_split={"patterns": 1.0})
    with pytest.raises(StrategyError, match="epsilon_split keys must be exactly the domains"):
        plan_round_events(_domains(), privacy, participants=["1"], server_round=1)


def test_record_events_split_the_round_epsilon_per_client() -> None:
    privacy = PrivacySettings(epsilon_split=SPLIT, record_epsilon=2.0, clip_bound=1.0, min_examples=50)
    domains = _domains()
    events = plan_round_events(domains, privacy, participants=["1", "2", "3"], server_round=4, attempt=1)
    assert [e.domain for e in events] == ["patterns", "kernels:conv2"]
    assert all(e.unit == UNIT_RECORD and e.participants == ("1", "2", "3") for e in events)
    assert all(e.round == 4 and e.attempt == 1 and e.phase == "search" for e in events)
    assert math.fsum(e.epsilon for e in events) == pytest.approx(2.0)
    assert [e.epsilon for e in events] == pytest.approx([0.5, 1.5])
    assert [e.layer for e in events] == [None, "conv2"]
    for event, domain in zip(events, domains, strict=True):
        assert event.sensitivity == pytest.approx(1.0 / 50)
        assert event.noise_scale == pytest.approx(2 * domain.max_entries * (1.0 / 50) / event.epsilon)


def test_central_events_are_server_events_per_domain() -> None:
    privacy = PrivacySettings(epsilon_split=SPLIT, central_noise="laplace", client_epsilon=1.0)
    events = plan_round_events(_domains(), privacy, participants=["7", "8"], server_round=1)
    central = [e for e in events if e.unit == UNIT_CLIENT]
    assert [e.domain for e in central] == ["patterns", "kernels:conv2"]
    assert [e.epsilon for e in central] == pytest.approx([0.25, 0.75])
    assert {e.mechanism for e in central} <= {LAPLACE_HISTOGRAM, LAPLACE_MONOTONE_TOPK}
    without = plan_round_events(_domains(), privacy, participants=["7"], server_round=1, include_central=False)
    assert all(e.unit == UNIT_RECORD for e in without) and len(without) == 2


def test_data_free_scores_plan_zero_epsilon_events() -> None:
    privacy = PrivacySettings(epsilon_split=SPLIT, score_source="data-free")
    events = plan_round_events(_domains(), privacy, participants=["1"], server_round=1)
    assert [(e.mechanism, e.epsilon, e.unit) for e in events] == [(DATA_FREE, 0.0, UNIT_RECORD)] * 2


def test_no_participants_plan_nothing() -> None:
    privacy = PrivacySettings(epsilon_split=SPLIT, central_noise="laplace")
    assert plan_round_events(_domains(), privacy, participants=[], server_round=1) == ()


# 0.2 + 0.4 + 0.4 (pattern-share 0.2, the rest over two layers) is above 1 in exact arithmetic.
OVER_ONE = {"patterns": 0.2, "kernels:conv1": 0.4, "kernels:conv2": 0.4}


def test_an_overshooting_float_split_is_accepted_but_above_one_exactly() -> None:
    assert math.fsum(OVER_ONE.values()) == 1.0 and sum(map(Fraction, OVER_ONE.values())) > 1
    PrivacySettings(epsilon_split=OVER_ONE)
    # Rounding each f_d * ε down is not enough then: the parts of a round of ε = 1 would exceed it.
    assert sum(Fraction(share(1.0, fraction)) for fraction in OVER_ONE.values()) > 1


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.floats(min_value=1e-6, max_value=1e6), st.sampled_from([SPLIT, OVER_ONE, {"patterns": 1.0}]))
def test_domain_epsilons_sum_to_at_most_the_round_epsilon_exactly(round_epsilon: float, split: dict) -> None:
    privacy = PrivacySettings(epsilon_split=split, record_epsilon=round_epsilon, central_noise="laplace",
                              client_epsilon=round_epsilon)
    for unit in (UNIT_RECORD, UNIT_CLIENT):
        parts = [domain_epsilon(privacy, name, unit) for name in split]
        assert sum(map(Fraction, parts), Fraction(0)) <= Fraction(round_epsilon)
        assert all(part > 0 for part in parts)
        if sum(map(Fraction, split.values())) <= 1:  # the split as given, each part rounded down
            assert parts == [share(round_epsilon, fraction) for fraction in split.values()]


def test_domain_epsilon_is_what_is_charged_and_what_the_clients_are_sent() -> None:
    vote_settings = SearchSettings(kernel_vote_layers=("conv1", "conv2"))
    domains = build_domains(shapes=SHAPES, policies=POLICIES, settings=vote_settings, density=0.25)
    privacy = PrivacySettings(epsilon_split=OVER_ONE, record_epsilon=share(1.0, parts=3), central_noise="laplace",
                              client_epsilon=share(0.3, parts=3), min_examples=50)
    events = plan_round_events(domains, privacy, participants=["1"], server_round=1)
    config = round_config_record(domains=domains, privacy=privacy, settings=vote_settings, server_round=1,
                                 attempt=0, density=0.25)
    for event in events:
        assert event.epsilon == domain_epsilon(privacy, event.domain, event.unit)
        if event.unit == UNIT_RECORD:
            assert config[f"{event.domain}.epsilon"] == event.epsilon
    for unit, round_epsilon in ((UNIT_RECORD, privacy.record_epsilon), (UNIT_CLIENT, privacy.client_epsilon)):
        spent = sum((Fraction(e.epsilon) for e in events if e.unit == unit), Fraction(0))
        assert spent <= Fraction(round_epsilon)


def test_domain_epsilon_refuses_unknown_names() -> None:
    privacy = PrivacySettings(epsilon_split=SPLIT)
    with pytest.raises(StrategyError, match="domain_name must be one of"):
        domain_epsilon(privacy, "kernels:fc", UNIT_RECORD)
    with pytest.raises(StrategyError, match="unit must be one of"):
        domain_epsilon(privacy, "patterns", "user")
    assert domain_epsilon(PrivacySettings(epsilon_split=SPLIT, record_epsilon=math.inf), "patterns", UNIT_RECORD) == math.inf
