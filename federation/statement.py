"""What a run's outputs guarantee, in words: the one owner of the headline privacy statement.

``summary.json`` opens with :func:`guarantee_statement` (key ``"guarantee"``) and
:func:`participation_statement` (key ``"participation"``); the report's first line is the same
guarantee, read from ``summary.json`` or, for a run that has none yet, built here from the same
config and ledger totals. Torch-free (the report loads without torch): it reads the typed
:class:`~federation.config.Config` and :meth:`privacy.Accountant.totals`, nothing else.

What it states (DESIGN.md 5.1, 5.2, 5.4b, 5.5):

- The ticket (each round's too) is covered, under the configured unit(s), with the ε spent.
- Not covered: ticket training (masked FedAvg without noise), the non-private reference search,
  participation (exact counts), the simulation's partition report. Under ``train-privacy =
  dp-sgd`` the trained weights are covered instead by their own sentence (:func:`training_statement`,
  DESIGN.md 5.8): a separate figure, for one example added or removed; :func:`whole_run` composes both.
- A user-set ``noise-seed`` makes every noise draw reproducible: the statement then opens with
  :data:`NOT_PRIVATE` and claims nothing else.
- Data-free scores (every release ε = 0): the search read no client data, the training still does.

:func:`whole_run` states what *everything* the run releases guarantees together (search, ticket
training, accuracies): one (ε, δ) per client at record level, one example replaced, by basic
composition of the phases' figures (``summary.json``'s ``"whole-run"``). The replace-one
figure of DP-SGD's add-or-remove guarantee comes from group privacy (derivation in
:func:`replace_one_from_add_remove`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from federation.config import TRAIN_PRIVACY_DP_FEDAVG, TRAIN_PRIVACY_DP_SGD, UNIT_BOTH, Config
from federation.layout import (
    LEDGER_FILE,
    METRICS_FILE,
    PHASE_SEARCH,
    PHASE_TRAIN,
    REFERENCE_DIR,
    TICKET_FILE,
    TICKETS_DIR,
    TRAIN_LEDGER_FILE,
)
from privacy import UNIT_CLIENT, UNIT_RECORD, PrivacyTotals

__all__ = [
    "NOTHING_PRIVATE",
    "PhaseFigure",
    "WholeRun",
    "NOT_PRIVATE",
    "guarantee_statement",
    "noised_units",
    "participation_statement",
    "replace_one_from_add_remove",
    "seeded_noise_warning",
    "whole_run",
    "without_client_ids",
]

NOT_PRIVATE: Final = "NOT PRIVATE"
"""The first words of a statement whose noise can be removed (a user-set ``noise-seed``)."""
NOTHING_PRIVATE: Final = "Nothing is private"
"""The first words of a non-private run's statement (no noise under any configured unit)."""
A_CLIENT: Final = "a client"
"""What a published text says where the operator's text named a client (:func:`without_client_ids`)."""


def noised_units(config: Config) -> tuple[str, ...]:
    """The units under which the configured DP search adds noise (finite ε), in the order record, client.

    ``()`` means the search itself is non-private (``epsilon = inf`` under the record unit,
    ``client-epsilon = inf`` under the client unit); data-free scores are not considered here
    (:func:`federation.pipeline.search_is_private` adds them).
    """
    units = []
    if config.unit in (UNIT_RECORD, UNIT_BOTH) and math.isfinite(config.epsilon):
        units.append(UNIT_RECORD)
    if config.unit in (UNIT_CLIENT, UNIT_BOTH) and math.isfinite(config.client_epsilon):
        units.append(UNIT_CLIENT)
    return tuple(units)


def seeded_noise_warning(config: Config) -> str | None:
    """The NOT PRIVATE sentence of a run with a user-set ``noise-seed``; ``None`` under OS entropy (DESIGN.md 5.5)."""
    if config.noise_seed < 0:
        return None
    return (f"{NOT_PRIVATE}: noise-seed={config.noise_seed} makes every noise draw reproducible;"
            " anyone who knows the seed can remove it.")


def _number(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.6g}"


def _epsilon(epsilon: float, delta: float) -> str:
    return f"ε = {_number(epsilon)}" if delta == 0.0 else f"(ε, δ) = ({_number(epsilon)}, {_number(delta)})"


