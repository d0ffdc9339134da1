"""The search phase of a run: the run config turned into the strategy's typed settings, and the loop.

Budgets and per-round calibration (DESIGN.md 5.4): a search of ``T = search-rounds`` rounds gives
every round ``ε / T`` of each client's record-level budget ``epsilon`` and ``client-epsilon / T``
of the server's client-level budget, rounded down to a float (:func:`privacy.share`), so a
client that takes part in every round spends at most its budget, exactly, and all ``T`` rounds
fit; the accountant (which compares exactly) refuses any round (a retry included) that would go
beyond it, and the search then stops with the last ticket. Within a round the ε is split over
the vote domains (``patterns``, and ``kernels:<layer>`` with ``kernel-votes``) by
``pattern-share``, each part rounded down too (:func:`strategies.domain_epsilon`).

Gaussian votes (``mechanism=gaussian-topk``) also spend δ: ``delta / T`` per round, split as ε
is (:func:`strategies.domain_delta`). Under ``budget-accountant=rdp`` the per-round ε is instead
the largest whose ``T`` rounds compose by Rényi DP to at most ``epsilon`` at ``δ = delta``
(:func:`privacy.gaussian_rdp_round_epsilon`), and the accountant enforces the budget on that
RDP figure; the ledger keeps each release's own (ε, δ), so basic composition (then above
``epsilon``) is still reported beside it (DESIGN.md 5.4).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, MetricRecord
import torch
from flwr.serverapp import Grid
from torch import nn

from federation.config import UNIT_BOTH, Config, reads_client_data
from federation.layout import JOURNAL_FILE, KIND_SEARCH_ROUND, LEDGER_FILE, TICKETS_DIR, search_phase
from federation.model_io import plain_weights, ticket_policies
from federation.rundir import RunDirectory
from kernels import LayerPolicy
from models import prunable_layers
from privacy import (
    ENFORCE_RDP,
    GAUSSIAN_TOPK,
    UNIT_CLIENT,
    UNIT_RECORD,
    Accountant,
    Ledger,
    ReleaseJournal,
    gaussian_rdp_round_epsilon,
    share,
)
from strategies import (
    NO_CENTRAL_NOISE,
    PATTERNS_DOMAIN,
    SCORE_DATA_FREE,
    SCORE_RECORD,
    DensitySchedule,
    PatternSearch,
    PrivacyGate,
    PrivacySettings,
    SearchOutcome,
    SearchSettings,
    domain_delta,
    domain_epsilon,
    kernel_domain_name,
    run_search,
)

__all__ = ["SearchPlan", "build_strategy", "plan_search", "run_search_phase"]

Progress = Callable[[str], None]
Checkpoint = Callable[[PrivacyGate], None]


@dataclass(frozen=True)
class SearchPlan:
    """Everything the strategy of one search needs, derived from the run config."""

    policies: dict[str, LayerPolicy]
    settings: SearchSettings
    privacy: PrivacySettings
    schedule: DensitySchedule
    record_budget: float
    client_budget: float
    delta_budget: float = 0.0
    enforce: str = "basic"


def plan_search(config: Config, model: nn.Module, *, reference: bool) -> SearchPlan:
    """The typed settings of the DP search (``reference=False``) or of the non-private reference.

    ``unit=record``: clients add record-level noise (``epsilon``); ``unit=client``: clients send
    plain top-k and the server adds central noise (``client-epsilon``); ``both``: both. The
    reference search adds no noise anywhere (ε = inf), with the same scores and schedule.
    """
    policies = ticket_policies(model, other_layers=config.other_layers)
    pattern_layers = [name for name, policy in policies.items() if policy is LayerPolicy.PATTERN]
    kernel_layers = tuple(pattern_layers) if config.kernel_votes else ()
    # DESIGN.md 5.4: within a round, the domains' releases compose sequentially; the split of the
    # round's ε over them is explicit config (pattern-share) and sums to 1.
    if kernel_layers:
        rest = (1.0 - config.pattern_share) / len(kernel_layers)
        split = {PATTERNS_DOMAIN: config.pattern_share, **{kernel_domain_name(name): rest for name in kernel_layers}}
    else:
        split = {PATTERNS_DOMAIN: 1.0}
    data_free = not reads_client_data(config)
    record_on = config.unit in (UNIT_RECORD, UNIT_BOTH) and not reference
    central_on = config.unit in (UNIT_CLIENT, UNIT_BOTH) and not reference and not data_free
    rounds = config.search_rounds
    record_budget = config.epsilon if record_on else math.inf
    client_budget = config.client_epsilon if central_on else math.inf
    gaussian = record_on and not data_free and math.isfinite(record_budget) and config.mechanism == GAUSSIAN_TOPK
    privacy = PrivacySettings(
        epsilon_split=split,
        score_source=SCORE_DATA_FREE if data_free else SCORE_RECORD,
        local_mechanism=config.mechanism,
        # DESIGN.md 5.4: per round ε / T of the whole-search budget (basic composition over T rounds),
        # rounded down so that T rounds sum to at most the budget exactly (inf stays inf).
        record_epsilon=share(record_budget, parts=rounds),
        # DESIGN.md 5.1/5.4: Gaussian votes spend δ / T per round, rounded down like ε (basic composition).
        record_delta=share(config.delta, parts=rounds) if gaussian else 0.0,
        clip_mode=config.clip_mode,
        clip_bound=config.clip_bound,  # C; 1 under clip-mode=normalise (config.check_names)
        min_examples=config.score_examples,  # DESIGN.md 5.1: clients score exactly n examples, Δ = C / n
        central_noise=config.central_noise if central_on and math.isfinite(client_budget) else NO_CENTRAL_NOISE,
        # DESIGN.md 5.2/5.4: the server's central releases, ε / T per round (basic composition), rounded down
        # as above; 1.0 is unused without central noise.
        client_epsilon=share(client_budget, parts=rounds) if math.isfinite(client_budget) else 1.0,
        noise_seed=None if config.noise_seed < 0 else config.noise_seed,
        phase=search_phase(reference=reference),
    )
    delta_budget = config.delta if gaussian else 0.0
    enforce = config.budget_accountant if gaussian else "basic"
    if gaussian and enforce == ENFORCE_RDP:
        base = privacy

        def round_pairs(per_round: float) -> list[tuple[float, float]]:
            trial = dataclasses.replace(base, record_epsilon=per_round)
            return [(domain_epsilon(trial, name, UNIT_RECORD), domain_delta(trial, name)) for name in split]

        privacy = dataclasses.replace(privacy, record_epsilon=gaussian_rdp_round_epsilon(
            epsilon=record_budget, delta=config.delta, rounds=rounds, round_pairs=round_pairs))
    settings = SearchSettings(
        library_size=config.patterns,
        pattern_entries=config.pattern_entries,
        centre_fixed=True,
        kernel_vote_layers=kernel_layers,
        scope="layer",
        allocation=config.layer_allocation,
        connected=True,  # DESIGN.md 3: every published ticket keeps input->output paths
        clients_per_round=config.clients_per_round(),
        min_replies=config.min_replies,
        sampling_seed=config.seed,
        config_hash=config.run_hash(),
        identify_clients=True,
        identity_timeout=config.round_timeout,
    )
    start = config.pattern_entries / 9  # the most an m-entry library keeps: round 0 of the schedule
    target = min(start, 1.0 - config.sparsity)
    hold = config.hold_rounds
    schedule = DensitySchedule(start=start, target=target, decay_rounds=rounds - hold, hold_rounds=hold)
    return SearchPlan(policies, settings, privacy, schedule, record_budget, client_budget, delta_budget, enforce)


def data_free_prior(config: Config, model: nn.Module, policies: Mapping[str, LayerPolicy]) -> dict[str, torch.Tensor] | None:
    """Kernel scores of the free prior at θ0 (``prior``; DESIGN.md 3), or ``None`` for magnitude.

    ``synflow``: the per-kernel sum of iterative SynFlow scores (Tanaka et al. 2020) of the public
    θ0 at the target density, computed by the server: it reads no client data (ε = 0). Kernels
    SynFlow prunes to score 0 are ranked among themselves by the energy of their public weights.
    """
    if config.prior == "magnitude":
        return None
    # Keyed by the weights themselves: the DP and the reference search of a run share one computation.
    digest = hashlib.sha256()
    for name, layer in prunable_layers(model).items():
        digest.update(name.encode())
        digest.update(layer.weight.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    key = (config.prior, config.sparsity, config.pattern_entries, digest.hexdigest(),
           tuple(sorted((name, policy.value) for name, policy in policies.items())))
    if key not in _PRIOR_CACHE:
        _PRIOR_CACHE.clear()  # one run at a time: keep only the latest
        _PRIOR_CACHE[key] = _compute_prior(config, model, policies)
    return {name: value.clone() for name, value in _PRIOR_CACHE[key].items()}


_PRIOR_CACHE: dict[tuple[Any, ...], dict[str, torch.Tensor]] = {}


def _compute_prior(config: Config, model: nn.Module, policies: Mapping[str, LayerPolicy]) -> dict[str, torch.Tensor]:
    from kernels import enumerate_candidates
    from models.scores import Domain, ScoreRequest, get

    request = ScoreRequest(domains=frozenset({Domain.KERNELS}), policies=dict(policies),
                           candidates=enumerate_candidates(config.pattern_entries, centre_fixed=True),
                           density=1.0 - config.sparsity)
    result = get(config.prior).score(model, request, None)
    layers = prunable_layers(model)
    prior: dict[str, torch.Tensor] = {}
    for name, policy in policies.items():
        if policy is not LayerPolicy.PATTERN:
            continue
        flow = result.vector("kernels", name).detach().to(torch.float64)
        energy = (layers[name].weight.detach().to(torch.float64) ** 2).sum(dim=(2, 3))
        tie_break = energy / (energy.max() if energy.max() > 0 else 1.0)  # in [0, 1]
        positive = flow[flow > 0]
        step = float(positive.min()) if positive.numel() else 1.0
        prior[name] = flow + 1e-3 * step * tie_break  # below the smallest SynFlow gap: order kept
    return prior


def build_strategy(config: Config, model: nn.Module, folder: Path, *, reference: bool) -> PrivacyGate:
    """The strategy of one search, its ledger ``folder/ledger.jsonl`` opened (and counted, on resume).

    A :class:`PatternSearch` wrapped in the :class:`PrivacyGate` that plans, checks, journals and
    charges its releases.

    Its release journal ``folder/ledger.journal.jsonl`` records, before each round's messages
    leave, what every sampled client is asked to release (a server killed mid-round is then
    charged in full on resume, :meth:`PrivacyGate.settle_interrupted_rounds`).
    """
    plan = plan_search(config, model, reference=reference)
    layers = prunable_layers(model)
    weights = {name: layers[name].weight.detach().clone() for name in plan.policies}
    folder.mkdir(parents=True, exist_ok=True)
    accountant = Accountant(
        Ledger(folder / LEDGER_FILE),
        record_epsilon_budget=plan.record_budget,
        client_epsilon_budget=plan.client_budget,
        delta_budget=plan.delta_budget,
        enforce=plan.enforce,
    )
    return _gated_search(
        weights=weights, policies=plan.policies, settings=plan.settings, privacy=plan.privacy,
        schedule=plan.schedule, accountant=accountant, ticket_dir=folder / TICKETS_DIR,
        journal=ReleaseJournal(folder / JOURNAL_FILE), prior=data_free_prior(config, model, plan.policies),
    )


def _gated_search(
    *, accountant: Accountant, journal: ReleaseJournal, weights: Mapping[str, torch.Tensor],
    policies: Mapping[str, LayerPolicy], settings: SearchSettings, privacy: PrivacySettings,
    schedule: DensitySchedule, ticket_dir: Path, prior: Mapping[str, torch.Tensor] | None = None,
) -> PrivacyGate:
    """The plain search strategy, wrapped in the gate that accounts for its releases."""
    search = PatternSearch(weights=weights, policies=policies, settings=settings, privacy=privacy,
                           schedule=schedule, ticket_dir=ticket_dir, prior=prior)
    return PrivacyGate(strategy=search, accountant=accountant, journal=journal)


def _progress_line(label: str, server_round: int, total: int, metrics: Mapping[str, Any], config: Config) -> str:
    if not metrics.get("ticket-updated"):
        eps = "ticket kept"
    else:
        parts = []
        if config.unit in (UNIT_RECORD, UNIT_BOTH):
            basic = float(metrics.get('epsilon-record-max', 0.0))
            if "epsilon-record-rdp" in metrics:  # enforced on RDP: that figure against the budget, basic beside
                parts.append(f"ε record max {float(metrics['epsilon-record-rdp']):.4g}/{config.epsilon:.4g} (RDP;"
                             f" basic {basic:.4g})")
            else:
                parts.append(f"ε record max {basic:.4g}/{config.epsilon:.4g}")
        if config.unit in (UNIT_CLIENT, UNIT_BOTH):
            parts.append(f"ε client {float(metrics.get('epsilon-client', 0.0)):.4g}/{config.client_epsilon:.4g}")
        eps = "  ".join(parts)
    jaccard = metrics.get("jaccard")
    change = f"  jaccard {float(jaccard):.3f}" if jaccard is not None else ""
    if "kernels-moved" in metrics:  # kernel votes: how many kept kernels they moved off the free prior
        change += f"  moved by votes {int(metrics['kernels-moved'])}/{int(metrics['kernels-kept'])} kernels"
    refusals = int(metrics.get("refused", 0))
    refused = f"  refused by device policy {refusals}" if refusals else ""
    return (f"[{label}] round {server_round:>3}/{total}  density {float(metrics['density']):.4f}  {eps}"
            f"  replies {int(metrics['participants'])}/{int(metrics['sampled'])}  rejected {int(metrics['rejected'])}"
            f"{refused}{change}")


def run_search_phase(
    grid: Grid,
    config: Config,
    run_dir: RunDirectory,
    strategy: PrivacyGate,
    model: nn.Module,
    *,
    reference: bool,
    config_record: ConfigRecord,
    checkpoint: Checkpoint,
    progress: Progress,
) -> SearchOutcome:
    """Run (or continue) one search; log every attempt's metrics and checkpoint after each."""
    phase = search_phase(reference=reference)
    start = time.time()
    total = strategy.schedule.total_rounds
    shown = config.replace(epsilon=math.inf, client_epsilon=math.inf) if reference else config

    def on_round(server_round: int, metrics: MetricRecord, search: PrivacyGate) -> None:
        row = {"phase": phase, "kind": KIND_SEARCH_ROUND, **dict(metrics), "round": server_round,
               "elapsed-s": round(time.time() - start, 2)}
        run_dir.log_metrics(row)
        checkpoint(search)
        progress(_progress_line(phase, server_round, total, row, shown))

    return run_search(
        strategy, grid, arrays=ArrayRecord(plain_weights(model)), timeout=config.round_timeout,
        config=config_record, on_round=on_round,
    )
