"""Rounds to accuracy: the first round at or above 0.9 x dense's final accuracy, or never."""

from __future__ import annotations

import json

import pytest

from federation.rounds_to_accuracy import FRACTION_OF_DENSE, ReachedRound, RoundsToAccuracy, rounds_to_accuracy

SERIES = {
    "dense": {0: 0.1, 1: 0.5, 2: 0.8, 3: 0.9, 4: 1.0},  # threshold 0.9 x 1.0 = 0.9: dense reaches it at round 3
    "dp_ticket": {0: 0.1, 2: 0.7, 1: 0.95, 3: 0.4, 4: 0.5},  # rounds unsorted: round 1 is the first, not round 2
    "random_ticket": {0: 0.1, 1: 0.2, 2: 0.3, 3: 0.3, 4: 0.89},
}


def test_the_first_round_at_or_above_the_threshold_and_never():
    result = rounds_to_accuracy(SERIES)
    assert result.fraction_of_dense == FRACTION_OF_DENSE == 0.9
    assert result.threshold == pytest.approx(0.9)
    assert result.by_variant == {
        "dense": ReachedRound(round=3, rounds_evaluated=4),
        "dp_ticket": ReachedRound(round=1, rounds_evaluated=4),  # later drops do not undo it
        "random_ticket": ReachedRound(round=None, rounds_evaluated=4),  # 0.89 < 0.9: never
    }


def test_reaching_exactly_the_threshold_counts_and_round_zero_is_theta0():
    result = rounds_to_accuracy({"dense": {0: 0.2, 1: 0.8}, "dp_ticket": {0: 0.4, 1: 0.4}}, fraction_of_dense=0.5)
    assert result.threshold == 0.4
    assert result.by_variant["dp_ticket"] == ReachedRound(round=0, rounds_evaluated=1)
    assert result.by_variant["dense"] == ReachedRound(round=1, rounds_evaluated=1)


def test_without_dense_there_is_no_threshold_and_no_claim():
    result = rounds_to_accuracy({"dp_ticket": {0: 0.1, 1: 0.9}})
    assert result.threshold is None and result.by_variant == {}
    assert result.to_json() == {"fraction-of-dense": 0.9, "threshold": None, "variants": {}}


def test_the_json_round_trips_and_names_never_as_null():
    result = rounds_to_accuracy(SERIES)
    data = json.loads(json.dumps(result.to_json(), allow_nan=False))
    assert data["variants"]["random_ticket"] == {"round": None, "rounds-evaluated": 4}
    assert RoundsToAccuracy.from_json(data) == result


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1], "rounds-to-accuracy must be an object"),
        ({"fraction-of-dense": 0.9, "threshold": 0.5}, "variants must be an object"),
        ({"fraction-of-dense": 0.9, "threshold": 0.5, "variants": {"dense": {"round": "3", "rounds-evaluated": 4}}},
         "variants.dense must be"),
        ({"fraction-of-dense": 0.9, "threshold": 0.5, "variants": {"dense": {"round": 5, "rounds-evaluated": 4}}},
         "round must be in [0, 4] or None. Found 5."),
        ({"fraction-of-dense": "0.9", "threshold": 0.5, "variants": {}}, "needs a number 'fraction-of-dense'"),
        ({"fraction-of-dense": 1.5, "threshold": 0.5, "variants": {}}, "fraction-of-dense must be in (0, 1]"),
        ({"fraction-of-dense": 0.9, "threshold": None, "variants": {"dense": {"round": 1, "rounds-evaluated": 1}}},
         "variants must be empty when there is no threshold"),
    ],
)
def test_malformed_json_is_a_one_line_error(data, message):
    with pytest.raises(ValueError) as info:
        RoundsToAccuracy.from_json(data)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"fraction-of-dense must be in \(0, 1\]. Found 0.0"):
        rounds_to_accuracy(SERIES, fraction_of_dense=0.0)
    with pytest.raises(ValueError, match=r"test accuracy of dp_ticket must be in \[0, 1\]. Found 1.5"):
        rounds_to_accuracy({"dense": {0: 0.5}, "dp_ticket": {0: 1.5}})
