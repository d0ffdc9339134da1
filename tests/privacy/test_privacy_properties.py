"""Property tests (hypothesis): sensitivity bounds, ledger sums, budgets never exceeded."""

from __future__ import annotations

import math
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from privacy import (
    LAPLACE_HISTOGRAM,
    LAPLACE_TOPK,
    Accountant,
    BudgetExceededError,
    Ledger,
    PrivacyEvent,
    clipped_mean,
    record_sensitivity,
    tally_votes,
    validate_vote,
)

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
DOMAIN, MAX_ENTRIES = 12, 3

# Whatever a client may send: index lists (possibly out of range, repeated, too long), floats,
# nested lists, strings, 2-D arrays.
payloads = st.one_of(
    st.lists(st.integers(-3, DOMAIN + 3), max_size=MAX_ENTRIES + 3),
    st.lists(st.integers(0, DOMAIN - 1), max_size=MAX_ENTRIES, unique=True),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4),
    st.lists(st.lists(st.integers(0, 5), max_size=2), max_size=3),
    st.text(max_size=3),
    hnp.arrays(np.int64, hnp.array_shapes(max_dims=2, max_side=4), elements=st.integers(-2, DOMAIN + 2)),
)


def _histogram(sent: list[object]) -> np.ndarray:
    votes = []
    for payload in sent:
        check = validate_vote(payload, domain_size=DOMAIN, max_entries=MAX_ENTRIES, expected_round=1,
                              received_round=1, max_payload_bytes=1024)
        if check.vote is not None:
            votes.append(check.vote)
    return tally_votes(votes, domain_size=DOMAIN, max_entries=MAX_ENTRIES)


@SETTINGS
@given(st.lists(payloads, max_size=8), payloads)
def test_one_more_client_moves_the_histogram_by_at_most_c_in_l1_and_1_in_linf(
    sent: list[object], extra: object
) -> None:
    before, after = _histogram(sent), _histogram([*sent, extra])
    difference = after - before
    assert difference.min() >= 0  # monotone: a client can only add
    assert difference.sum() <= MAX_ENTRIES and difference.max() <= 1


@SETTINGS
@given(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 20), st.integers(1, 6)),
               elements=st.floats(-1e6, 1e6, allow_nan=False)),
    st.data(),
    st.floats(1e-3, 1e3),
)
def test_replacing_one_example_moves_the_clipped_mean_by_at_most_c_over_n(
    contributions: np.ndarray, data: st.DataObject, clip: float
) -> None:
    n, d = contributions.shape
    row = data.draw(st.integers(0, n - 1))
    replacement = data.draw(hnp.arrays(np.float64, d, elements=st.floats(allow_nan=False)))
    neighbour = contributions.copy()
    neighbour[row] = replacement
    bound = record_sensitivity(clip_bound=clip, num_examples=n)
    change = np.abs(clipped_mean(neighbour, clip_bound=clip) - clipped_mean(contributions, clip_bound=clip))
    assert np.all(change <= bound * (1 + 1e-12) + 1e-15 * clip)


CLIENTS = [f"c{i}" for i in range(5)]
events = st.builds(
    lambda unit, eps, participants: PrivacyEvent(
        round=1, phase="search", domain="d", layer=None, unit=unit,
        mechanism=LAPLACE_TOPK if unit == "record" else LAPLACE_HISTOGRAM,
        sensitivity=1.0, noise_scale=1.0 / eps, epsilon=eps, delta=0.0, participants=tuple(participants),
    ),
    st.sampled_from(["record", "client"]),
    st.floats(1e-3, 2.0),
    st.lists(st.sampled_from(CLIENTS), min_size=1, max_size=5, unique=True),
)
rounds = st.lists(st.lists(events, min_size=1, max_size=4), min_size=1, max_size=8)


@SETTINGS
@given(rounds)
def test_ledger_totals_equal_the_sums_of_their_events(planned: list[list[PrivacyEvent]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "ledger.jsonl"
        accountant = Accountant(Ledger(path), record_epsilon_budget=math.inf, client_epsilon_budget=math.inf)
        for batch in planned:
            accountant.charge(batch)
        flat = [event for batch in planned for event in batch]
        expected = {
            client: math.fsum(e.epsilon for e in flat if e.unit == "record" and client in e.participants)
            for client in CLIENTS
            if any(e.unit == "record" and client in e.participants for e in flat)
        }
        central = math.fsum(e.epsilon for e in flat if e.unit == "client")
        resumed = Accountant(Ledger(path), record_epsilon_budget=math.inf, client_epsilon_budget=math.inf)
        for view in (accountant, resumed):
            assert view.record_epsilon_by_client() == expected
            assert view.client_level_epsilon() == central


@SETTINGS
@given(rounds, st.floats(0.0, 3.0), st.floats(0.0, 3.0))
def test_a_budget_is_never_exceeded_whatever_the_rounds(planned: list[list[PrivacyEvent]], record_budget: float,
                                                        client_budget: float) -> None:
    with tempfile.TemporaryDirectory() as directory:
        accountant = Accountant(Ledger(Path(directory) / "ledger.jsonl"), record_epsilon_budget=record_budget,
                                client_epsilon_budget=client_budget)
        for batch in planned:
            reason = accountant.would_exceed(batch)
            try:
                accountant.charge(batch)
                charged = True
            except BudgetExceededError:
                charged = False
            assert charged == (reason is None)
            # Exact (DESIGN.md 5.4): the rational sum of every unit's ε, no float slack.
            events = accountant.ledger.events
            for client in CLIENTS:
                spent = sum((Fraction(e.epsilon) for e in events if e.unit == "record" and client in e.participants),
                            Fraction(0))
                assert spent <= Fraction(record_budget)
            central = sum((Fraction(e.epsilon) for e in events if e.unit == "client"), Fraction(0))
            assert central <= Fraction(client_budget)