def _listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _data_free(totals: PrivacyTotals) -> bool:
    """Every release in the ledger is an ε = 0, δ = 0 event: data-free scores (DESIGN.md 5.4)."""
    spent = (totals.record_epsilon_max, totals.record_delta_max, totals.client_epsilon, totals.client_delta)
    return totals.num_events > 0 and all(value == 0.0 for value in spent)


def _scope(totals: PrivacyTotals) -> str:
    if totals.phases == (PHASE_SEARCH,):
        rounds = sum(1 for row in totals.rounds if row.phase == PHASE_SEARCH)
        return f"over {rounds} search round{'s' if rounds != 1 else ''}"
    return "over every release in the ledger (phases: " + ", ".join(totals.phases) + ")"


_TRAINING = "the trained weights and accuracies (masked FedAvg without noise: ε = ∞ for every client that trained)"


def training_statement(config: Config) -> str | None:
    """Under ``train-privacy = dp-sgd`` or ``dp-fedavg``: what the trained weights guarantee (``None`` otherwise)."""
    if config.train_privacy == TRAIN_PRIVACY_DP_FEDAVG:
        return (
            "The trained weights and accuracies come from client-level DP-FedAvg (Flower's server-side fixed"
            f" clipping): the server clips each client's model update to L2 norm {config.train_clip:g} and adds"
            " Gaussian noise to their average, so the whole ticket training (every model, every round) is"
            f" ε = {_number(config.train_epsilon)}, δ = {config.train_delta:g} client-level DP by Rényi DP for one"
            " client's data zeroed out (it still takes part, with a zero update; one client replaced is"
            f" (2ε, (1 + e^ε)δ)), charged in {TRAIN_LEDGER_FILE}; the server sees the exact updates, so it"
            " must be trusted."
        )
    if config.train_privacy != TRAIN_PRIVACY_DP_SGD:
        return None
    return (
        f"The trained weights and accuracies come from record-level DP-SGD on each device: each client's whole ticket"
        f" training (every model, every round) is calibrated by its device to ε = {_number(config.train_epsilon)},"
        f" δ = {config.train_delta:g} by Rényi DP for one example added or removed (charged in {TRAIN_LEDGER_FILE};"
        " summary.json's whole-run composes it with the figure above)."
    )


def _not_covered_training(config: Config) -> list[str]:
    return [] if training_statement(config) is not None else [_TRAINING]


def _with_training(config: Config, sentence: str) -> str:
    extra = training_statement(config)
    return sentence if extra is None else f"{sentence} {extra}"


_PARTICIPATION = "who took part (participation counts are exact)"
_PARTITIONS = f"the partition report's label counts per client ({METRICS_FILE}, where the server can read the data)"


def _private_units(config: Config, totals: PrivacyTotals) -> tuple[str, ...]:
    """The configured noised units whose spent ε is finite (a release without noise voids a unit)."""
    spent = {UNIT_RECORD: totals.record_epsilon_max, UNIT_CLIENT: totals.client_epsilon}
    return tuple(unit for unit in noised_units(config) if math.isfinite(spent[unit]))


def _covered(config: Config, totals: PrivacyTotals, private: tuple[str, ...]) -> list[str]:
    parts = []
    if config.unit in (UNIT_RECORD, UNIT_BOTH):
        if UNIT_RECORD in private:
            rdp = totals.record_rdp_epsilon_max
            figure = (_epsilon(totals.record_epsilon_max, totals.record_delta_max) if rdp is None or totals.rdp_delta is None
                      else _epsilon(rdp, totals.rdp_delta))
            parts.append(
                f"{figure} record-level DP for every client's"
                " examples (one example replaced; the noise is added and its ε bounded by each device's own policy,"
                " before its vote leaves it)"
            )
        else:
            parts.append("not record-level DP against the server (the votes leave the devices without noise: ε = ∞)")
    if config.unit in (UNIT_CLIENT, UNIT_BOTH):
        if UNIT_CLIENT in private:
            parts.append(
                f"{_epsilon(totals.client_epsilon, totals.client_delta)} client-level DP (one client added or removed;"
                " the server adds the noise to the exact votes, so it must be trusted)"
            )
        else:
            parts.append("not client-level DP (no noise on the server: ε = ∞)")
    return parts


