"""Statistical lower bounds on ε from samples of a mechanism (black-box DP auditing).

Given ``N`` releases on a dataset ``D`` and ``N'`` on a neighbour ``D'``, and output events
``E_1..E_m`` fixed *before* sampling, a mechanism that is ε-DP satisfies
``P_D(E) <= e^ε P_D'(E)`` and the reverse for every event. With one-sided Clopper-Pearson bounds
(Clopper & Pearson 1934) at level ``alpha / (4m)`` each (lower and upper bound, on both datasets,
for every event: a union bound), the figure

    max over events and directions of  ln( lower(P_D(E)) / upper(P_D'(E)) )

is, with probability at least ``1 - alpha``, at most the mechanism's true ε. For an (ε, δ)
claim, ``P_D(E) <= e^ε P_D'(E) + δ``, the numerator is ``lower(P_D(E)) - δ`` (``delta``). If it exceeds the
claimed ε, the claim is refuted at that confidence (Ding, Wang, Wang, Zhang, Kifer 2018,
"Detecting violations of differential privacy", CCS; Jagielski, Ullman, Oprea 2020).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from privacy._checks import check_int
from privacy.errors import PrivacyError

__all__ = ["AuditResult", "clopper_pearson", "epsilon_lower_bound"]


def clopper_pearson(successes: int, trials: int, *, alpha: float) -> tuple[float, float]:
    """One-sided Clopper-Pearson bounds ``(lower, upper)``, each holding with prob. ``>= 1 - alpha``."""
    trials = check_int("trials", trials, minimum=1)
    successes = check_int("successes", successes, minimum=0, maximum=trials)
    if not 0.0 < alpha < 1.0:
        raise PrivacyError(f"alpha must be in (0, 1). Found {alpha!r}.")
    from scipy import stats  # lazy: scipy.stats takes seconds to import and clients never audit

    lower = 0.0 if successes == 0 else float(stats.beta.ppf(alpha, successes, trials - successes + 1))
    upper = 1.0 if successes == trials else float(stats.beta.ppf(1.0 - alpha, successes + 1, trials - successes))
    return lower, upper


@dataclass(frozen=True, kw_only=True)
class AuditResult:
    """Outcome of :func:`epsilon_lower_bound`."""

    epsilon_lower_bound: float = field(metadata={"help": "ε the mechanism must at least have (w.p. 1 - alpha)"})
    best_event: int = field(metadata={"help": "column of the event giving the bound"})
    empirical_log_ratio: float = field(metadata={"help": "plug-in |ln(p/q)| of that event"})
    alpha: float = field(metadata={"help": "overall error probability"})


def epsilon_lower_bound(
    hits_d: np.ndarray, hits_d_prime: np.ndarray, *, alpha: float, delta: float = 0.0
) -> AuditResult:
    """Clopper-Pearson lower bound on ε from event indicators on two neighbouring datasets.

    Parameters
    ----------
    hits_d, hits_d_prime
        Boolean arrays of shape ``(N, m)`` and ``(N', m)``: whether each release fell in each of
        the ``m`` pre-registered events (1-D arrays mean ``m = 1``).
    alpha
        Overall probability that the bound exceeds the true ε.
    delta
        δ of the audited (ε, δ) claim, subtracted from each lower probability (0: pure ε-DP).

    Returns
    -------
    AuditResult
        The bound (``0`` when no event shows a ratio above 1 with confidence).
    """
    a = np.asarray(hits_d, dtype=bool)
    b = np.asarray(hits_d_prime, dtype=bool)
    a = a[:, None] if a.ndim == 1 else a
    b = b[:, None] if b.ndim == 1 else b
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.shape[0] == 0 or b.shape[0] == 0:
        raise PrivacyError(f"hits must be (N, m) arrays with the same m. Found {a.shape} and {b.shape}.")
    if not isinstance(delta, (int, float)) or isinstance(delta, bool) or not 0.0 <= delta < 1.0:
        raise PrivacyError(f"delta must be a number in [0, 1). Found {delta!r}.")
    m = a.shape[1]
    level = alpha / (4 * m)
    best, best_event, best_plugin = 0.0, 0, 0.0
    counts_a, counts_b = a.sum(axis=0), b.sum(axis=0)
    for event in range(m):
        lo_a, hi_a = clopper_pearson(int(counts_a[event]), a.shape[0], alpha=level)
        lo_b, hi_b = clopper_pearson(int(counts_b[event]), b.shape[0], alpha=level)
        for lower, upper in ((lo_a, hi_b), (lo_b, hi_a)):
            lower -= delta
            if lower > 0.0 and math.log(lower / upper) > best:
                best, best_event = math.log(lower / upper), event
                p, q = counts_a[event] / a.shape[0], counts_b[event] / b.shape[0]
                best_plugin = abs(math.log(p / q)) if p > 0 and q > 0 else math.inf
    return AuditResult(epsilon_lower_bound=best, best_event=best_event, empirical_log_ratio=best_plugin, alpha=alpha)
