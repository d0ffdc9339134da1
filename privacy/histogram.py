"""Client-level vote histogram and its central noisy top-K, run on the server (DESIGN.md 5.2).

Neighbouring relation: one client added or removed. A validated vote adds 1 to at most
``c = max_entries`` distinct counts, so the histogram moves by at most ``c`` in L1 and 1 in L∞,
and only upwards (monotone). :func:`tally_votes` enforces this bound whatever it is given.

Calibration (:func:`histogram_calibration`, "use whichever of c, K is smaller"):

- ``c <= K``, Laplace: ``Lap(c/ε)`` on every count, then top-K. ε-DP by the Laplace mechanism
  (Dwork, McSherry, Nissim, Smith 2006) on a histogram of L1 sensitivity ``c``; the top-K is
  post-processing, and the **noisy counts are publishable**.
- ``K < c``, Laplace: noisy top-K with ``Lap(K/ε)``: ε-DP for monotone queries of sensitivity 1
  (Ding, Wang, Zhang, Kifer 2019, "Free gap information from the differentially private sparse
  vector and noisy max mechanisms", noisy top-k with gap, monotone case). **Only the indices are
  publishable**; the noisy counts are not (``publishable_counts is None``).
- Discrete Laplace (integer counts): ``DLap(c/ε)`` on every count, then top-K, whatever K: the
  ``K/ε`` free-gap proof is for continuous noise. Exact sampler, see
  :mod:`privacy.discrete_laplace`. Noisy counts are publishable.

Ties among noisy counts (frequent with integer noise) are broken uniformly at random with fresh
randomness: data-independent. ``epsilon = inf`` adds no noise (non-private baseline) and then
nothing but the winners is publishable: exact counts never are.

NOTE: publishable *continuous* Laplace counts are floating-point values; Mironov 2012 ("On
significance of the least significant bits for differential privacy") shows their low-order bits
can leak. Publish counts from the ``"discrete-laplace"`` variant when they leave the server.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Final

import numpy as np

from privacy._checks import check_counts, check_epsilon, check_int, check_rng
from privacy._selection import topk_rows
from privacy.discrete_laplace import discrete_laplace_noise
from privacy.errors import PrivacyError
from privacy.events import (
    DISCRETE_LAPLACE_HISTOGRAM,
    LAPLACE_HISTOGRAM,
    LAPLACE_MONOTONE_TOPK,
    UNIT_CLIENT,
    MechanismSpec,
)

__all__ = [
    "NOISE_KINDS",
    "CentralRelease",
    "HistogramCalibration",
    "draw_noisy_histogram",
    "histogram_calibration",
    "noisy_topk_histogram",
    "tally_votes",
]

NOISE_KINDS: Final = ("laplace", "discrete-laplace")
_MAX_CHUNK_ELEMENTS = 1 << 23


def tally_votes(votes: Sequence[np.ndarray], *, domain_size: int, max_entries: int) -> np.ndarray:
    """Histogram of votes: count ``j`` is the number of votes containing index ``j``.

    Each vote must be a 1-D integer array of at most ``max_entries`` distinct indices in
    ``[0, domain_size)``, so it adds at most 1 per index and at most ``max_entries`` in total
    (sensitivity of DESIGN.md 5.3, enforced here as well as in :func:`validate_vote`).

    Returns
    -------
    numpy.ndarray
        int64 counts of shape ``(domain_size,)``.

    Raises
    ------
    PrivacyError
        If any vote breaks the rules above (the server must validate votes first).
    """
    domain_size = check_int("domain_size", domain_size, minimum=1)
    max_entries = check_int("max_entries", max_entries, minimum=1, maximum=domain_size)
    if isinstance(votes, (np.ndarray, str, bytes)) or not isinstance(votes, Sequence):
        raise PrivacyError(f"votes must be a sequence of 1-D integer arrays. Found {type(votes).__name__}.")
    arrays = [np.asarray(vote) for vote in votes]
    for position, array in enumerate(arrays):
        if array.ndim != 1 or array.dtype == np.bool_ or array.dtype.kind not in "iu":
            raise PrivacyError(
                f"votes[{position}] must be a 1-D integer array. Found dtype {array.dtype}, shape {array.shape}."
            )
        if array.size > max_entries:
            raise PrivacyError(f"votes[{position}] must have at most {max_entries} entries. Found {array.size}.")
        if array.size and (int(array.min()) < 0 or int(array.max()) >= domain_size):
            raise PrivacyError(
                f"votes[{position}] must hold indices in [0, {domain_size}). Found"
                f" [{int(array.min())}, {int(array.max())}]."
            )
    if not arrays:
        return np.zeros(domain_size, dtype=np.int64)
    lengths = np.array([array.size for array in arrays], dtype=np.int64)
    flat = np.concatenate([array.astype(np.int64) for array in arrays])
    owner = np.repeat(np.arange(len(arrays), dtype=np.int64), lengths)
    keys = owner * domain_size + flat
    unique_keys = np.unique(keys)
    if unique_keys.size != keys.size:
        _, first_at, counts = np.unique(keys, return_index=True, return_counts=True)
        bad_vote = int(owner[first_at[counts > 1][0]])
        raise PrivacyError(f"votes[{bad_vote}] must hold distinct indices. Found duplicates.")
    return np.bincount(flat, minlength=domain_size).astype(np.int64)


@dataclass(frozen=True, kw_only=True)
class HistogramCalibration:
    """Noise of a central release (see the module docstring for the sources).

    Parameters
    ----------
    spec
        The release's :class:`MechanismSpec` (client unit).
    publishable_counts
        Whether the noisy counts may leave the server (``False`` for the ``K/ε`` variant and for
        ``epsilon = inf``).
    """

    spec: MechanismSpec = field(metadata={"help": "mechanism description"})
    publishable_counts: bool = field(metadata={"help": "noisy counts publishable"})


def histogram_calibration(
    *, top_k: int, max_entries: int, epsilon: float, noise: str = "laplace"
) -> HistogramCalibration:
    """Calibrate the central noisy top-K (DESIGN.md 5.2).

    Laplace: scale ``min(c, K)/ε`` (``c/ε`` on the whole histogram when ``c <= K``, L1
    sensitivity ``c``; ``K/ε`` noisy top-K when ``K < c``, L∞ sensitivity 1, monotone).
    Discrete Laplace: scale ``c/ε`` (L1 sensitivity ``c``). ``epsilon = inf``: scale 0.
    """
    if noise not in NOISE_KINDS:
        raise PrivacyError(f"noise must be one of {list(NOISE_KINDS)}. Found {noise!r}.")
    top_k = check_int("top_k", top_k, minimum=1)
    max_entries = check_int("max_entries", max_entries, minimum=1)
    epsilon = check_epsilon(epsilon)
    if noise == "laplace" and top_k < max_entries:
        mechanism, sensitivity, norm, publishable = LAPLACE_MONOTONE_TOPK, 1.0, "linf", False
        scale = top_k / epsilon
    else:
        mechanism = LAPLACE_HISTOGRAM if noise == "laplace" else DISCRETE_LAPLACE_HISTOGRAM
        sensitivity, norm, publishable = float(max_entries), "l1", True
        scale = max_entries / epsilon
    if math.isinf(epsilon):
        publishable = False  # without noise these are the exact counts, never publishable
    spec = MechanismSpec(
        unit=UNIT_CLIENT, mechanism=mechanism, sensitivity=sensitivity, sensitivity_norm=norm,
        noise_scale=scale, epsilon=epsilon, delta=0.0,
    )
    return HistogramCalibration(spec=spec, publishable_counts=publishable)


@dataclass(frozen=True, kw_only=True)
class CentralRelease:
    """Result of a central noisy top-K.

    Parameters
    ----------
    winners
        Read-only int64 array of the ``K`` winning indices, by decreasing noisy count.
    publishable_counts
        Read-only noisy histogram when it may be published, else ``None``.
    spec
        The release's :class:`MechanismSpec` (client unit).
    """

    winners: np.ndarray = field(metadata={"help": "winning indices"})
    publishable_counts: np.ndarray | None = field(metadata={"help": "publishable noisy counts or None"})
    spec: MechanismSpec = field(metadata={"help": "description of the release"})

    def __post_init__(self) -> None:
        winners = np.array(self.winners, dtype=np.int64, copy=True)
        winners.setflags(write=False)
        object.__setattr__(self, "winners", winners)
        if self.publishable_counts is not None:
            counts = np.array(self.publishable_counts, copy=True)
            counts.setflags(write=False)
            object.__setattr__(self, "publishable_counts", counts)


def draw_noisy_histogram(
    counts: object,
    *,
    top_k: int,
    max_entries: int,
    epsilon: float,
    rng: np.random.Generator,
    noise: str = "laplace",
    num_draws: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """``num_draws`` independent central releases (for audits and simulations).

    Returns
    -------
    tuple of numpy.ndarray
        Winners ``(num_draws, top_k)`` and noisy counts ``(num_draws, d)`` (float64 for Laplace,
        int64 for discrete Laplace). Every row is a separate release costing ``epsilon``; the
        noisy counts are publishable only when the calibration says so.
    """
    values = check_counts(counts)
    top_k = check_int("top_k", top_k, minimum=1, maximum=values.size)
    rng = check_rng(rng)
    num_draws = check_int("num_draws", num_draws, minimum=1)
    spec = histogram_calibration(top_k=top_k, max_entries=max_entries, epsilon=epsilon, noise=noise).spec
    d = values.size
    noisy = np.empty((num_draws, d), dtype=np.float64 if noise == "laplace" else np.int64)
    winners = np.empty((num_draws, top_k), dtype=np.int64)
    rows_per_chunk = max(1, _MAX_CHUNK_ELEMENTS // d)
    for start in range(0, num_draws, rows_per_chunk):
        rows = min(rows_per_chunk, num_draws - start)
        if spec.noise_scale == 0.0:
            block = np.broadcast_to(values, (rows, d)).astype(noisy.dtype)
        elif noise == "laplace":
            block = values + rng.laplace(0.0, spec.noise_scale, size=(rows, d))
        else:
            # The spec's scale c/ε as an exact rational (sensitivity c is an integer and ε an exact
            # binary fraction), so that float rounding of c/ε cannot shrink the noise.
            exact_scale = Fraction(spec.sensitivity) / Fraction(spec.epsilon)
            block = values + discrete_laplace_noise(scale=exact_scale, size=rows * d, rng=rng).reshape(rows, d)
        noisy[start : start + rows] = block
        winners[start : start + rows] = topk_rows(block, top_k, rng)
    return winners, noisy


def noisy_topk_histogram(
    counts: object,
    *,
    top_k: int,
    max_entries: int,
    epsilon: float,
    rng: np.random.Generator,
    noise: str = "laplace",
) -> CentralRelease:
    """Central noisy top-K over a vote histogram (client level).

    Output distribution: the ``K`` largest of ``counts + Z`` with ``Z_j`` i.i.d. ``Lap(b)`` or
    ``DLap(b)``, ``b`` from :func:`histogram_calibration`; exact ties broken uniformly at random.
    Sensitivity: ``c`` in L1 and 1 in L∞ under add/remove-one-client (monotone). ε-DP.

    Parameters
    ----------
    counts
        Vote histogram from :func:`tally_votes` (non-negative integers).
    top_k
        Number of winners ``K``, ``1 <= K <= d``.
    max_entries
        ``c``, the most entries a validated vote may hold.
    epsilon
        Privacy loss, ``> 0``; ``inf`` = non-private baseline.
    rng
        Noise generator (:func:`privacy.make_rng`).
    noise
        ``"laplace"`` or ``"discrete-laplace"``.

    Returns
    -------
    CentralRelease
        Winners, publishable noisy counts (or ``None``) and the release's spec.
    """
    winners, noisy = draw_noisy_histogram(
        counts, top_k=top_k, max_entries=max_entries, epsilon=epsilon, rng=rng, noise=noise, num_draws=1
    )
    calibration = histogram_calibration(top_k=top_k, max_entries=max_entries, epsilon=epsilon, noise=noise)
    return CentralRelease(
        winners=winners[0],
        publishable_counts=noisy[0] if calibration.publishable_counts else None,
        spec=calibration.spec,
    )
