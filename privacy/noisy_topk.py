"""Record-level noisy top-k votes, run on the client (DESIGN.md 5.1).

Neighbouring relation: one example of one client's dataset replaced. The scores are means of
per-example contributions clipped to ``[0, C]`` over ``n`` examples, so every coordinate moves by
at most ``Δ = C / n`` (L∞ sensitivity, not monotone: coordinates may move in both directions).

- **Laplace** (:func:`laplace_topk`): add ``Lap(2kΔ/ε)`` to every score, release only the indices
  of the ``k`` largest noisy scores. ε-DP: Ding, Wang, Zhang, Kifer 2019, "Free gap information
  from the differentially private sparse vector and noisy max mechanisms" (PVLDB 13(3)), noisy
  top-k with gap, Lap(2k/ε) for sensitivity-1 non-monotone queries; scaled here by Δ.
- **Gumbel** (:func:`gumbel_topk`): add ``Gumbel(0, 2kΔ/ε)`` and release the ``k`` largest. Equal
  in law to ``k`` peeled exponential mechanisms of ``ε/k`` each, utility sensitivity Δ,
  non-monotone (hence the factor 2): Durfee & Rogers 2019, "Practical differentially private top-k
  selection with pay-what-you-get composition" (NeurIPS), Lemma 4.2; ε-DP by basic composition.

``epsilon = inf`` is the explicit non-private baseline (ε = ∞ pipeline, DESIGN.md 2 step 4): no
noise is added, the exact top-k is released (ties broken at random) and the event records
``epsilon = inf``.

NOTE: the noise is floating-point. Mironov 2012 ("On significance of the least significant bits
for differential privacy", CCS) shows that publishing floating-point Laplace *values* can leak;
here only the indices are released, so an attacker sees the ranking, not the low-order bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from privacy._checks import check_epsilon, check_int, check_positive_finite, check_rng, check_scores
from privacy._selection import noisy_topk_rows
from privacy.errors import PrivacyError
from privacy.events import GUMBEL_TOPK, LAPLACE_TOPK, UNIT_RECORD, MechanismSpec

__all__ = [
    "TopKRelease",
    "draw_gumbel_topk",
    "draw_laplace_topk",
    "gumbel_topk",
    "gumbel_topk_noise_scale",
    "laplace_topk",
    "laplace_topk_noise_scale",
    "topk_spec",
]

@dataclass(frozen=True, kw_only=True)
class TopKRelease:
    """What a client may send: the ``k`` released indices and the description of the release.

    Parameters
    ----------
    indices
        Read-only int64 array of ``k`` distinct indices, by decreasing noisy score.
    spec
        The release's :class:`~privacy.events.MechanismSpec` (record unit).
    """

    indices: np.ndarray = field(metadata={"help": "released indices"})
    spec: MechanismSpec = field(metadata={"help": "description of the release"})

    def __post_init__(self) -> None:
        indices = np.array(self.indices, dtype=np.int64, copy=True)
        if indices.ndim != 1 or np.unique(indices).size != indices.size:
            raise PrivacyError(f"indices must be a 1-D array of distinct integers. Found {self.indices!r}.")
        indices.setflags(write=False)
        object.__setattr__(self, "indices", indices)


def laplace_topk_noise_scale(*, k: int, epsilon: float, sensitivity: float) -> float:
    """Laplace scale of one-shot noisy top-k: ``b = 2 k Δ / ε`` (Ding et al. 2019); 0 if ε = inf."""
    k = check_int("k", k, minimum=1)
    epsilon = check_epsilon(epsilon)
    sensitivity = check_positive_finite("sensitivity", sensitivity)
    return 0.0 if math.isinf(epsilon) else 2.0 * k * sensitivity / epsilon


def gumbel_topk_noise_scale(*, k: int, epsilon: float, sensitivity: float) -> float:
    """Gumbel scale of one-shot top-k: ``β = 2 k Δ / ε``, i.e. k peeled exponential mechanisms
    of ε/k each with a non-monotone utility of sensitivity Δ (Durfee & Rogers 2019); 0 if ε = inf."""
    return laplace_topk_noise_scale(k=k, epsilon=epsilon, sensitivity=sensitivity)


def topk_spec(*, mechanism: str, k: int, epsilon: float, sensitivity: float) -> MechanismSpec:
    """The :class:`MechanismSpec` of a record-level top-k release (``LAPLACE_TOPK`` or ``GUMBEL_TOPK``)."""
    scales = {LAPLACE_TOPK: laplace_topk_noise_scale, GUMBEL_TOPK: gumbel_topk_noise_scale}
    if mechanism not in scales:
        raise PrivacyError(f"mechanism must be one of {sorted(scales)}. Found {mechanism!r}.")
    scale = scales[mechanism](k=k, epsilon=epsilon, sensitivity=sensitivity)
    return MechanismSpec(
        unit=UNIT_RECORD, mechanism=mechanism, sensitivity=float(sensitivity), sensitivity_norm="linf",
        noise_scale=scale, epsilon=float(epsilon), delta=0.0,
    )


def _draw(
    mechanism: str,
    scores: object,
    *,
    k: int,
    epsilon: float,
    sensitivity: float,
    rng: np.random.Generator,
    num_draws: int,
) -> np.ndarray:
    values = check_scores(scores)
    k = check_int("k", k, minimum=1, maximum=values.size)
    rng = check_rng(rng)
    num_draws = check_int("num_draws", num_draws, minimum=1)
    scale = topk_spec(mechanism=mechanism, k=k, epsilon=epsilon, sensitivity=sensitivity).noise_scale
    sample = rng.laplace if mechanism == LAPLACE_TOPK else rng.gumbel
    noise = None if scale == 0.0 else (lambda shape: sample(0.0, scale, size=shape))
    return noisy_topk_rows(values, k=k, rng=rng, num_draws=num_draws, noise=noise)


def draw_laplace_topk(
    scores: object, *, k: int, epsilon: float, sensitivity: float, rng: np.random.Generator, num_draws: int
) -> np.ndarray:
    """``num_draws`` independent releases of :func:`laplace_topk` as an ``(num_draws, k)`` array.

    For audits and simulations: every row is a separate release and costs ``epsilon``.
    """
    return _draw(LAPLACE_TOPK, scores, k=k, epsilon=epsilon, sensitivity=sensitivity, rng=rng, num_draws=num_draws)


def draw_gumbel_topk(
    scores: object, *, k: int, epsilon: float, sensitivity: float, rng: np.random.Generator, num_draws: int
) -> np.ndarray:
    """``num_draws`` independent releases of :func:`gumbel_topk` as an ``(num_draws, k)`` array."""
    return _draw(GUMBEL_TOPK, scores, k=k, epsilon=epsilon, sensitivity=sensitivity, rng=rng, num_draws=num_draws)


def laplace_topk(
    scores: object, *, k: int, epsilon: float, sensitivity: float, rng: np.random.Generator
) -> TopKRelease:
    """One-shot Laplace noisy top-k (record level).

    Output distribution: the indices of the ``k`` largest of ``scores + Z``, ``Z_i`` i.i.d.
    ``Lap(2kΔ/ε)``, by decreasing noisy score (exact ties broken uniformly at random).
    Sensitivity: ``Δ`` in L∞ under replace-one-example. Guarantee: ε-DP (Ding et al. 2019,
    noisy top-k with gap, non-monotone case); ``epsilon = inf`` adds no noise.

    Parameters
    ----------
    scores
        1-D finite scores, ``d`` entries.
    k
        Number of released indices, ``1 <= k <= d``.
    epsilon
        Privacy loss of the release, ``> 0``; ``inf`` = non-private baseline.
    sensitivity
        ``Δ``: the most any coordinate moves when one example is replaced (``C / n``).
    rng
        Noise generator (:func:`privacy.make_rng`).

    Raises
    ------
    PrivacyError
        On ε <= 0 or NaN, Δ <= 0 or infinite, k outside ``[1, d]``, NaN or infinite scores.
    """
    indices = draw_laplace_topk(scores, k=k, epsilon=epsilon, sensitivity=sensitivity, rng=rng, num_draws=1)[0]
    spec = topk_spec(mechanism=LAPLACE_TOPK, k=k, epsilon=epsilon, sensitivity=sensitivity)
    return TopKRelease(indices=indices, spec=spec)


def gumbel_topk(
    scores: object, *, k: int, epsilon: float, sensitivity: float, rng: np.random.Generator
) -> TopKRelease:
    """One-shot Gumbel top-k (record level).

    Output distribution: the indices of the ``k`` largest of ``scores + G``, ``G_i`` i.i.d.
    ``Gumbel(0, β)`` with ``β = 2kΔ/ε``; equal in law to ``k`` peeled exponential mechanisms
    selecting without replacement with probability ``∝ exp(score / β)`` (Durfee & Rogers 2019,
    Lemma 4.2), each ``ε/k``-DP for a non-monotone utility of sensitivity ``Δ`` (McSherry &
    Talwar 2007); ε-DP in total. Sensitivity: ``Δ`` in L∞ under replace-one-example.
    Parameters and errors as :func:`laplace_topk`.
    """
    indices = draw_gumbel_topk(scores, k=k, epsilon=epsilon, sensitivity=sensitivity, rng=rng, num_draws=1)[0]
    spec = topk_spec(mechanism=GUMBEL_TOPK, k=k, epsilon=epsilon, sensitivity=sensitivity)
    return TopKRelease(indices=indices, spec=spec)
