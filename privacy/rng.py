"""Noise generator policy (DESIGN.md section 5.5).

By default the generator is seeded from the operating system's entropy pool, so that nobody,
including the operator, can predict the noise. A user-set seed makes runs reproducible but the
privacy guarantee then holds only if the seed stays secret: a :class:`SeededNoiseWarning` says so.

NOTE: numpy's ``PCG64`` is a statistical generator, not a cryptographically secure one; the
guarantee also assumes its state is not observed (Mironov 2012, "On significance of the least
significant bits for differential privacy", discusses such implementation gaps).
"""

from __future__ import annotations

import secrets
import warnings

import numpy as np

from privacy.errors import PrivacyError

__all__ = ["SeededNoiseWarning", "make_rng"]


class SeededNoiseWarning(UserWarning):
    """A privacy mechanism's noise generator was seeded by the user."""


def make_rng(seed: int | None = None) -> np.random.Generator:
    """Return the noise generator for privacy mechanisms.

    Parameters
    ----------
    seed
        ``None`` (default): 128 bits from the OS entropy pool (:mod:`secrets`). A non-negative
        integer: reproducible noise, with a :class:`SeededNoiseWarning`.

    Returns
    -------
    numpy.random.Generator
        A ``PCG64`` generator.

    Raises
    ------
    PrivacyError
        If ``seed`` is not ``None`` or a non-negative integer.
    """
    if seed is None:
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(secrets.randbits(128))))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise PrivacyError(f"seed must be None or a non-negative integer. Found {seed!r}.")
    warnings.warn(
        f"privacy noise is seeded with a user seed ({int(seed)}): the differential-privacy"
        " guarantee then assumes this seed is secret. Use seed=None (OS entropy) for real runs.",
        SeededNoiseWarning,
        stacklevel=2,
    )
    return np.random.default_rng(int(seed))
