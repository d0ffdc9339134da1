"""Density schedule of the search: geometric from dense to the target, then hold.

Round ``r`` (1-based) builds a ticket of weight density (kept / total)
``start * (target / start) ** (min(r, decay_rounds) / decay_rounds)``: each of the first
``decay_rounds`` rounds removes the same fraction of what is left, as iterative magnitude
pruning does (Frankle & Carbin 2019), and ``hold_rounds`` more rounds keep the target to show
convergence. ``start`` is the density of round 0 (the dense model, or ``m / 9`` for pattern
layers, the most a library of ``m``-entry patterns keeps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from strategies.errors import StrategyError

__all__ = ["DensitySchedule"]


def _check_density(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) <= 1.0:
        raise StrategyError(f"{name} must be a number in (0, 1]. Found {value!r}.")


def _check_count(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise StrategyError(f"{name} must be an int >= {minimum}. Found {value!r}.")


@dataclass(frozen=True, kw_only=True)
class DensitySchedule:
    """Weight density per search round (see the module docstring for the formula)."""

    start: float = field(metadata={"help": "density before round 1 (dense point of the schedule)"})
    target: float = field(metadata={"help": "final weight density"})
    decay_rounds: int = field(metadata={"help": "rounds to go from start to target (>= 1)"})
    hold_rounds: int = field(default=0, metadata={"help": "rounds at the target after the decay"})

    def __post_init__(self) -> None:
        _check_density("start", self.start)
        _check_density("target", self.target)
        if self.target > self.start:
            raise StrategyError(f"target must be <= start = {self.start}. Found {self.target}.")
        _check_count("decay_rounds", self.decay_rounds, 1)
        _check_count("hold_rounds", self.hold_rounds, 0)
        object.__setattr__(self, "start", float(self.start))
        object.__setattr__(self, "target", float(self.target))

    @classmethod
    def constant(cls, density: float, *, rounds: int) -> DensitySchedule:
        """``rounds`` rounds all at ``density``."""
        _check_count("rounds", rounds, 1)
        return cls(start=density, target=density, decay_rounds=1, hold_rounds=rounds - 1)

    @property
    def total_rounds(self) -> int:
        """``decay_rounds + hold_rounds``."""
        return self.decay_rounds + self.hold_rounds

    def density(self, server_round: int) -> float:
        """Weight density of the ticket built in ``server_round`` (1-based)."""
        _check_count("server_round", server_round, 1)
        if server_round > self.total_rounds:
            raise StrategyError(f"server_round must be <= {self.total_rounds}. Found {server_round}.")
        if server_round >= self.decay_rounds:
            return self.target  # exact, not a rounded power
        return self.start * math.exp(math.log(self.target / self.start) * server_round / self.decay_rounds)

    def densities(self) -> tuple[float, ...]:
        """Density of every round, round 1 first."""
        return tuple(self.density(r) for r in range(1, self.total_rounds + 1))
