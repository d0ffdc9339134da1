"""Accountant.totals: the one computation of the figures a run quotes (DESIGN.md 5.4)."""

from __future__ import annotations

import math
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from privacy import LAPLACE_HISTOGRAM, LAPLACE_TOPK, Accountant, Ledger, PrivacyEvent, PrivacyTotals, RoundTotal


def record(round_: int, participants: tuple[str, ...], epsilon: float, *, phase: str = "search",
           delta: float = 0.0) -> PrivacyEvent:
    return PrivacyEvent(round=round_, phase=phase, domain="library", layer=None, unit="record",
                        mechanism=LAPLACE_TOPK, sensitivity=0.1, noise_scale=0.2 / epsilon,
                        epsilon=epsilon, delta=delta, participants=participants)


def central(round_: int, epsilon: float) -> PrivacyEvent:
    return PrivacyEvent(round=round_, phase="search", domain="library", layer=None, unit="client",
                        mechanism=LAPLACE_HISTOGRAM, sensitivity=2.0, noise_scale=2.0 / epsilon, epsilon=epsilon,
                        delta=0.0, participants=("a", "b"))


def unbudgeted(path: Path) -> Accountant:
    return Accountant(Ledger(path), record_epsilon_budget=math.inf, client_epsilon_budget=math.inf, delta_budget=1.0)


def test_totals_are_the_accountants_sums_per_client_per_round_and_in_json(tmp_path: Path) -> None:
    accountant = unbudgeted(tmp_path / "ledger.jsonl")
    accountant.charge([record(1, ("client-10", "client-2"), 0.1, delta=1e-6), central(1, 0.5)])
    accountant.charge([record(2, ("client-2",), 0.2), record(1, ("client-3",), 0.3, phase="train")])
    totals = accountant.totals()
    assert isinstance(totals, PrivacyTotals)
    assert list(totals.record_epsilon_by_client) == ["client-2", "client-3", "client-10"]  # natural order
    assert dict(totals.record_epsilon_by_client) == accountant.record_epsilon_by_client()
    assert dict(totals.record_delta_by_client) == accountant.record_delta_by_client()
    assert dict(totals.record_releases_by_client) == {"client-2": 2, "client-3": 1, "client-10": 1}
    assert totals.record_epsilon_max == accountant.basic_composition(unit="record")[0]
    assert totals.record_epsilon_mean == math.fsum(accountant.record_epsilon_by_client().values()) / 3
    assert (totals.client_epsilon, totals.client_delta) == accountant.basic_composition(unit="client")
    assert (totals.record_releases, totals.client_releases, totals.num_events) == (3, 1, 4)
    assert totals.phases == ("search", "train") and totals.worst_client == "client-2"
    assert totals.rounds == (
        RoundTotal(phase="search", round=1, record_epsilon_max=0.1, client_epsilon=0.5),
        RoundTotal(phase="search", round=2, record_epsilon_max=math.fsum([0.1, 0.2]), client_epsilon=0.5),
        # client-2's Σε stays the largest after client-3's release in another phase
        RoundTotal(phase="train", round=1, record_epsilon_max=math.fsum([0.1, 0.2]), client_epsilon=0.5),
    )
    data = totals.to_json()
    assert data["record"] == {"max": totals.record_epsilon_max, "mean": totals.record_epsilon_mean, "clients": 3,
                              "releases": 3}  # no client id: per-client figures stay in the ledger
    assert data["client"] == {"total": 0.5, "releases": 1}
    assert data["delta"] == {"record-max": 1e-6, "client": 0.0}
    assert data["rounds"][1] == {"phase": "search", "round": 2, "record-max": math.fsum([0.1, 0.2]), "client": 0.5}


def test_an_empty_ledger_has_zero_totals_and_no_rounds(tmp_path: Path) -> None:
    totals = unbudgeted(tmp_path / "ledger.jsonl").totals()
    assert (totals.record_epsilon_max, totals.record_epsilon_mean, totals.client_epsilon) == (0.0, 0.0, 0.0)
    assert totals.rounds == () and totals.worst_client is None and totals.to_json()["record"]["clients"] == 0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.sets(st.sampled_from("abcd"), min_size=1),
                          st.floats(1e-3, 10.0)), min_size=1, max_size=12))
def test_the_last_round_figure_is_exactly_the_total_and_a_reopened_ledger_agrees(tmp_path_factory, charges) -> None:
    path = tmp_path_factory.mktemp("ledger") / "ledger.jsonl"
    accountant = unbudgeted(path)
    for round_, clients, epsilon in charges:
        accountant.charge([record(round_, tuple(sorted(clients)), epsilon)])
    totals = accountant.totals()
    assert totals.rounds[-1].record_epsilon_max == totals.record_epsilon_max  # exact (fsum), not approximately
    assert unbudgeted(path).totals() == totals  # a resumed run / the report quote the same figures
