"""The mechanisms a ledger used, grouped, with their signal-to-noise figures (DESIGN.md 5.6).

One row per distinct (phase, domain, unit, mechanism, sensitivity, noise scale, ε, δ), with the
number of releases. Signal-to-noise follows :mod:`privacy.diagnostics`:

- record unit (local noise on a client's clipped mean scores): the scores range over ``[0, C]``
  (:func:`privacy.score_diagnostic`), ``C`` the config's ``clip-bound`` (normalised scores lie in
  ``[0, 1]``, and clip-mode=normalise takes only clip-bound = 1);
- client unit (central noise on vote counts): a count ranges over ``[0, voters]``
  (:func:`privacy.histogram_diagnostic`). The strategy computed that diagnostic when it released
  the counts and logged it in the ``search-round`` metrics (``snr-central.<domain>``,
  ``noise-dominated.<domain>`` and ``voters.<domain>`` of the release's phase, round and attempt):
  the report reads it there and does not compute it again; releases without it are not assessed;
- data-free releases (ε = 0, no data read) have no noise to assess, and releases that are not
  votes (e.g. Gaussian DP-FedAvg updates) have no signal range here: both are not assessed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from federation.layout import KIND_SEARCH_ROUND
from privacy import (
    DATA_FREE,
    DISCRETE_LAPLACE_HISTOGRAM,
    GUMBEL_TOPK,
    LAPLACE_HISTOGRAM,
    LAPLACE_MONOTONE_TOPK,
    LAPLACE_TOPK,
    UNIT_CLIENT,
    UNIT_RECORD,
    MechanismSpec,
    PrivacyEvent,
    score_diagnostic,
)
from simulations.report.metrics import MetricsFile

__all__ = ["CentralDiagnostic", "ReleaseKey", "central_diagnostics", "mechanism_rows"]

ReleaseKey = tuple[str, int, int, str]  # phase, round, attempt, domain

# The diagnostics' signal ranges hold for votes only: noisy top-k of clipped scores (local) and
# noisy vote counts (central). Other releases (e.g. DP-FedAvg's Gaussian updates) are not assessed.
_LOCAL_VOTES = (LAPLACE_TOPK, GUMBEL_TOPK)
_CENTRAL_VOTES = (LAPLACE_HISTOGRAM, LAPLACE_MONOTONE_TOPK, DISCRETE_LAPLACE_HISTOGRAM)


@dataclass(frozen=True, kw_only=True)
class MechanismRow:
    """One group of identical releases and its noise diagnostic."""

    phase: str = field(metadata={"help": "ledger phase"})
    domain: str = field(metadata={"help": "vote domain"})
    unit: str = field(metadata={"help": "record or client"})
    mechanism: str = field(metadata={"help": "mechanism name"})
    sensitivity: float = field(metadata={"help": "Δ"})
    sensitivity_norm: str | None = field(metadata={"help": "norm of Δ"})
    noise_scale: float = field(metadata={"help": "noise scale"})
    epsilon: float = field(metadata={"help": "ε of one release"})
    delta: float = field(metadata={"help": "δ of one release"})
    count: int = field(metadata={"help": "releases in the group"})
    signal: str = field(metadata={"help": "what the noise is compared with"})
    snr_min: float | None = field(metadata={"help": "smallest signal range / noise scale; None if not assessed"})
    dominated: int = field(metadata={"help": "releases flagged noise-dominated"})
    assessed: int = field(metadata={"help": "releases with a diagnostic"})


@dataclass(frozen=True, kw_only=True)
class CentralDiagnostic:
    """What the strategy logged about one domain's central release of one round attempt."""

    voters: int = field(metadata={"help": "voters.<domain>: clients whose vote was counted"})
    ratio: float | None = field(metadata={"help": "snr-central.<domain>; None if not logged"})
    noise_dominated: bool | None = field(metadata={"help": "noise-dominated.<domain>; None if not logged"})


def central_diagnostics(metrics: MetricsFile) -> dict[ReleaseKey, CentralDiagnostic]:
    """The logged central diagnostic of every ``search-round`` row, keyed by (phase, round, attempt, domain)."""
    out: dict[ReleaseKey, CentralDiagnostic] = {}
    for row in metrics.of_kind(KIND_SEARCH_ROUND):
        round_number = row.integer("round")
        if round_number is None or row.phase is None:
            continue
        attempt = row.integer("attempt", default=0)
        assert attempt is not None
        for key in row.data:
            if key.startswith("voters."):
                voters = row.integer(key)
                if voters is None:
                    continue
                domain = key[len("voters."):]
                flag = row.integer(f"noise-dominated.{domain}")
                out[(row.phase, round_number, attempt, domain)] = CentralDiagnostic(
                    voters=voters, ratio=row.number(f"snr-central.{domain}"),
                    noise_dominated=None if flag is None else bool(flag),
                )
    return out


def _spec(event: PrivacyEvent) -> MechanismSpec:
    return MechanismSpec(
        unit=event.unit, mechanism=event.mechanism, sensitivity=event.sensitivity,
        sensitivity_norm=event.sensitivity_norm, noise_scale=event.noise_scale,
        epsilon=event.epsilon, delta=event.delta,
    )


def mechanism_rows(
    events: Sequence[PrivacyEvent], *, clip_bound: float, central: Mapping[ReleaseKey, CentralDiagnostic]
) -> list[MechanismRow]:
    """Group ``events`` (ledger order of first appearance) and assess their noise."""
    groups: dict[tuple[object, ...], list[PrivacyEvent]] = {}
    for event in events:
        key = (event.phase, event.domain, event.unit, event.mechanism, event.sensitivity, event.sensitivity_norm,
               event.noise_scale, event.epsilon, event.delta)
        groups.setdefault(key, []).append(event)
    rows: list[MechanismRow] = []
    for group in groups.values():
        first = group[0]
        ratios: list[float] = []
        flagged = 0
        if first.mechanism == DATA_FREE or (first.epsilon == 0.0 and first.sensitivity == 0.0):
            signal = "data-free: no noise, no data read"
        elif first.unit == UNIT_CLIENT and first.mechanism in _CENTRAL_VOTES:
            logged = [central.get((e.phase, e.round, e.attempt, e.domain)) for e in group]
            known = [d.voters for d in logged if d is not None and d.voters > 0]
            for diagnostic in logged:
                if diagnostic is not None and diagnostic.ratio is not None and diagnostic.noise_dominated is not None:
                    ratios.append(diagnostic.ratio)
                    flagged += int(diagnostic.noise_dominated)
            signal = (
                "vote counts in [0, voters], voters unknown" if not known
                else f"vote counts in [0, voters], voters {min(known)} to {max(known)}"
            )
        elif first.unit == UNIT_RECORD and first.mechanism in _LOCAL_VOTES:
            diagnostic = score_diagnostic(_spec(first), clip_bound=clip_bound)
            ratios = [diagnostic.ratio] * len(group)
            flagged = len(group) if diagnostic.noise_dominated else 0
            signal = f"clipped scores in [0, {clip_bound:g}]"
        else:
            signal = "not a vote: no signal range to compare with"
        rows.append(MechanismRow(
            phase=first.phase, domain=first.domain, unit=first.unit, mechanism=first.mechanism,
            sensitivity=first.sensitivity, sensitivity_norm=first.sensitivity_norm,
            noise_scale=first.noise_scale, epsilon=first.epsilon, delta=first.delta, count=len(group),
            signal=signal, snr_min=min(ratios) if ratios else None, dominated=flagged, assessed=len(ratios),
        ))
    return rows
