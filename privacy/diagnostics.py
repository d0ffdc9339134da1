"""Signal-to-noise diagnostic of a release (DESIGN.md 5.6, "honest utility").

Rule: ``ratio = signal_range / noise_scale`` where ``signal_range`` is the whole range the noised
quantity can take (a vote count: the number of voting clients; a mean score: the clip bound
``C``). When the noise scale is at least that range (``ratio <= 1``) the noise can move any value
across its whole range and the release is flagged ``noise_dominated``. A noiseless release
(``noise_scale = 0``, ε = ∞) has ``ratio = inf``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

from privacy._checks import check_int, check_nonnegative, check_positive_finite
from privacy.events import MechanismSpec

__all__ = [
    "NOISE_DOMINATED_AT_OR_BELOW",
    "NoiseDiagnostic",
    "histogram_diagnostic",
    "score_diagnostic",
    "signal_to_noise",
]

NOISE_DOMINATED_AT_OR_BELOW: Final = 1.0


@dataclass(frozen=True, kw_only=True)
class NoiseDiagnostic:
    """Signal range against noise scale for one release."""

    ratio: float = field(metadata={"help": "signal_range / noise_scale"})
    noise_dominated: bool = field(metadata={"help": "ratio <= 1"})
    noise_scale: float = field(metadata={"help": "noise scale of the release"})
    signal_range: float = field(metadata={"help": "range the signal can take"})


def signal_to_noise(*, noise_scale: float, signal_range: float) -> NoiseDiagnostic:
    """Compare a release's noise scale with the range of its signal (rule in the module docstring).

    Parameters
    ----------
    noise_scale
        Scale of the added noise (``>= 0``).
    signal_range
        Width of the range the noised quantity can take (``> 0``).
    """
    noise_scale = check_nonnegative("noise_scale", noise_scale)
    signal_range = check_positive_finite("signal_range", signal_range)
    ratio = math.inf if noise_scale == 0.0 else signal_range / noise_scale
    return NoiseDiagnostic(
        ratio=ratio, noise_dominated=ratio <= NOISE_DOMINATED_AT_OR_BELOW,
        noise_scale=noise_scale, signal_range=signal_range,
    )


def histogram_diagnostic(spec: MechanismSpec, *, num_voters: int) -> NoiseDiagnostic:
    """Diagnostic of a central release: a count ranges over ``[0, num_voters]``."""
    num_voters = check_int("num_voters", num_voters, minimum=1)
    return signal_to_noise(noise_scale=spec.noise_scale, signal_range=float(num_voters))


def score_diagnostic(spec: MechanismSpec, *, clip_bound: float) -> NoiseDiagnostic:
    """Diagnostic of a record-level vote: a clipped mean score ranges over ``[0, C]``."""
    return signal_to_noise(noise_scale=spec.noise_scale, signal_range=clip_bound)