def guarantee_statement(config: Config, totals: PrivacyTotals) -> str:
    """One or two sentences saying exactly what the run's outputs guarantee and what they do not.

    Parameters
    ----------
    config
        The run's typed config (its unit, budgets, ``noise-seed``, ``reference-search``).
    totals
        The DP search's ledger totals (:meth:`privacy.Accountant.totals`): the ε spent, the
        phases and rounds charged. The reference search's ledger is not part of them.

    Returns
    -------
    str
        Opens with :data:`NOT_PRIVATE` under a user-set ``noise-seed``, with
        :data:`NOTHING_PRIVATE` when the search adds no noise under any configured unit.
    """
    seeded = seeded_noise_warning(config)
    if seeded is not None:
        return f"{seeded} The ε figures of this run assume noise that nobody can reproduce; they do not hold for it."
    if _data_free(totals):
        return _with_training(config, (
            f"The search read no client data (data-free score {config.score}: every one of its {totals.num_events}"
            f" releases is ε = 0), so the ticket ({TICKET_FILE}) reveals nothing about any client's examples."
            f" Not covered: {_listing([*_not_covered_training(config), _PARTICIPATION, _PARTITIONS])}."
        ))
    units = noised_units(config)
    private = _private_units(config, totals)
    if not private:
        if units:  # configured with noise, yet the ledger says otherwise: the ledger is what happened
            why = "the ledger holds search releases without noise (ε = ∞)"
        else:
            why = "the search added no noise (" + {UNIT_RECORD: "epsilon = inf", UNIT_CLIENT: "client-epsilon = inf"}.get(
                config.unit, "epsilon = client-epsilon = inf") + ")"
        if training_statement(config) is not None:
            return _with_training(config, f"{NOTHING_PRIVATE} in the search: {why}, so the ticket is ε = ∞ for every"
                                  " client that voted, and participation counts are exact.")
        return (
            f"{NOTHING_PRIVATE}: {why}, so the ticket is ε = ∞ for every client that voted; the trained weights"
            " and accuracies come from masked FedAvg without noise, and participation counts are exact."
        )
    if totals.num_events == 0:
        budgets = " and ".join(
            f"ε = {_number(config.epsilon)} record-level per client" if unit == UNIT_RECORD
            else f"ε = {_number(config.client_epsilon)} client-level" for unit in units
        )
        return (f"No search release is in the ledger yet: the search has read no client data so far"
                f" (configured: {budgets}).")
    not_covered = _not_covered_training(config)
    if config.reference_search:
        not_covered.append(f"the non-private reference search ({REFERENCE_DIR}/, ε = ∞)")
    not_covered += [_PARTICIPATION, _PARTITIONS]
    covered = " and ".join(_covered(config, totals, private))
    composition = "basic composition"
    if totals.record_rdp_epsilon_max is not None and UNIT_RECORD in private:  # DESIGN.md 5.4: basic beside RDP
        composition = (f"Rényi-DP composition of the record-level releases (the budget is enforced on it; basic"
                       f" composition gives {_epsilon(totals.record_epsilon_max, totals.record_delta_max)})")
    return _with_training(config, (
        f"The ticket ({TICKET_FILE}, and each round's in {TICKETS_DIR}/) is {covered}, by {composition}"
        f" {_scope(totals)}. Not covered: {_listing(not_covered)}."
    ))


def participation_statement(config: Config) -> str:
    """What the run publishes about who took part, and where the client ids are (DESIGN.md 5.4b).

    The counts are exact; the ledger names the clients charged; ``summary.json`` and the report
    name none.
    """
    if config.unit in (UNIT_CLIENT, UNIT_BOTH):
        unit = ", so whether one client took part, which client-level DP would otherwise hide, is not protected"
    else:
        unit = " (the record unit protects each client's examples, not whether the client took part)"
    return (
        f"Participation is published exactly, not noised: {METRICS_FILE} and the report give, per round, the"
        f" clients sampled, the replies, the failures, the voters and the rejected votes{unit}. The ledger"
        f" ({LEDGER_FILE}) names every client charged, because per-client record-level accounting and resume need"
        " it: it is the operator's record, not for publication; the report and summary.json list no client ids."
    )


