"""The headline privacy statement (federation.statement): the important words of every case.

Totals come from a real privacy.Accountant charging real events to a real ledger, as the
pipeline's do; the assertions check words and figures, not whole sentences.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from federation.config import Config
from federation.statement import (
    A_CLIENT,
    NOT_PRIVATE,
    NOTHING_PRIVATE,
    guarantee_statement,
    noised_units,
    participation_statement,
    seeded_noise_warning,
    without_client_ids,
)
from privacy import (
    LAPLACE_TOPK,
    Accountant,
    Ledger,
    PrivacyEvent,
    PrivacyTotals,
    data_free_spec,
    histogram_calibration,
    topk_spec,
)

CLIENTS = ("partition-0", "partition-1", "partition-2")


def _totals(
    path: Path, *, rounds: int = 5, record: float | None = None, central: float | None = None,
    data_free: bool = False, clients: Sequence[str] = CLIENTS,
) -> PrivacyTotals:
    """A search ledger as the pipeline charges it: per round, one record-unit vote of ε ``record``
    (inf = exact votes), optionally a central release of ε ``central``, or a data-free vote."""
    accountant = Accountant(Ledger(path / "ledger.jsonl"), record_epsilon_budget=math.inf,
                            client_epsilon_budget=math.inf)
    for round_ in range(1, rounds + 1):
        def event(spec, round_=round_):
            return PrivacyEvent.from_spec(spec, round=round_, phase="search", domain="patterns", layer=None,
                                          participants=tuple(clients))
        events = []
        if data_free:
            events.append(event(data_free_spec("record")))
        if record is not None:
            events.append(event(topk_spec(mechanism=LAPLACE_TOPK, k=8, epsilon=record, sensitivity=1 / 512)))
        if central is not None:
            events.append(event(histogram_calibration(top_k=8, max_entries=8, epsilon=central).spec))
        accountant.charge(events)
    return accountant.totals()


def _no_client_id(text: str) -> None:
    assert not any(client in text for client in CLIENTS), text


def test_the_default_run_covers_the_ticket_at_record_level_and_names_what_it_does_not(tmp_path: Path) -> None:
    text = guarantee_statement(Config(), _totals(tmp_path, record=0.2))
    assert text.startswith("The ticket (ticket.safetensors")
    assert "ε = 1 record-level DP for every client's examples" in text and "one example replaced" in text
    assert "noise is added and its ε bounded by each device's own policy" in text and "over 5 search rounds" in text
    covered, not_covered = text.split("Not covered: ")
    assert "client-level" not in covered
    assert "masked FedAvg without noise" in not_covered and "ε = ∞ for every client that trained" in not_covered
    assert "non-private reference search" in not_covered and "participation counts are exact" in not_covered
    _no_client_id(text)


def test_without_the_reference_search_the_statement_does_not_mention_it(tmp_path: Path) -> None:
    text = guarantee_statement(Config(reference_search=False), _totals(tmp_path, record=0.2))
    assert "reference" not in text and "masked FedAvg without noise" in text


def test_the_client_unit_says_the_server_is_trusted(tmp_path: Path) -> None:
    # unit=client: the clients vote exactly (record events of ε = inf), the server adds central noise
    totals = _totals(tmp_path, record=math.inf, central=0.4, rounds=3)
    text = guarantee_statement(Config(unit="client", client_epsilon=1.2, search_rounds=3, hold_rounds=1), totals)
    assert "ε = 1.2 client-level DP" in text and "one client added or removed" in text and "must be trusted" in text
    assert "record-level" not in text and "over 3 search rounds" in text and "Not covered" in text


def test_the_both_unit_states_both_guarantees(tmp_path: Path) -> None:
    totals = _totals(tmp_path, record=0.2, central=0.1)
    text = guarantee_statement(Config(unit="both"), totals)
    assert "ε = 1 record-level DP" in text and "ε = 0.5 client-level DP" in text
    assert "noise is added and its ε bounded by each device's own policy" in text and "must be trusted" in text


def test_the_both_unit_without_local_noise_says_the_votes_leave_unnoised(tmp_path: Path) -> None:
    totals = _totals(tmp_path, record=math.inf, central=0.1)
    text = guarantee_statement(Config(unit="both", epsilon=math.inf), totals)
    assert "not record-level DP against the server" in text and "ε = 0.5 client-level DP" in text


@pytest.mark.parametrize(("changes", "knob"), [
    ({"epsilon": math.inf}, "epsilon = inf"),
    ({"unit": "client", "client_epsilon": math.inf}, "client-epsilon = inf"),
    ({"unit": "both", "epsilon": math.inf, "client_epsilon": math.inf}, "epsilon = client-epsilon = inf"),
])
def test_a_non_private_run_says_nothing_is_private(tmp_path: Path, changes: dict, knob: str) -> None:
    config = Config(**changes)
    assert noised_units(config) == ()
    text = guarantee_statement(config, _totals(tmp_path, record=math.inf))
    assert text.startswith(NOTHING_PRIVATE) and knob in text and "participation counts are exact" in text


def test_noise_a_ledger_does_not_show_is_not_claimed(tmp_path: Path) -> None:
    # configured with a finite ε, but the ledger holds exact votes: the ledger is what happened
    text = guarantee_statement(Config(), _totals(tmp_path, record=math.inf))
    assert text.startswith(NOTHING_PRIVATE) and "releases without noise" in text


def test_data_free_scores_read_no_client_data_but_the_training_does(tmp_path: Path) -> None:
    text = guarantee_statement(Config(score="magnitude"), _totals(tmp_path, data_free=True))
    assert text.startswith("The search read no client data") and "magnitude" in text and "ε = 0" in text
    assert "Not covered" in text and "masked FedAvg without noise" in text and "record-level DP" not in text
    # ε = inf with data-free scores is still data-free (the search is its own non-private pipeline)
    assert guarantee_statement(Config(score="synflow", epsilon=math.inf), _totals(tmp_path / "x", data_free=True)
                               ).startswith("The search read no client data")


@pytest.mark.parametrize("changes", [{}, {"epsilon": math.inf}, {"unit": "client"}, {"score": "magnitude"}])
def test_a_noise_seed_makes_every_statement_open_with_not_private(tmp_path: Path, changes: dict) -> None:
    config = Config(noise_seed=3, **changes)
    text = guarantee_statement(config, _totals(tmp_path, record=0.2))
    assert text.startswith(f"{NOT_PRIVATE}: noise-seed=3 makes every noise draw reproducible")
    assert "anyone who knows the seed can remove it" in text and "record-level DP" not in text
    assert seeded_noise_warning(config) is not None and text.startswith(seeded_noise_warning(config))
    assert seeded_noise_warning(Config()) is None


def test_before_any_release_the_statement_says_nothing_was_read(tmp_path: Path) -> None:
    text = guarantee_statement(Config(), _totals(tmp_path, rounds=0))
    assert text.startswith("No search release is in the ledger yet") and "ε = 1 record-level per client" in text


def test_releases_of_other_phases_widen_the_scope(tmp_path: Path) -> None:
    accountant = Accountant(Ledger(tmp_path / "ledger.jsonl"), record_epsilon_budget=math.inf,
                            client_epsilon_budget=math.inf)
    for phase in ("search", "training"):
        accountant.charge([PrivacyEvent.from_spec(
            topk_spec(mechanism=LAPLACE_TOPK, k=8, epsilon=0.5, sensitivity=0.01), round=1, phase=phase,
            domain="patterns", layer=None, participants=CLIENTS,
        )])
    text = guarantee_statement(Config(), accountant.totals())
    assert "over every release in the ledger (phases: search, training)" in text


def test_participation_is_exact_and_the_ledger_is_the_operator_s_record() -> None:
    record = participation_statement(Config())
    assert "exactly, not noised" in record and "metrics.jsonl" in record and "ledger.jsonl" in record
    assert "not for publication" in record and "list no client ids" in record
    assert "not whether the client took part" in record
    for unit in ("client", "both"):
        assert "whether one client took part" in participation_statement(Config(unit=unit))
        assert "is not protected" in participation_statement(Config(unit=unit))


def test_published_text_names_no_client() -> None:
    reason = "record-level epsilon budget of client 'partition-1' would be exceeded: spent 1 + requested 0.2 > budget 1."
    assert without_client_ids(reason, CLIENTS) == (
        f"record-level epsilon budget of {A_CLIENT} would be exceeded: spent 1 + requested 0.2 > budget 1."
    )
    ids = ("partition-1", "partition-10", "node.a")
    text = without_client_ids("partition-10, partition-1. node.a.b and node.a", ids)
    assert text == f"{A_CLIENT}, {A_CLIENT}. node.a.b and {A_CLIENT}"
    assert without_client_ids(None, ids) is None


def test_the_statement_module_loads_without_torch() -> None:
    code = "import sys, federation.statement; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "False"


def test_the_readme_quotes_the_main_job_s_statement_as_the_builder_writes_it(tmp_path: Path) -> None:
    # the main job: 10 clients, all sampled in each of the 5 rounds, ε / 5 each
    clients = tuple(f"partition-{i}" for i in range(10))
    text = guarantee_statement(Config(), _totals(tmp_path, record=0.2, clients=clients))
    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    assert f'"{text}"' in readme


def test_dp_sgd_training_is_covered_by_its_own_sentence_and_no_longer_listed_as_not_covered(tmp_path: Path) -> None:
    config = Config(train_privacy="dp-sgd", train_epsilon=3.0, train_delta=1e-6)
    text = guarantee_statement(config, _totals(tmp_path, record=0.2))
    ticket, training = text.split(" The trained weights and accuracies come from record-level DP-SGD")
    assert "masked FedAvg without noise" not in text and "Not covered: " in ticket
    assert "ε = 3, δ = 1e-06 by Rényi DP for one example added or removed" in training
    assert "ledger-train.jsonl" in training and "whole-run composes it with the figure above" in training
    plain = guarantee_statement(config.replace(epsilon=math.inf), _totals(tmp_path / "inf", record=math.inf))
    assert plain.startswith(f"{NOTHING_PRIVATE} in the search") and "record-level DP-SGD" in plain
    assert guarantee_statement(Config(), _totals(tmp_path / "none", record=0.2)).count("DP-SGD") == 0


# --------------------------------------------------------------------------------------------------
# The whole run (federation.statement.whole_run): search and training composed per client.


def _train_totals(path: Path, *, sigma: float = 1.1, rate: float = 0.02, steps: int = 50, rounds: int = 3,
                  delta: float = 1e-5) -> PrivacyTotals:
    """A training ledger as DpSgdCharge writes it: one dp-sgd event per client and round, RDP at ``delta``."""
    from privacy import ENFORCE_RDP, dp_sgd_event

    accountant = Accountant(Ledger(path / "ledger-train.jsonl"), record_epsilon_budget=math.inf,
                            client_epsilon_budget=0.0, delta_budget=delta, enforce=ENFORCE_RDP)
    for round_ in range(1, rounds + 1):
        accountant.record([dp_sgd_event(round=round_, domain="dp_ticket", client_id=client, noise_multiplier=sigma,
                                        sample_rate=rate, steps=steps, clip=1.0, delta=delta, phase="train")
                           for client in CLIENTS])
    return accountant.totals()


def test_the_replace_one_figure_of_an_add_or_remove_gaussian_bounds_the_exact_one() -> None:
    """Group privacy is conservative: the Gaussian sum of L2-clipped vectors has add-or-remove Δ = C and
    replace-one Δ = 2C; its exact δ at 2ε (replace-one) is at most (1 + e^ε) times its exact δ at ε."""
    from scipy.stats import norm

    from federation.statement import replace_one_from_add_remove

    def exact_delta(epsilon: float, sensitivity: float, sigma: float) -> float:  # Balle and Wang 2018, Thm 8
        a, b = sensitivity / (2 * sigma), epsilon * sigma / sensitivity
        return float(norm.cdf(a - b) - math.exp(epsilon) * norm.cdf(-a - b))

    for sigma in (0.7, 1.5, 4.0):
        for epsilon in (0.1, 0.5, 1.0, 3.0):
            delta = exact_delta(epsilon, 1.0, sigma)
            replaced_epsilon, replaced_delta = replace_one_from_add_remove(epsilon, delta)
            assert replaced_epsilon == 2 * epsilon
            assert exact_delta(replaced_epsilon, 2.0, sigma) <= replaced_delta * (1 + 1e-12)
    assert replace_one_from_add_remove(math.inf, 1e-5) == (math.inf, 1e-5)


def test_the_whole_run_composes_the_search_and_dp_sgd_training_per_client(tmp_path: Path) -> None:
    from federation.statement import whole_run

    config = Config(reference_search=False, train_privacy="dp-sgd")
    search = _totals(tmp_path, record=0.2)
    (tmp_path / "t").mkdir()
    train = _train_totals(tmp_path / "t")
    run = whole_run(config, search, train)
    t, t_delta = train.record_rdp_epsilon_max, train.rdp_delta
    assert t is not None and 0 < t < train.record_epsilon_max  # RDP is tighter than the sum of the rounds' own
    assert run.epsilon == pytest.approx(search.record_epsilon_max + 2 * t)
    assert run.delta == pytest.approx(search.record_delta_max + (1 + math.exp(t)) * t_delta)
    assert run.basic_epsilon == pytest.approx(search.record_epsilon_max + 2 * train.record_epsilon_max)
    assert run.basic_epsilon > run.epsilon and run.client_level is None
    text = run.sentence
    assert text.startswith("Everything this run releases") and "one example replaced" in text
    assert "group privacy" in text and "trained weights" in text
    _no_client_id(text)
    assert [figure["phase"] for figure in run.to_json()["phases"]] == ["search", "train"]


def test_the_whole_run_is_not_private_when_anything_it_releases_has_no_noise(tmp_path: Path) -> None:
    from federation.statement import whole_run

    search = _totals(tmp_path, record=0.2)
    plain = whole_run(Config(reference_search=False), search, None)
    assert math.isinf(plain.epsilon) and plain.sentence.startswith("The whole run is not record-level DP")
    assert "masked FedAvg without noise" in plain.sentence
    (tmp_path / "reference").mkdir()
    exact_votes = _totals(tmp_path / "reference", record=math.inf)
    reference = whole_run(Config(reference_search=True, train_privacy="dp-sgd"), search, None, reference=exact_votes)
    assert math.isinf(reference.epsilon) and "reference search" in reference.sentence
    # The DP search stopped before it released anything, but the reference search ran: still ε = ∞.
    (tmp_path / "nothing").mkdir()
    silent = whole_run(Config(reference_search=True, train_privacy="dp-sgd"), _totals(tmp_path / "nothing", rounds=0),
                       None, reference=exact_votes)
    assert math.isinf(silent.epsilon) and "reference search" in silent.sentence
    (tmp_path / "exact").mkdir()
    exact = whole_run(Config(reference_search=False, epsilon=math.inf, train_privacy="dp-sgd"),
                      _totals(tmp_path / "exact", record=math.inf), None)
    assert math.isinf(exact.epsilon) and "without noise" in exact.sentence
    both = whole_run(Config(unit="both", reference_search=False, train_privacy="dp-sgd"), search, None)
    assert both.client_level == math.inf and "client level the whole run is ε = ∞" in both.sentence
    seeded = whole_run(Config(noise_seed=3, reference_search=False, train_privacy="dp-sgd"), search, None)
    assert seeded.sentence.startswith(NOT_PRIVATE)
    # Reproducible noise can be removed: no figure holds, and the JSON must not print one.
    assert math.isinf(seeded.epsilon) and math.isinf(seeded.to_json()["basic"]["epsilon"])


def test_a_data_free_search_leaves_the_whole_run_at_the_training_figure(tmp_path: Path) -> None:
    from federation.statement import replace_one_from_add_remove, whole_run

    search = _totals(tmp_path, data_free=True)
    (tmp_path / "t").mkdir()
    train = _train_totals(tmp_path / "t")
    run = whole_run(Config(score="magnitude", train_privacy="dp-sgd"), search, train)  # the reference reads nothing
    assert (run.epsilon, run.delta) == pytest.approx(
        replace_one_from_add_remove(train.record_rdp_epsilon_max, train.rdp_delta))


def test_dp_fedavg_training_is_client_level_and_infinite_at_record_level_against_the_server(tmp_path: Path) -> None:
    from federation.statement import guarantee_statement, whole_run

    search = _totals(tmp_path, record=0.2)
    record = whole_run(Config(reference_search=False, train_privacy="dp-fedavg"), search, None, fedavg_epsilon=1.5)
    assert math.isinf(record.epsilon) and "reach the server exactly" in record.sentence
    assert record.client_level is None and "ε = 1.5 client-level DP" in record.sentence
    (tmp_path / "c").mkdir()
    central = _totals(tmp_path / "c", central=0.1)
    config = Config(unit="client", reference_search=False, train_privacy="dp-fedavg", train_epsilon=2.0)
    client = whole_run(config, central, None, fedavg_epsilon=1.5)
    assert client.client_level == pytest.approx(central.client_epsilon + 1.5)
    assert "At client level, everything it publishes is" in client.sentence
    text = guarantee_statement(config, central)
    assert "client-level DP-FedAvg" in text and "must be trusted" in text and "without noise" not in text
    _no_client_id(client.sentence)
