"""Tighter composition figures, shown *beside* basic composition, never instead of it (DESIGN.md 5.4).

For a list of events of one privacy unit (for the record unit: the events of one client) this
module reports the basic figure ``(Σε, Σδ)`` and, at a target δ, the ε of two accountants of
Google's ``dp_accounting`` (0.6): Rényi DP (``RdpAccountant``; Mironov 2017) and privacy loss
distributions (``PrivacyLossDistribution``, pessimistic estimates; Meiser & Mohammadi 2018,
Doroshenko et al. 2022).

How each event is represented (all sound, i.e. the figure is an upper bound):

- ``laplace`` / ``laplace-histogram`` with L1 sensitivity Δ and Laplace scale b: the Laplace
  mechanism, noise multiplier ``b/Δ`` (``LaplaceDpEvent`` semantics: L1 sensitivity). The event's
  ε must be ``Δ/b``.
- ``gaussian`` and ``gaussian-topk`` (top-k indices of the Gaussian mechanism, post-processing)
  with L2 sensitivity Δ and standard deviation σ: ``GaussianDpEvent(σ/Δ)``. A ``gaussian-topk``
  event's (ε, δ) must be a valid pair for ``σ/Δ`` (Balle & Wang 2018, Theorem 8).
- ``discrete-laplace-histogram`` (integer L1 sensitivity c, scale τ): PLD of the discrete Laplace
  mechanism with parameter ``1/τ``; for RDP (no discrete Laplace there) the pure-ε rule below.
- any other pure ε-DP event (noisy top-k, Gumbel, monotone top-K): the binary randomized response
  with odds ``e^ε``, which dominates every ε-DP mechanism (Kairouz, Oh, Viswanath 2015, Theorem
  2.4): ``RandomizedResponseDpEvent(2/(1+e^ε), 2)`` for RDP and
  ``from_privacy_parameters(ε, 0)`` for PLD.
- any other (ε, δ) event with δ > 0: ``from_privacy_parameters(ε, δ)`` for PLD (dominating pair of
  (ε, δ)-DP); no valid RDP bound exists, so the RDP figure is ``None`` with the reason in ``notes``.
- ``dp-sgd`` (``steps`` Poisson-sampled Gaussian steps, sampling rate q, multiplier σ = noise
  scale / C; :mod:`privacy.dp_sgd`): ``PoissonSampledDpEvent(q, GaussianDpEvent(σ))`` composed
  ``steps`` times, under ``ADD_OR_REMOVE_ONE`` (the relation of the sampled Gaussian's analysis),
  on Opacus' integer RDP orders (privacy.dp_sgd.RDP_ORDERS) so that the figure is Opacus' own on
  them; for PLD the sampled Gaussian PLD. Its
  event's ε must be at least that of its own steps. RDP has no figure for dp-sgd events composed
  with pure ε-DP votes (dp_accounting's randomized response needs ``REPLACE_ONE``): ``None``, noted.
- ε = 0 events are left out (no loss); an ε = ∞ event makes both figures ∞.

Neighbouring relation: the events' sensitivities are already stated under their unit's relation
(replace-one example, add/remove one client), so each release is the pair "noise" against
"noise shifted by the sensitivity": that is what the ``ADD_OR_REMOVE_ONE`` PLD constructors
compute. The RDP accountant is built with ``REPLACE_ONE`` only because ``dp_accounting`` accepts
randomized-response events under that relation; its Laplace and Gaussian RDP do not depend on it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from privacy._checks import check_positive_finite
from privacy.errors import PrivacyError
from privacy.events import (
    DISCRETE_LAPLACE_HISTOGRAM,
    DP_SGD,
    GAUSSIAN,
    GAUSSIAN_TOPK,
    LAPLACE,
    LAPLACE_HISTOGRAM,
    PrivacyEvent,
)
from privacy.dp_sgd import RDP_ORDERS, dp_sgd_epsilon
from privacy.gaussian import gaussian_delta, gaussian_noise_multiplier

# dp_accounting (and the scipy.stats it pulls in) is imported inside the functions: clients
# import privacy for their votes and must not pay seconds of import time for reporting code.
if TYPE_CHECKING:
    import dp_accounting

__all__ = ["CompositionComparison", "compare_composition", "gaussian_rdp_round_epsilon", "rdp_epsilon"]

_LAPLACE_MECHANISMS = (LAPLACE, LAPLACE_HISTOGRAM)
_GAUSSIAN_MECHANISMS = (GAUSSIAN, GAUSSIAN_TOPK)
_CONSISTENCY_RTOL = 1e-9


@dataclass(frozen=True, kw_only=True)
class CompositionComparison:
    """Basic composition beside the RDP and PLD figures of the same events."""

    num_events: int = field(metadata={"help": "events composed (ε = 0 ones included)"})
    basic_epsilon: float = field(metadata={"help": "Σε"})
    basic_delta: float = field(metadata={"help": "Σδ"})
    target_delta: float = field(metadata={"help": "δ at which RDP and PLD ε are given"})
    rdp_epsilon: float | None = field(metadata={"help": "RDP ε at target_delta, None if no valid bound"})
    pld_epsilon: float | None = field(metadata={"help": "PLD ε at target_delta"})
    notes: tuple[str, ...] = field(metadata={"help": "how events were represented, why a figure is missing"})


def _kind(event: PrivacyEvent) -> tuple[str, tuple[float, ...]]:
    """Classify an event: ("skip" | "nonprivate" | "laplace" | "gaussian" | "dlaplace" | "pure" | "approx", params)."""
    if event.epsilon == 0.0 and event.delta == 0.0:
        return "skip", ()
    if math.isinf(event.epsilon):
        return "nonprivate", ()
    noisy = event.sensitivity > 0.0 and event.noise_scale > 0.0
    if event.mechanism in _LAPLACE_MECHANISMS and event.sensitivity_norm == "l1" and noisy and event.delta == 0.0:
        actual = event.sensitivity / event.noise_scale
        if actual > event.epsilon * (1.0 + _CONSISTENCY_RTOL):
            raise PrivacyError(
                f"epsilon of a Laplace event must be at least sensitivity/noise_scale = {actual:.6g}."
                f" Found {event.epsilon:.6g} (event {event.event_id})."
            )
        return "laplace", (event.noise_scale / event.sensitivity,)
    if event.mechanism == DP_SGD and event.sensitivity_norm == "l2" and noisy:
        sigma = event.noise_scale / event.sensitivity
        steps = (sigma, float(event.sample_rate), int(event.steps))  # type: ignore[arg-type]
        actual = dp_sgd_epsilon([steps], delta=event.delta) if event.delta > 0 else math.inf
        if actual > event.epsilon * (1.0 + _CONSISTENCY_RTOL):
            raise PrivacyError(
                f"epsilon of a dp-sgd event must be at least {actual:.6g}, its steps' RDP ε at its delta."
                f" Found {event.epsilon:.6g} (event {event.event_id})."
            )
        return "dpsgd", steps
    if event.mechanism == GAUSSIAN_TOPK and event.sensitivity_norm == "l2" and noisy:
        actual = gaussian_delta(noise_multiplier=event.noise_scale / event.sensitivity, epsilon=event.epsilon)
        if actual > event.delta * (1.0 + _CONSISTENCY_RTOL):
            raise PrivacyError(
                f"delta of a Gaussian top-k event must be at least {actual:.6g} for its epsilon and"
                f" noise_scale/sensitivity. Found {event.delta:.6g} (event {event.event_id})."
            )
    if event.mechanism in _GAUSSIAN_MECHANISMS and event.sensitivity_norm == "l2" and noisy:
        return "gaussian", (event.noise_scale / event.sensitivity,)
    if (
        event.mechanism == DISCRETE_LAPLACE_HISTOGRAM
        and event.sensitivity_norm == "l1"
        and noisy
        and float(event.sensitivity).is_integer()
        and event.delta == 0.0
    ):
        actual = event.sensitivity / event.noise_scale
        if actual > event.epsilon * (1.0 + _CONSISTENCY_RTOL):
            raise PrivacyError(
                f"epsilon of a discrete Laplace event must be at least sensitivity/noise_scale = {actual:.6g}."
                f" Found {event.epsilon:.6g} (event {event.event_id})."
            )
        return "dlaplace", (1.0 / event.noise_scale, event.sensitivity, event.epsilon)
    if event.delta == 0.0:
        return "pure", (event.epsilon,)
    return "approx", (event.epsilon, event.delta)


def _rr_event(epsilon: float) -> dp_accounting.DpEvent:
    import dp_accounting

    # Binary randomized response with odds e^ε: P(keep) = e^ε / (1 + e^ε), noise_parameter p
    # such that 1 - p/2 = e^ε/(1+e^ε).
    tail = math.exp(-epsilon)  # stable for large ε: 2/(1+e^ε) = 2e^-ε/(1+e^-ε)
    return dp_accounting.RandomizedResponseDpEvent(noise_parameter=2.0 * tail / (1.0 + tail), num_buckets=2)


def _rdp_epsilon(groups: Counter, target_delta: float, notes: list[str]) -> float | None:
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant

    if any(kind == "dpsgd" for kind, _ in groups):
        return _dpsgd_rdp_epsilon(groups, target_delta, notes)
    accountant = RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
    for (kind, params), count in groups.items():
        if kind == "laplace":
            event = dp_accounting.LaplaceDpEvent(noise_multiplier=params[0])
        elif kind == "gaussian":
            event = dp_accounting.GaussianDpEvent(noise_multiplier=params[0])
        elif kind in ("pure", "dlaplace"):
            event = _rr_event(params[-1] if kind == "dlaplace" else params[0])
        else:  # approx
            notes.append(f"RDP: left out, {count} (ε, δ) event(s) with δ > 0 have no valid RDP bound.")
            return None
        accountant.compose(event, count)
    return float(accountant.get_epsilon(target_delta))


def _dpsgd_rdp_epsilon(groups: Counter, target_delta: float, notes: list[str]) -> float | None:
    """RDP of dp-sgd events (with Laplace and Gaussian ones) under ADD_OR_REMOVE_ONE, on Opacus' orders."""
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant

    accountant = RdpAccountant(orders=list(RDP_ORDERS),
                               neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
    for (kind, params), count in groups.items():
        if kind == "dpsgd":
            sigma, rate, steps = params
            accountant.compose(
                dp_accounting.PoissonSampledDpEvent(rate, dp_accounting.GaussianDpEvent(sigma)), int(steps) * count)
        elif kind == "laplace":
            accountant.compose(dp_accounting.LaplaceDpEvent(noise_multiplier=params[0]), count)
        elif kind == "gaussian":
            accountant.compose(dp_accounting.GaussianDpEvent(noise_multiplier=params[0]), count)
        else:
            notes.append(f"RDP: left out, {count} {kind} event(s) cannot be composed with dp-sgd events by RDP here"
                         " (their RDP bound needs REPLACE_ONE, the sampled Gaussian's ADD_OR_REMOVE_ONE).")
            return None
    return float(accountant.get_epsilon(target_delta))


def _pld_epsilon(groups: Counter, target_delta: float, interval: float) -> float:
    from dp_accounting.pld import common as pld_common
    from dp_accounting.pld import privacy_loss_distribution as pld_lib

    composed: Any = None
    for (kind, params), count in groups.items():
        if kind == "laplace":
            single = pld_lib.from_laplace_mechanism(params[0], value_discretization_interval=interval)
        elif kind == "gaussian":
            single = pld_lib.from_gaussian_mechanism(params[0], value_discretization_interval=interval)
        elif kind == "dpsgd":
            single = pld_lib.from_gaussian_mechanism(
                params[0], sampling_prob=params[1], value_discretization_interval=interval
            ).self_compose(int(params[2]))
        elif kind == "dlaplace":
            single = pld_lib.from_discrete_laplace_mechanism(
                params[0], sensitivity=int(params[1]), value_discretization_interval=interval
            )
        else:  # pure or approx: dominating pair of (ε, δ)-DP
            delta = params[1] if kind == "approx" else 0.0
            parameters = pld_common.DifferentialPrivacyParameters(epsilon=params[0], delta=delta)
            single = pld_lib.from_privacy_parameters(parameters, value_discretization_interval=interval)
        block = single.self_compose(count) if count > 1 else single
        composed = block if composed is None else composed.compose(block)
    return 0.0 if composed is None else float(composed.get_epsilon_for_delta(target_delta))


def compare_composition(
    events: Sequence[PrivacyEvent], *, target_delta: float, value_discretization_interval: float = 1e-4
) -> CompositionComparison:
    """Basic composition of ``events`` beside their RDP and PLD ε at ``target_delta``.

    Parameters
    ----------
    events
        Events of one privacy unit; for the record unit, the events charged to one client
        (:meth:`privacy.Accountant.events_for`).
    target_delta
        δ at which the RDP and PLD ε are computed, in ``(0, 1)``.
    value_discretization_interval
        PLD discretisation (pessimistic rounding: the figure stays an upper bound).

    Raises
    ------
    PrivacyError
        On mixed units, an invalid ``target_delta`` or an inconsistent Laplace event.
    """
    batch = list(events)
    for item in batch:
        if not isinstance(item, PrivacyEvent):
            raise PrivacyError(f"events must hold PrivacyEvent objects. Found {type(item).__name__}.")
    units = sorted({event.unit for event in batch})
    if len(units) > 1:
        raise PrivacyError(f"events must all belong to one privacy unit. Found units {units}.")
    if not isinstance(target_delta, (int, float)) or not 0.0 < float(target_delta) < 1.0:
        raise PrivacyError(f"target_delta must be in (0, 1). Found {target_delta!r}.")
    interval = check_positive_finite("value_discretization_interval", value_discretization_interval)
    basic_epsilon = math.fsum(event.epsilon for event in batch)
    basic_delta = math.fsum(event.delta for event in batch)
    groups = Counter(_kind(event) for event in batch)
    notes: list[str] = []
    represented: Counter = Counter()
    for (kind, _), count in groups.items():
        represented[kind] += count
    if represented:
        notes.append("represented as: " + ", ".join(f"{kind} x{n}" for kind, n in sorted(represented.items())))
    groups.pop(("skip", ()), None)
    if ("nonprivate", ()) in groups:
        notes.append("an ε = inf (non-private) event makes every figure infinite.")
        return CompositionComparison(
            num_events=len(batch), basic_epsilon=basic_epsilon, basic_delta=basic_delta,
            target_delta=float(target_delta), rdp_epsilon=math.inf, pld_epsilon=math.inf, notes=tuple(notes),
        )
    rdp = _rdp_epsilon(groups, float(target_delta), notes) if groups else 0.0
    pld = _pld_epsilon(groups, float(target_delta), interval)
    return CompositionComparison(
        num_events=len(batch), basic_epsilon=basic_epsilon, basic_delta=basic_delta,
        target_delta=float(target_delta), rdp_epsilon=rdp, pld_epsilon=pld, notes=tuple(notes),
    )


def _check_events(events: Sequence[PrivacyEvent]) -> list[PrivacyEvent]:
    batch = list(events)
    for item in batch:
        if not isinstance(item, PrivacyEvent):
            raise PrivacyError(f"events must hold PrivacyEvent objects. Found {type(item).__name__}.")
    return batch


def rdp_epsilon(events: Sequence[PrivacyEvent], *, target_delta: float) -> float | None:
    """The RDP ε of ``events`` (one unit, e.g. one client's) at ``target_delta``, without the PLD.

    The figure :func:`compare_composition` reports as ``rdp_epsilon``, by the same
    representation of each event; ``None`` when an (ε, δ) event with δ > 0 has no valid RDP bound
    (the caller must then fall back on basic composition). This is what the accountant enforces
    a budget on under ``enforce="rdp"`` (:class:`privacy.Accountant`).
    """
    batch = _check_events(events)
    if not isinstance(target_delta, (int, float)) or not 0.0 < float(target_delta) < 1.0:
        raise PrivacyError(f"target_delta must be in (0, 1). Found {target_delta!r}.")
    groups = Counter(_kind(event) for event in batch)
    groups.pop(("skip", ()), None)
    if ("nonprivate", ()) in groups:
        return math.inf
    return _rdp_epsilon(groups, float(target_delta), []) if groups else 0.0


_RDP_MARGIN = 1e-6  # relative: the calibrated spend stays below the budget by more than float noise
_RDP_STEPS = 60


def gaussian_rdp_round_epsilon(
    *,
    epsilon: float,
    delta: float,
    rounds: int,
    round_pairs: Callable[[float], Sequence[tuple[float, float]]],
) -> float:
    """The largest per-round ε whose ``rounds`` rounds of Gaussian top-k releases compose, by RDP,
    to at most ``epsilon`` at ``delta`` (the RDP calibration of a search, DESIGN.md 5.1 and 5.4).

    A round at per-round ε ``e`` makes the releases ``round_pairs(e)``: one ``(ε_d, δ_d)`` per
    domain, each a Gaussian mechanism of multiplier ``z_d = gaussian_noise_multiplier(ε_d, δ_d)``
    (the caller owns the split of a round over its domains, so the pairs are those it will
    charge). Rényi DP composes ``rounds`` copies of them (``GaussianDpEvent(z_d)``, order by
    order) and converts to ε at ``delta`` (Mironov 2017); the result is found by bisection, with a
    relative margin of 1e-6 below ``epsilon``, so that the accountant, which recomputes the same
    figure from the charged events, finds every round within the budget.

    Basic composition of the same releases gives ``rounds * e`` (and ``Σδ_d``), more than
    ``epsilon`` in general: that figure stays in the ledger and the report beside the RDP one.

    Raises
    ------
    PrivacyError
        On a budget that is not finite and positive, ``delta`` outside (0, 1), ``rounds < 1``, or
        a budget so small that no round fits (below 1e-12 per round).
    """
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant

    epsilon = check_positive_finite("epsilon", epsilon)
    if not isinstance(delta, (int, float)) or isinstance(delta, bool) or not 0.0 < float(delta) < 1.0:
        raise PrivacyError(f"delta must be in (0, 1). Found {delta!r}.")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise PrivacyError(f"rounds must be an int >= 1. Found {rounds!r}.")
    limit = epsilon * (1.0 - _RDP_MARGIN)

    def composed(per_round: float) -> float:
        accountant = RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE)
        for pair_epsilon, pair_delta in round_pairs(per_round):
            z = gaussian_noise_multiplier(epsilon=pair_epsilon, delta=pair_delta)
            accountant.compose(dp_accounting.GaussianDpEvent(noise_multiplier=z), rounds)
        return float(accountant.get_epsilon(float(delta)))

    low, high = 0.0, epsilon
    if composed(high) <= limit:
        return high  # one round may spend the whole budget (never more: each round is also (e, δ)-DP)
    for _ in range(_RDP_STEPS):
        middle = 0.5 * (low + high)
        if composed(middle) <= limit:
            low = middle
        else:
            high = middle
    if low < 1e-12:
        raise PrivacyError(f"epsilon {epsilon:g} at delta {delta:g} leaves no per-round ε for {rounds} rounds.")
    return low