def without_client_ids(text: str | None, client_ids: Iterable[str]) -> str | None:
    """``text`` with every client id of ``client_ids`` replaced by :data:`A_CLIENT`, for publication.

    The server's own messages (a budget refusal names the client, ``client 'partition-3'``) go to
    its log as they are; what ``summary.json`` and the report publish names no client
    (DESIGN.md 5.4b). An id is replaced where it stands as a whole token, quoted or not, and a
    preceding word "client" goes with it. ``None`` stays ``None``.
    """
    if text is None:
        return None
    for client in sorted(set(client_ids), key=len, reverse=True):  # "partition-10" before "partition-1"
        token = rf"(?<![\w.:-])(?:client )?(['\"]?){re.escape(client)}\1(?![\w:-])(?!\.[\w.:-])"
        text = re.sub(token, A_CLIENT, text)
    return text


# --------------------------------------------------------------------------------------------------
# The whole run: everything it releases, composed into one figure per client.


def replace_one_from_add_remove(epsilon: float, delta: float) -> tuple[float, float]:
    """A replace-one (ε', δ') bound from an add-or-remove (ε, δ) one: (2ε, (1 + e^ε) δ).

    Group privacy of size 2: replacing an example of D to get D' is removing it (D -> D⁻) and then
    adding another (D⁻ -> D'). For any output set S,
    P[M(D) ∈ S] <= e^ε P[M(D⁻) ∈ S] + δ <= e^ε (e^ε P[M(D') ∈ S] + δ) + δ = e^2ε P[M(D') ∈ S] + (1 + e^ε) δ.
    DP-SGD's figure (Opacus, dp_accounting: the sampled Gaussian's RDP) is add-or-remove; the
    search's is replace-one (DESIGN.md 5.1): this puts both under one relation before they compose.
    """
    if math.isinf(epsilon):
        return math.inf, delta
    return 2.0 * epsilon, min(1.0, (1.0 + math.exp(epsilon)) * delta)


@dataclass(frozen=True, kw_only=True)
class PhaseFigure:
    """One phase's record-level (ε, δ) per client, for one example replaced, and where it comes from."""

    phase: str = field(metadata={"help": "search or train"})
    epsilon: float = field(metadata={"help": "the largest client's ε (inf: a release without noise)"})
    delta: float = field(metadata={"help": "its δ"})
    source: str = field(metadata={"help": "how the figure was obtained, in words"})

    def to_json(self) -> dict[str, Any]:
        return {"phase": self.phase, "epsilon": self.epsilon, "delta": self.delta, "source": self.source}


@dataclass(frozen=True, kw_only=True)
class WholeRun:
    """What everything a run releases guarantees together, per client, record level (one example replaced).

    ``epsilon``/``delta``: basic composition (Σε, Σδ) of the phases' figures, each phase at the
    accountant its budget is enforced on (RDP for DP-SGD); ``basic_epsilon``/``basic_delta``: the
    same with every release at its own figure (looser, beside it). Each phase's figure is the
    largest client's, so the sum bounds every client's whole run. ``client_level`` is the
    client-unit figure of the whole run (unit client or both), else ``None``.
    """

    epsilon: float
    delta: float
    basic_epsilon: float
    basic_delta: float
    phases: tuple[PhaseFigure, ...]
    client_level: float | None
    sentence: str

    def to_json(self) -> dict[str, Any]:
        """``summary.json``'s ``"whole-run"``."""
        return {
            "statement": self.sentence, "relation": "one example replaced (record level, per client)",
            "epsilon": self.epsilon, "delta": self.delta,
            "basic": {"epsilon": self.basic_epsilon, "delta": self.basic_delta},
            "phases": [figure.to_json() for figure in self.phases], "client-level-epsilon": self.client_level,
        }


def _read_data(totals: PrivacyTotals | None) -> bool:
    """Whether a search's ledger holds a release that read client data (any event that is not ε = 0)."""
    return totals is not None and totals.num_events > 0 and not _data_free(totals)


