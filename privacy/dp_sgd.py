"""Accounting of record-level DP-SGD (DESIGN.md 5.8): the ε of Poisson-sampled Gaussian steps.

One DP-SGD step (Abadi et al. 2016) samples every example of the device independently with
probability q (Poisson sampling), clips each sampled example's gradient to L2 norm C, sums them
and adds N(0, (σC)² I). Neighbouring relation: one example **added or removed** (the relation of
Opacus' and dp_accounting's analysis of the sampled Gaussian; replacing one example is a removal
and an addition, so under replace-one the figure below is not claimed). The sum's L2 sensitivity
is C; the step is the sampled Gaussian mechanism of noise multiplier σ (Mironov, Talwar, Zhang
2019), and T steps compose by Rényi DP (Mironov 2017), converted to (ε, δ) by the conversion of
Balle et al. 2020 / Canonne, Kamath, Steinke 2020 that Opacus and dp_accounting both use.

A release of the ledger is one device's training of one round: ``steps`` such steps at one
(σ, q). :func:`dp_sgd_epsilon` composes any number of them, ``(σ, q, steps)`` each, as
``dp_accounting.PoissonSampledDpEvent(q, GaussianDpEvent(σ))`` composed ``steps`` times, on the
integer RDP orders of Opacus' ``RDPAccountant`` (:data:`RDP_ORDERS`), so the figure equals Opacus'
own on those orders for the same history (to the float rounding of two implementations).

torch-free: the device computes its noise multiplier with Opacus (which needs torch) in
``federation``; the figures here are recomputed from the ledger alone.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from typing import Final

from privacy.errors import PrivacyError
from privacy.events import DP_SGD, UNIT_RECORD, PrivacyEvent

__all__ = ["RDP_ORDERS", "dp_sgd_epsilon", "dp_sgd_event", "dp_sgd_steps"]

RDP_ORDERS: Final = tuple(range(2, 11)) + tuple(range(12, 64))
"""The integer Rényi orders of Opacus' ``RDPAccountant.DEFAULT_ALPHAS`` (opacus 1.6).

NOTE: integer orders only. At fractional orders Opacus and dp_accounting evaluate the sampled
Gaussian's RDP by truncated series that stop at different points (their ε differ by ~1e-5
relative); at integer orders both use the exact binomial sum and agree to float rounding. The
device calibrates σ on these orders too (``get_noise_multiplier(..., alphas=RDP_ORDERS)``), so
the ledger's figure is the device's own; the price is a slightly looser ε (under 2% here)."""

Step = tuple[float, float, int]
"""``(noise multiplier σ, sampling rate q, steps)``: one block of identical DP-SGD steps."""


def _check_step(step: Step) -> Step:
    sigma, rate, steps = step
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (sigma > 0 and math.isfinite(sigma)):
        raise PrivacyError(f"noise_multiplier must be a finite number > 0. Found {sigma!r}.")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 < rate <= 1.0:
        raise PrivacyError(f"sample_rate must be a number in (0, 1]. Found {rate!r}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PrivacyError(f"steps must be an int >= 1. Found {steps!r}.")
    return float(sigma), float(rate), int(steps)


@functools.lru_cache(maxsize=256)
def _epsilon(history: tuple[Step, ...], delta: float) -> float:
    import dp_accounting
    from dp_accounting.rdp import RdpAccountant

    accountant = RdpAccountant(orders=list(RDP_ORDERS),
                               neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
    for sigma, rate, steps in history:
        accountant.compose(dp_accounting.PoissonSampledDpEvent(rate, dp_accounting.GaussianDpEvent(sigma)), steps)
    return float(accountant.get_epsilon(delta))


def dp_sgd_epsilon(history: Iterable[Step], *, delta: float) -> float:
    """The ε at ``delta`` of every DP-SGD step in ``history`` composed by RDP (0 for no steps).

    Parameters
    ----------
    history
        ``(σ, q, steps)`` blocks, in any order (composition commutes).
    delta
        The δ of the conversion, in (0, 1).

    Raises
    ------
    PrivacyError
        On a block that is not a valid ``(σ > 0, q in (0, 1], steps >= 1)`` or a ``delta`` outside (0, 1).
    """
    blocks = tuple(_check_step(tuple(step)) for step in history)  # type: ignore[arg-type]
    if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0.0 < float(delta) < 1.0:
        raise PrivacyError(f"delta must be in (0, 1). Found {delta!r}.")
    return _epsilon(tuple(sorted(blocks)), float(delta)) if blocks else 0.0


def dp_sgd_event(
    *, round: int, domain: str, client_id: str, noise_multiplier: float, sample_rate: float,  # noqa: A002
    steps: int, clip: float, delta: float, phase: str, attempt: int = 0,
) -> PrivacyEvent:
    """The ledger event of one device's DP-SGD in one round: ``steps`` steps at ``(σ, q)``, clip C.

    Its ε is the round's own (ε, δ) guarantee, :func:`dp_sgd_epsilon` of ``[(σ, q, steps)]`` at
    ``delta``; the events of several rounds sum by basic composition to more than the training's ε,
    and compose exactly by RDP from the stored ``(σ, q, steps)`` (:func:`privacy.rdp_epsilon`).
    ``sensitivity`` is C (L2, of the sum of clipped gradients) and ``noise_scale`` σC.
    """
    sigma, rate, count = _check_step((noise_multiplier, sample_rate, steps))
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not (clip > 0 and math.isfinite(clip)):
        raise PrivacyError(f"clip must be a finite number > 0. Found {clip!r}.")
    return PrivacyEvent(
        round=round, phase=phase, domain=domain, layer=None, unit=UNIT_RECORD, mechanism=DP_SGD,
        sensitivity=float(clip), sensitivity_norm="l2", noise_scale=sigma * float(clip),
        epsilon=dp_sgd_epsilon([(sigma, rate, count)], delta=delta), delta=float(delta),
        participants=(client_id,), attempt=attempt, sample_rate=rate, steps=count,
    )


def dp_sgd_steps(events: Sequence[PrivacyEvent]) -> list[Step]:
    """The ``(σ, q, steps)`` blocks of the ``dp-sgd`` events among ``events`` (σ = noise_scale / C)."""
    return [(event.noise_scale / event.sensitivity, float(event.sample_rate), int(event.steps))  # type: ignore[arg-type]
            for event in events if event.mechanism == DP_SGD]
