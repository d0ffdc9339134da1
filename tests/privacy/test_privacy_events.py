"""MechanismSpec and PrivacyEvent: validation at construction and JSON round trip."""

from __future__ import annotations

import json
import math

import pytest

from privacy import (
    DATA_FREE,
    LAPLACE_TOPK,
    MechanismSpec,
    PrivacyError,
    PrivacyEvent,
    data_free_spec,
)


def _spec(**overrides: object) -> MechanismSpec:
    fields = dict(unit="record", mechanism=LAPLACE_TOPK, sensitivity=0.1, sensitivity_norm="linf",
                  noise_scale=0.6, epsilon=1.0, delta=0.0)
    fields.update(overrides)
    return MechanismSpec(**fields)  # type: ignore[arg-type]


def _event(**overrides: object) -> PrivacyEvent:
    fields = dict(round=3, phase="search", domain="library", layer=None, unit="record", mechanism=LAPLACE_TOPK,
                  sensitivity=0.1, noise_scale=0.6, epsilon=1.0, delta=0.0, participants=("a", "b"))
    fields.update(overrides)
    return PrivacyEvent(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"unit": "user"}, "unit must be one of"),
        ({"mechanism": ""}, "mechanism must be"),
        ({"sensitivity": -1.0}, "sensitivity must be"),
        ({"sensitivity": math.nan}, "sensitivity must be"),
        ({"sensitivity_norm": "l3"}, "sensitivity_norm must be"),
        ({"noise_scale": -0.1}, "noise_scale must be"),
        ({"epsilon": -1.0}, "epsilon must be"),
        ({"epsilon": math.nan}, "epsilon must be"),
        ({"delta": 1.0}, "delta must be"),
        ({"epsilon": 0.0}, "epsilon must be > 0 for a release that reads data"),
        ({"noise_scale": 0.0}, "epsilon must be inf for a noiseless release"),
        ({"mechanism": DATA_FREE}, "data-free release must have"),
        ({"epsilon": "1"}, "epsilon must be a real number"),
    ],
)
def test_spec_validation(overrides: dict, match: str) -> None:
    with pytest.raises(PrivacyError, match=match):
        _spec(**overrides)


def test_noiseless_release_with_infinite_epsilon_is_valid() -> None:
    spec = _spec(noise_scale=0.0, epsilon=math.inf)
    assert math.isinf(spec.epsilon)


def test_data_free_spec_is_an_epsilon_zero_event() -> None:
    spec = data_free_spec("record")
    assert (spec.epsilon, spec.delta, spec.sensitivity, spec.noise_scale) == (0.0, 0.0, 0.0, 0.0)
    event = PrivacyEvent.from_spec(spec, round=0, phase="search", domain="kernels", layer="conv1", participants=())
    assert event.epsilon == 0.0 and event.participants == ()


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"round": -1}, "round must be"),
        ({"round": 1.0}, "round must be an integer"),
        ({"phase": ""}, "phase must be"),
        ({"domain": " "}, "domain must be"),
        ({"layer": ""}, "layer must be"),
        ({"participants": ("a", "a")}, "participants must be unique"),
        ({"participants": ("a", "")}, "participants must be non-empty strings"),
        ({"participants": "ab"}, "participants must be a tuple"),
        ({"participants": ()}, "participants must be non-empty for a record-level release"),
        ({"attempt": -1}, "attempt must be"),
        ({"event_id": ""}, "event_id must be"),
    ],
)
def test_event_validation(overrides: dict, match: str) -> None:
    with pytest.raises(PrivacyError, match=match):
        _event(**overrides)


def test_event_ids_are_unique_by_default_and_attempt_distinguishes_reruns() -> None:
    first, second = _event(), _event(attempt=1)
    assert first.event_id != second.event_id and second.attempt == 1


def test_event_json_round_trip_including_infinity() -> None:
    event = _event(epsilon=math.inf, noise_scale=0.0, layer="conv2", sensitivity_norm="linf")
    text = json.dumps(event.to_dict(), allow_nan=False)  # standard JSON: no Infinity token
    assert PrivacyEvent.from_dict(json.loads(text)) == event


def test_from_dict_refuses_unknown_and_missing_keys() -> None:
    data = _event().to_dict()
    with pytest.raises(PrivacyError, match="unknown"):
        PrivacyEvent.from_dict({**data, "extra": 1})
    del data["epsilon"]
    with pytest.raises(PrivacyError, match="Missing"):
        PrivacyEvent.from_dict(data)


def test_from_spec_copies_the_mechanism_fields() -> None:
    spec = _spec()
    event = PrivacyEvent.from_spec(spec, round=2, phase="search", domain="library", layer=None, participants=["x"])
    assert (event.unit, event.mechanism, event.sensitivity, event.sensitivity_norm, event.noise_scale,
            event.epsilon, event.delta) == (spec.unit, spec.mechanism, spec.sensitivity, spec.sensitivity_norm,
                                            spec.noise_scale, spec.epsilon, spec.delta)
    assert event.participants == ("x",)
    assert event.charged_clients() == ("x",)
    with pytest.raises(PrivacyError, match="spec must be"):
        PrivacyEvent.from_spec(
            "spec", round=2, phase="s", domain="d", layer=None, participants=[]  # type: ignore[arg-type]
        )


def test_events_are_frozen() -> None:
    event = _event()
    with pytest.raises(AttributeError):
        event.epsilon = 2.0  # type: ignore[misc]