def _search_figure(
    config: Config, totals: PrivacyTotals, reference: PrivacyTotals | None
) -> tuple[PhaseFigure, tuple[float, float]]:
    """The searches' enforced figure and its all-basic one (replace-one: the votes' own relation).

    The reference search (its own ledger, ``reference``) counts here too: its exact votes make the
    record-level figure ∞ whenever it read client data, even if the DP search released nothing.
    """
    basic = (totals.record_epsilon_max, totals.record_delta_max)
    infinite = None
    if _read_data(reference):
        infinite = f"the non-private reference search ({REFERENCE_DIR}/) released exact votes"
    elif _read_data(totals) and config.unit == UNIT_CLIENT:
        infinite = "under unit client the votes leave the devices without record-level noise"
    elif _read_data(totals) and math.isinf(basic[0]):
        infinite = f"the search released votes without noise (ε = ∞ in {LEDGER_FILE})"
    if infinite is None and not _read_data(totals):
        return PhaseFigure(phase=PHASE_SEARCH, epsilon=0.0, delta=0.0, source=(
            "the search read no client data" + (f" (data-free score {config.score})" if totals.num_events else ""))
        ), (0.0, 0.0)
    if infinite is not None:
        return PhaseFigure(phase=PHASE_SEARCH, epsilon=math.inf, delta=0.0, source=infinite), (math.inf, 0.0)
    if totals.record_rdp_epsilon_max is not None and totals.rdp_delta is not None and math.isfinite(basic[0]):
        return PhaseFigure(phase=PHASE_SEARCH, epsilon=totals.record_rdp_epsilon_max, delta=totals.rdp_delta,
                           source=f"Rényi DP of the votes ({LEDGER_FILE}, the enforced accountant)"), basic
    return PhaseFigure(phase=PHASE_SEARCH, epsilon=basic[0], delta=basic[1],
                       source=f"basic composition of the votes ({LEDGER_FILE})"), basic


def _fedavg_figure(config: Config, train: PrivacyTotals | None,
                   fedavg_epsilon: float | None) -> tuple[PhaseFigure, tuple[float, float]]:
    """DP-FedAvg's record-level figure: ∞ against the server, which sees the exact updates."""
    figure = 0.0 if fedavg_epsilon is None else fedavg_epsilon
    return PhaseFigure(phase=PHASE_TRAIN, epsilon=math.inf, delta=0.0, source=(
        f"DP-FedAvg's updates reach the server exactly (its client-level noise, ε = {_number(figure)} at"
        f" δ = {config.train_delta:g} in {TRAIN_LEDGER_FILE}, protects what the server publishes)")), (math.inf, 0.0)


def _train_figure(config: Config, train: PrivacyTotals | None) -> tuple[PhaseFigure, tuple[float, float]]:
    """Ticket training's replace-one figure: ∞ for plain SGD, else DP-SGD's RDP figure by group privacy."""
    if config.train_privacy != TRAIN_PRIVACY_DP_SGD:
        return PhaseFigure(phase=PHASE_TRAIN, epsilon=math.inf, delta=0.0, source=(
            "masked FedAvg without noise (train-privacy = none): the weights are released exactly")), (math.inf, 0.0)
    if train is None or not train.record_releases:
        return PhaseFigure(phase=PHASE_TRAIN, epsilon=0.0, delta=0.0,
                           source=f"no DP-SGD release charged yet ({TRAIN_LEDGER_FILE})"), (0.0, 0.0)
    rdp, rdp_delta = train.record_rdp_epsilon_max, train.rdp_delta
    if rdp is None or rdp_delta is None or not math.isfinite(train.record_epsilon_max):
        rdp, rdp_delta = train.record_epsilon_max, train.record_delta_max
    epsilon, delta = replace_one_from_add_remove(rdp, rdp_delta)
    basic = replace_one_from_add_remove(train.record_epsilon_max, train.record_delta_max)
    return PhaseFigure(phase=PHASE_TRAIN, epsilon=epsilon, delta=delta, source=(
        f"DP-SGD's Rényi-DP figure ({TRAIN_LEDGER_FILE}) ε = {_number(rdp)}, δ = {rdp_delta:.3g} for one example"
        " added or removed, as (2ε, (1 + e^ε)δ) for one replaced (group privacy)")), basic


