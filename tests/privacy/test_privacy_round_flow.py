"""One search round end to end with the privacy API only: client votes, server validation,
tally, central release, write-ahead charge, refusal of the round that would exceed a budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from privacy import (
    Accountant,
    BudgetExceededError,
    Ledger,
    PrivacyEvent,
    RejectReason,
    clipped_mean,
    histogram_calibration,
    histogram_diagnostic,
    laplace_topk,
    noisy_topk_histogram,
    record_sensitivity,
    tally_votes,
    topk_spec,
    validate_vote,
)

DOMAIN, K_CLIENT, K_SERVER, EPS_RECORD, EPS_CLIENT = 56, 8, 8, 0.5, 1.0


def _plan(round_: int, clients: list[str], sensitivity: float) -> list[PrivacyEvent]:
    record_spec = topk_spec(mechanism="laplace-topk", k=K_CLIENT, epsilon=EPS_RECORD, sensitivity=sensitivity)
    central_spec = histogram_calibration(top_k=K_SERVER, max_entries=K_CLIENT, epsilon=EPS_CLIENT).spec
    return [
        PrivacyEvent.from_spec(record_spec, round=round_, phase="search", domain="library", layer=None,
                               participants=clients),
        PrivacyEvent.from_spec(central_spec, round=round_, phase="search", domain="library", layer=None,
                               participants=clients),
    ]


def test_search_rounds_until_the_budget_stops_them(tmp_path: Path) -> None:
    data_rng, noise_rng = np.random.default_rng(0), np.random.default_rng(1)
    clients = [f"client-{i}" for i in range(20)]
    n_examples, clip = 50, 1.0
    sensitivity = record_sensitivity(clip_bound=clip, num_examples=n_examples)
    accountant = Accountant(Ledger(tmp_path / "ledger.jsonl"), record_epsilon_budget=1.0, client_epsilon_budget=2.0)
    winners_by_round = []
    for round_ in (1, 2, 3):
        planned = _plan(round_, clients, sensitivity)
        if round_ == 3:  # a third round would take every client to ε = 1.5 > 1
            assert accountant.would_exceed(planned) is not None
            with pytest.raises(BudgetExceededError):
                accountant.charge(planned)
            break
        accountant.charge(planned)  # write-ahead: on disk before any noise is drawn
        replies = []
        for client in clients:
            contributions = data_rng.random((n_examples, DOMAIN)) * np.linspace(0.5, 1.5, DOMAIN)
            scores = clipped_mean(contributions, clip_bound=clip)
            vote = laplace_topk(scores, k=K_CLIENT, epsilon=EPS_RECORD, sensitivity=sensitivity, rng=noise_rng)
            replies.append(vote.indices)
        replies.append(np.arange(DOMAIN))  # a hostile client
        checks = [validate_vote(reply, domain_size=DOMAIN, max_entries=K_CLIENT, expected_round=round_,
                                received_round=round_, max_payload_bytes=4096) for reply in replies]
        assert [c.reason for c in checks if not c.accepted] == [RejectReason.TOO_MANY]
        counts = tally_votes([c.vote for c in checks if c.vote is not None], domain_size=DOMAIN, max_entries=K_CLIENT)
        assert counts.sum() == len(clients) * K_CLIENT
        release = noisy_topk_histogram(counts, top_k=K_SERVER, max_entries=K_CLIENT, epsilon=EPS_CLIENT, rng=noise_rng)
        assert release.publishable_counts is not None  # c = K: Lap(c/ε) on the whole histogram
        assert not histogram_diagnostic(release.spec, num_voters=len(clients)).noise_dominated
        winners_by_round.append(set(release.winners.tolist()))
    assert len(winners_by_round) == 2
    assert accountant.record_epsilon_by_client() == {client: 1.0 for client in clients}
    assert accountant.client_level_epsilon() == 2.0
    assert len(Ledger(tmp_path / "ledger.jsonl").events) == 4  # the refused round wrote nothing
