"""Rounds to accuracy: the first training round at which each trained model reached a threshold.

The threshold is :data:`FRACTION_OF_DENSE` of the dense model's final test accuracy (its last
evaluated round). Relative to dense, so the same rule reads on MNIST and on CIFAR-10; 0.9 is
reached by dense itself within a few rounds and by a good ticket, while a ticket at chance never
gets there. A run without a dense model (``baselines = false``, or a sweep run whose references
were trained elsewhere) has no threshold, and says so rather than inventing one.

Rounds are the ``round`` of the ``server-eval`` rows: round 0 is θ0 before any training, round r
the model after r rounds of masked FedAvg. The pipeline writes :meth:`RoundsToAccuracy.to_json`
into ``summary.json`` (``"rounds-to-accuracy"``); the report reads it, or, for a run without it,
calls :func:`rounds_to_accuracy` on ``metrics.jsonl``'s rows. Torch-free (the report imports it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = ["DENSE", "FRACTION_OF_DENSE", "ReachedRound", "RoundsToAccuracy", "rounds_to_accuracy"]

FRACTION_OF_DENSE: Final = 0.9
"""The threshold as a fraction of the dense model's final test accuracy."""
DENSE: Final = "dense"
"""The variant whose final accuracy sets the threshold (a name of :data:`federation.layout.VARIANTS`)."""


@dataclass(frozen=True, kw_only=True)
class ReachedRound:
    """When one model reached the threshold."""

    round: int | None = field(metadata={"help": "first evaluated round at or above the threshold; None: never"})
    rounds_evaluated: int = field(metadata={"help": "the last round evaluated (round 0 is θ0)"})

    def __post_init__(self) -> None:
        if self.rounds_evaluated < 0:
            raise ValueError(f"rounds_evaluated must be >= 0. Found {self.rounds_evaluated}.")
        if self.round is not None and not 0 <= self.round <= self.rounds_evaluated:
            raise ValueError(f"round must be in [0, {self.rounds_evaluated}] or None. Found {self.round}.")


@dataclass(frozen=True, kw_only=True)
class RoundsToAccuracy:
    """Per model, the first round it reached ``threshold``; ``threshold`` is ``None`` without dense."""

    fraction_of_dense: float = field(metadata={"help": "threshold / dense's final test accuracy"})
    threshold: float | None = field(metadata={"help": "test accuracy to reach; None: no dense model trained"})
    by_variant: Mapping[str, ReachedRound] = field(metadata={"help": "variant -> when it reached the threshold"})

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction_of_dense <= 1.0:
            raise ValueError(f"fraction-of-dense must be in (0, 1]. Found {self.fraction_of_dense!r}.")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be an accuracy in [0, 1] or null. Found {self.threshold!r}.")
        if self.threshold is None and self.by_variant:
            raise ValueError("variants must be empty when there is no threshold (no dense model).")
        object.__setattr__(self, "by_variant", dict(self.by_variant))

    def to_json(self) -> dict[str, Any]:
        """``summary.json``'s ``"rounds-to-accuracy"``: ``round`` null means never reached."""
        return {
            "fraction-of-dense": self.fraction_of_dense,
            "threshold": self.threshold,
            "variants": {name: {"round": reached.round, "rounds-evaluated": reached.rounds_evaluated}
                         for name, reached in self.by_variant.items()},
        }

    @classmethod
    def from_json(cls, data: object) -> RoundsToAccuracy:
        """The inverse of :meth:`to_json`.

        Raises
        ------
        ValueError
            If ``data`` is not what :meth:`to_json` writes (one line saying what is wrong).
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"rounds-to-accuracy must be an object. Found {data!r:.60}.")
        variants = data.get("variants")
        if not isinstance(variants, Mapping):
            raise ValueError(f"rounds-to-accuracy.variants must be an object. Found {variants!r:.60}.")
        by_variant = {}
        for name, entry in variants.items():
            reached = entry.get("round") if isinstance(entry, Mapping) else None
            evaluated = entry.get("rounds-evaluated") if isinstance(entry, Mapping) else None
            if not _is_int(evaluated) or not (reached is None or _is_int(reached)):
                raise ValueError(f"rounds-to-accuracy.variants.{name} must be {{\"round\": int or null,"
                                 f" \"rounds-evaluated\": int}}. Found {entry!r:.60}.")
            by_variant[str(name)] = ReachedRound(round=reached, rounds_evaluated=evaluated)
        fraction, threshold = data.get("fraction-of-dense"), data.get("threshold")
        if not _is_number(fraction) or not (threshold is None or _is_number(threshold)):
            raise ValueError(f"rounds-to-accuracy needs a number 'fraction-of-dense' and a number or null"
                             f" 'threshold'. Found {fraction!r:.30} and {threshold!r:.30}.")
        return cls(fraction_of_dense=float(fraction), threshold=None if threshold is None else float(threshold),
                   by_variant=by_variant)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def rounds_to_accuracy(
    accuracy_by_round: Mapping[str, Mapping[int, float]], *, fraction_of_dense: float = FRACTION_OF_DENSE
) -> RoundsToAccuracy:
    """The first round at which each model's test accuracy reached ``fraction_of_dense`` x dense's final one.

    Parameters
    ----------
    accuracy_by_round
        Variant -> {round: test accuracy} (the ``server-eval`` rows; round 0 is θ0). Dense's
        final accuracy is the one of its largest round.
    fraction_of_dense
        The threshold as a fraction of dense's final accuracy, in (0, 1].

    Returns
    -------
    RoundsToAccuracy
        No threshold and no variant when dense has no evaluated round.

    Raises
    ------
    ValueError
        If ``fraction_of_dense`` is outside (0, 1], or an accuracy is not in [0, 1].
    """
    for name, series in accuracy_by_round.items():
        bad = [value for value in series.values() if not 0.0 <= value <= 1.0]
        if bad:
            raise ValueError(f"test accuracy of {name} must be in [0, 1]. Found {bad[0]!r}.")
    dense = accuracy_by_round.get(DENSE) or {}
    if not dense:
        return RoundsToAccuracy(fraction_of_dense=fraction_of_dense, threshold=None, by_variant={})
    threshold = fraction_of_dense * dense[max(dense)]
    by_variant = {}
    for name, series in accuracy_by_round.items():
        if not series:
            continue
        reached = [r for r in sorted(series) if series[r] >= threshold]
        by_variant[name] = ReachedRound(round=reached[0] if reached else None, rounds_evaluated=max(series))
    return RoundsToAccuracy(fraction_of_dense=fraction_of_dense, threshold=threshold, by_variant=by_variant)