def whole_run(
    config: Config, search: PrivacyTotals, train: PrivacyTotals | None, *, reference: PrivacyTotals | None = None,
    fedavg_epsilon: float | None = None,
) -> WholeRun:
    """The guarantee of everything the run releases, composed per client (module docstring).

    Parameters
    ----------
    config
        The run's typed config.
    search
        The DP search's ledger totals (``ledger.jsonl``).
    train
        The training ledger's totals under ``train-privacy = dp-sgd`` (``ledger-train.jsonl``,
        composed by RDP at ``train-delta``), else ``None``.
    reference
        The non-private reference search's ledger totals (``reference/ledger.jsonl``) where it
        ran, else ``None``: exact votes of client data make the whole run ε = ∞.
    fedavg_epsilon
        Under ``train-privacy = dp-fedavg``: the training's client-level RDP ε at ``train-delta``
        (:meth:`federation.dp_fedavg.DpFedAvgCharge.rdp_epsilon`), composed into the client-level figure.

    What it covers: the ticket(s), the trained weights of every model the run trains, and the
    accuracies (the server's test set: public data, no client release). Not: participation and
    the partition report (:func:`guarantee_statement` says so), and a run with a ``noise-seed``
    (NOT PRIVATE) or whose search adds no noise.
    """
    search_figure, search_basic = _search_figure(config, search, reference)
    if config.train_privacy == TRAIN_PRIVACY_DP_FEDAVG:
        train_figure, train_basic = _fedavg_figure(config, train, fedavg_epsilon)
    else:
        train_figure, train_basic = _train_figure(config, train)
    phases = (search_figure, train_figure)
    epsilon = math.fsum(f.epsilon for f in phases) if all(math.isfinite(f.epsilon) for f in phases) else math.inf
    delta = min(1.0, math.fsum(f.delta for f in phases))
    basic_eps = search_basic[0] + train_basic[0] if math.isfinite(search_basic[0] + train_basic[0]) else math.inf
    basic_delta = min(1.0, search_basic[1] + train_basic[1])
    client_level = None
    fedavg = config.train_privacy == TRAIN_PRIVACY_DP_FEDAVG
    if config.unit in (UNIT_CLIENT, UNIT_BOTH):
        # Only DP-FedAvg adds client-level noise to training; the search's client-level figure is basic.
        searched = search.client_epsilon if not _read_data(reference) else math.inf
        trained = (fedavg_epsilon or 0.0) if fedavg else math.inf
        client_level = searched + trained if math.isfinite(searched + trained) else math.inf
    seeded = seeded_noise_warning(config)
    if seeded is not None:  # DESIGN.md 5.5: reproducible noise can be removed, so no figure holds
        epsilon = basic_eps = math.inf
        sentence = f"{seeded} No whole-run guarantee holds for it."
    elif math.isfinite(epsilon):
        sentence = (
            f"Everything this run releases (the ticket, the trained weights of every model it trained and their"
            f" accuracies on the server's test set) is {_epsilon(epsilon, delta)} record-level DP for every"
            f" client's examples (one example replaced), by basic composition of the search's"
            f" {_epsilon(search_figure.epsilon, search_figure.delta)} and the training's"
            f" {_epsilon(train_figure.epsilon, train_figure.delta)} (DP-SGD's add-or-remove figure by group privacy)."
        )
    else:
        why = _listing([f.source for f in phases if math.isinf(f.epsilon)])
        sentence = f"The whole run is not record-level DP (ε = ∞): {why}."
    if client_level is not None and seeded is None:
        if math.isfinite(client_level):
            client_delta = min(1.0, search.client_delta + (config.train_delta if fedavg else 0.0))
            sentence += (f" At client level, everything it publishes is {_epsilon(client_level, client_delta)} (one"
                         " client zeroed out; the server, which adds the noise, must be trusted), by basic"
                         f" composition of the search's ε = {_number(search.client_epsilon)} and DP-FedAvg's"
                         f" ε = {_number(fedavg_epsilon or 0.0)} at δ = {config.train_delta:g}.")
        elif fedavg:
            sentence += " At client level the whole run is ε = ∞: the search released votes without client-level noise."
        else:
            sentence += (" At client level the whole run is ε = ∞: ticket training adds no client-level noise"
                         " (train-privacy=dp-fedavg would).")
    elif fedavg and seeded is None:
        sentence += (f" DP-FedAvg makes the trained weights ε = {_number(fedavg_epsilon or 0.0)} client-level DP at"
                     f" δ = {config.train_delta:g} against readers of what the server publishes.")
    return WholeRun(epsilon=epsilon, delta=delta, basic_epsilon=basic_eps, basic_delta=basic_delta, phases=phases,
                    client_level=client_level, sentence=sentence)
