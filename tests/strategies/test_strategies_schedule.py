"""Density schedule: geometric decay to the target, then hold; bad settings refused."""

from __future__ import annotations

import math

import pytest

from strategies import DensitySchedule, StrategyError


def test_geometric_decay_then_hold() -> None:
    schedule = DensitySchedule(start=0.5, target=0.05, decay_rounds=3, hold_rounds=2)
    densities = schedule.densities()
    assert schedule.total_rounds == 5
    assert densities[2:] == (0.05, 0.05, 0.05)  # exactly the target from the last decay round on
    ratios = [densities[i + 1] / densities[i] for i in range(2)]
    factor = (0.05 / 0.5) ** (1 / 3)
    assert densities[0] == pytest.approx(0.5 * factor)
    assert ratios == pytest.approx([factor, factor])  # the same fraction removed every round


def test_constant_schedule() -> None:
    assert DensitySchedule.constant(0.2, rounds=3).densities() == (0.2, 0.2, 0.2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"start": 0.1, "target": 0.2, "decay_rounds": 2}, "target must be <= start"),
        ({"start": 0.0, "target": 0.0, "decay_rounds": 2}, "start must be a number in"),
        ({"start": 1.5, "target": 0.2, "decay_rounds": 2}, "start must be a number in"),
        ({"start": 0.5, "target": math.nan, "decay_rounds": 2}, "target must be a number in"),
        ({"start": 0.5, "target": 0.2, "decay_rounds": 0}, "decay_rounds must be an int >= 1"),
        ({"start": 0.5, "target": 0.2, "decay_rounds": 2, "hold_rounds": -1}, "hold_rounds must be"),
    ],
)
def test_bad_schedules_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(StrategyError, match=match):
        DensitySchedule(**kwargs)


def test_rounds_outside_the_schedule_are_refused() -> None:
    schedule = DensitySchedule(start=0.5, target=0.1, decay_rounds=2)
    with pytest.raises(StrategyError, match="server_round must be <= 2"):
        schedule.density(3)
    with pytest.raises(StrategyError, match="server_round must be an int >= 1"):
        schedule.density(0)
