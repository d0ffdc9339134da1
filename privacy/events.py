"""Release descriptions: what a mechanism did (:class:`MechanismSpec`) and the ledger record of
one release in a run (:class:`PrivacyEvent`).

Privacy units (DESIGN.md 5.1, 5.2):

- ``"record"``: neighbouring = one example of one client's dataset replaced. Charged to every
  participating client (each client's own guarantee).
- ``"client"``: neighbouring = one client added or removed. Charged to the server-level total.

Both classes are immutable and fully validated at construction, like ``dp_accounting``'s
``DpEvent``: an inconsistent description (an ε = 0 release that reads data, an exact release of
data claiming a finite ε, ...) never reaches the ledger.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field, fields
from typing import Any, Final

import numpy as np

from privacy._checks import check_int, check_nonnegative
from privacy.errors import PrivacyError
from storage import decode_float, encode_float

__all__ = [
    "DATA_FREE",
    "DP_SGD",
    "UNACCOUNTED",
    "DEVICE_BOUND",
    "DISCRETE_LAPLACE_HISTOGRAM",
    "GAUSSIAN",
    "GAUSSIAN_TOPK",
    "GUMBEL_TOPK",
    "LAPLACE",
    "LAPLACE_HISTOGRAM",
    "LAPLACE_MONOTONE_TOPK",
    "LAPLACE_TOPK",
    "SENSITIVITY_NORMS",
    "UNITS",
    "UNIT_CLIENT",
    "UNIT_RECORD",
    "MechanismSpec",
    "PrivacyEvent",
    "data_free_spec",
]

UNIT_RECORD: Final = "record"
UNIT_CLIENT: Final = "client"
UNITS: Final = (UNIT_RECORD, UNIT_CLIENT)
SENSITIVITY_NORMS: Final = ("l1", "l2", "linf")

# Mechanism names written to the ledger (stable strings).
LAPLACE_TOPK: Final = "laplace-topk"  # record level, one-shot Lap(2kΔ/ε) top-k
GUMBEL_TOPK: Final = "gumbel-topk"  # record level, one-shot Gumbel(2kΔ/ε) top-k
GAUSSIAN_TOPK: Final = "gaussian-topk"  # record level, N(0, (zΔ₂)²) on every score, top-k; (ε, δ)
LAPLACE_HISTOGRAM: Final = "laplace-histogram"  # client level, Lap(c/ε) on every count, then top-K
LAPLACE_MONOTONE_TOPK: Final = "laplace-monotone-topk"  # client level, Lap(K/ε) noisy top-K
DISCRETE_LAPLACE_HISTOGRAM: Final = "discrete-laplace-histogram"  # client level, DLap(c/ε) counts
LAPLACE: Final = "laplace"  # plain Laplace mechanism, L1 sensitivity (e.g. recorded by others)
GAUSSIAN: Final = "gaussian"  # plain Gaussian mechanism, L2 sensitivity (e.g. DP-FedAvg)
DATA_FREE: Final = "data-free"  # reads no private data: ε = 0
DP_SGD: Final = "dp-sgd"  # record level, Poisson-sampled Gaussian steps of clipped gradients (privacy.dp_sgd)
UNACCOUNTED: Final = "unaccounted"  # data released without a description the ledger can price: ε = inf
DEVICE_BOUND: Final = "device-bound"  # record level, a release priced only by the (ε, δ) its device calibrates to

_NUMBER_FIELDS: Final = ("sensitivity", "noise_scale", "epsilon", "delta")


def _check_release(
    *,
    unit: object,
    mechanism: object,
    sensitivity: float,
    sensitivity_norm: object,
    noise_scale: float,
    epsilon: float,
    delta: float,
) -> None:
    """Check the fields shared by :class:`MechanismSpec` and :class:`PrivacyEvent`."""
    if unit not in UNITS:
        raise PrivacyError(f"unit must be one of {list(UNITS)}. Found {unit!r}.")
    if not isinstance(mechanism, str) or not mechanism.strip():
        raise PrivacyError(f"mechanism must be a non-empty string. Found {mechanism!r}.")
    check_nonnegative("sensitivity", sensitivity)
    if sensitivity_norm is not None and sensitivity_norm not in SENSITIVITY_NORMS:
        raise PrivacyError(
            f"sensitivity_norm must be None or one of {list(SENSITIVITY_NORMS)}. Found {sensitivity_norm!r}."
        )
    check_nonnegative("noise_scale", noise_scale)
    check_nonnegative("epsilon", epsilon, allow_inf=True)
    if not isinstance(delta, (int, float)) or isinstance(delta, bool) or not 0.0 <= delta < 1.0:
        raise PrivacyError(f"delta must be a number in [0, 1). Found {delta!r}.")
    if epsilon == 0.0 and (sensitivity != 0.0 or delta != 0.0):
        raise PrivacyError(
            "epsilon must be > 0 for a release that reads data (sensitivity > 0 or delta > 0)."
            f" Found epsilon=0 with sensitivity={sensitivity}, delta={delta}."
        )
    if sensitivity > 0.0 and noise_scale == 0.0 and not math.isinf(epsilon):
        raise PrivacyError(
            f"epsilon must be inf for a noiseless release of data (noise_scale=0). Found {epsilon}."
        )
    if mechanism == DATA_FREE and (sensitivity, noise_scale, epsilon, delta) != (0.0, 0.0, 0.0, 0.0):
        raise PrivacyError(
            "a data-free release must have sensitivity, noise_scale, epsilon and delta 0."
            f" Found {(sensitivity, noise_scale, epsilon, delta)}."
        )


_SAMPLING_FIELDS: Final = ("sample_rate", "steps")


def _check_sampling(mechanism: object, sample_rate: object, steps: object) -> None:
    """A ``dp-sgd`` event has a sampling rate in (0, 1] and steps >= 1; no other event has either."""
    if mechanism != DP_SGD:
        if sample_rate is not None or steps is not None:
            raise PrivacyError(f"sample_rate and steps must be None unless mechanism is {DP_SGD!r}."
                               f" Found {sample_rate!r}, {steps!r} for {mechanism!r}.")
        return
    if (isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, float))
            or not 0.0 < float(sample_rate) <= 1.0):
        raise PrivacyError(f"sample_rate of a {DP_SGD} event must be a number in (0, 1]. Found {sample_rate!r}.")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise PrivacyError(f"steps of a {DP_SGD} event must be an int >= 1. Found {steps!r}.")


def _as_float(name: str, value: object) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise PrivacyError(f"{name} must be a real number. Found {value!r}.")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class MechanismSpec:
    """What one mechanism invocation did, independent of the run it belongs to.

    Parameters
    ----------
    unit
        ``"record"`` or ``"client"``: the neighbouring relation under which ``epsilon`` holds.
    mechanism
        Stable mechanism name (module constants, e.g. ``LAPLACE_TOPK``).
    sensitivity
        Sensitivity of the noised quantity under ``unit``'s neighbouring relation.
    sensitivity_norm
        Norm of ``sensitivity`` (``"l1"``, ``"l2"``, ``"linf"``), ``None`` when not applicable.
    noise_scale
        Scale of the added noise (Laplace ``b``, Gumbel ``β``, Gaussian ``σ``, discrete Laplace
        ``τ``); the noise drawn is never smaller (see :mod:`privacy.discrete_laplace`).
    epsilon
        Privacy loss of the release (``inf``: no noise, non-private baseline).
    delta
        δ of the release (0 for pure ε-DP mechanisms).
    """

    unit: str = field(metadata={"help": "privacy unit: record or client"})
    mechanism: str = field(metadata={"help": "mechanism name"})
    sensitivity: float = field(metadata={"help": "sensitivity of the noised quantity"})
    sensitivity_norm: str | None = field(metadata={"help": "l1, l2, linf or None"})
    noise_scale: float = field(metadata={"help": "scale of the added noise"})
    epsilon: float = field(metadata={"help": "privacy loss (inf: no noise)"})
    delta: float = field(default=0.0, metadata={"help": "delta of the release"})

    def __post_init__(self) -> None:
        for name in _NUMBER_FIELDS:
            object.__setattr__(self, name, _as_float(name, getattr(self, name)))
        _check_release(
            unit=self.unit,
            mechanism=self.mechanism,
            sensitivity=self.sensitivity,
            sensitivity_norm=self.sensitivity_norm,
            noise_scale=self.noise_scale,
            epsilon=self.epsilon,
            delta=self.delta,
        )


def data_free_spec(unit: str) -> MechanismSpec:
    """Spec of a release that reads no private data (data-free scores): an ε = 0 event."""
    return MechanismSpec(
        unit=unit, mechanism=DATA_FREE, sensitivity=0.0, sensitivity_norm=None,
        noise_scale=0.0, epsilon=0.0, delta=0.0,
    )


def _decode_float(name: str, value: object) -> float:
    # JSON has no infinity: the ledger spells it "inf" (storage.encode_float).
    return _as_float(name, decode_float(value))


@dataclass(frozen=True, kw_only=True)
class PrivacyEvent:
    """One release in a run, as charged to the privacy ledger.

    Parameters
    ----------
    round
        Search or training round (0 = setup, before the first round).
    phase
        Run phase, e.g. ``"search"`` or ``"training"``.
    domain
        Vote domain, e.g. ``"library"`` or ``"connectivity"``.
    layer
        Layer name, ``None`` for a model-wide domain.
    unit, mechanism, sensitivity, sensitivity_norm, noise_scale, epsilon, delta
        As in :class:`MechanismSpec`.
    participants
        Client ids whose data the release read (record unit: each is charged ``epsilon``).
    attempt
        Attempt number of this round (0 first; a re-run round after a failure gets 1, 2, ...).
    event_id
        Unique id (random by default); the ledger refuses an id it already holds.
    """

    round: int = field(metadata={"help": "round number (0 = setup)"})
    phase: str = field(metadata={"help": "run phase, e.g. search or training"})
    domain: str = field(metadata={"help": "vote domain"})
    layer: str | None = field(metadata={"help": "layer name or None"})
    unit: str = field(metadata={"help": "privacy unit: record or client"})
    mechanism: str = field(metadata={"help": "mechanism name"})
    sensitivity: float = field(metadata={"help": "sensitivity of the noised quantity"})
    noise_scale: float = field(metadata={"help": "scale of the added noise"})
    epsilon: float = field(metadata={"help": "privacy loss (inf: no noise)"})
    delta: float = field(metadata={"help": "delta of the release"})
    participants: tuple[str, ...] = field(metadata={"help": "client ids that took part"})
    sensitivity_norm: str | None = field(default=None, metadata={"help": "l1, l2, linf or None"})
    attempt: int = field(default=0, metadata={"help": "attempt number of the round"})
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex, metadata={"help": "unique id"})
    sample_rate: float | None = field(default=None, metadata={"help": "dp-sgd only: Poisson sampling rate q"})
    steps: int | None = field(default=None, metadata={"help": "dp-sgd only: noisy steps of this release"})

    def __post_init__(self) -> None:
        check_int("round", self.round, minimum=0)
        _check_sampling(self.mechanism, self.sample_rate, self.steps)
        check_int("attempt", self.attempt, minimum=0)
        object.__setattr__(self, "round", int(self.round))
        object.__setattr__(self, "attempt", int(self.attempt))
        for name in ("phase", "domain", "event_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise PrivacyError(f"{name} must be a non-empty string. Found {value!r}.")
        if self.layer is not None and (not isinstance(self.layer, str) or not self.layer.strip()):
            raise PrivacyError(f"layer must be None or a non-empty string. Found {self.layer!r}.")
        for name in _NUMBER_FIELDS:
            object.__setattr__(self, name, _as_float(name, getattr(self, name)))
        _check_release(
            unit=self.unit, mechanism=self.mechanism, sensitivity=self.sensitivity,
            sensitivity_norm=self.sensitivity_norm, noise_scale=self.noise_scale,
            epsilon=self.epsilon, delta=self.delta,
        )
        if isinstance(self.participants, (str, bytes)) or not isinstance(self.participants, (tuple, list)):
            raise PrivacyError(f"participants must be a tuple of client ids. Found {self.participants!r}.")
        participants = tuple(self.participants)
        if not all(isinstance(p, str) and p for p in participants):
            raise PrivacyError(f"participants must be non-empty strings. Found {participants!r}.")
        if len(set(participants)) != len(participants):
            raise PrivacyError(f"participants must be unique. Found {participants!r}.")
        if self.unit == UNIT_RECORD and not participants and (self.epsilon > 0.0 or self.delta > 0.0):
            raise PrivacyError(
                "participants must be non-empty for a record-level release with epsilon > 0"
                " (each participant is charged). Found ()."
            )
        object.__setattr__(self, "participants", participants)

    @classmethod
    def from_spec(
        cls,
        spec: MechanismSpec,
        *,
        round: int,  # noqa: A002 - the field's name in the ledger
        phase: str,
        domain: str,
        layer: str | None,
        participants: tuple[str, ...] | list[str],
        attempt: int = 0,
    ) -> PrivacyEvent:
        """Build the ledger event of a release described by ``spec``."""
        if not isinstance(spec, MechanismSpec):
            raise PrivacyError(f"spec must be a MechanismSpec. Found {type(spec).__name__}.")
        return cls(
            round=round, phase=phase, domain=domain, layer=layer, unit=spec.unit,
            mechanism=spec.mechanism, sensitivity=spec.sensitivity,
            sensitivity_norm=spec.sensitivity_norm, noise_scale=spec.noise_scale,
            epsilon=spec.epsilon, delta=spec.delta, participants=tuple(participants),
            attempt=attempt,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (``inf`` written as the string ``"inf"``)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SAMPLING_FIELDS and value is None:
                continue  # only dp-sgd events have them: every other ledger line stays as it was
            if f.name in _NUMBER_FIELDS:
                value = encode_float(value)
            elif f.name == "participants":
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrivacyEvent:
        """Inverse of :meth:`to_dict`; unknown or missing keys are errors."""
        if not isinstance(data, dict):
            raise PrivacyError(f"event must be a JSON object. Found {type(data).__name__}.")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise PrivacyError(f"event keys must be among {sorted(names)}. Found unknown {unknown}.")
        required = {f.name for f in fields(cls)
                    if f.name not in ("sensitivity_norm", "attempt", "event_id", *_SAMPLING_FIELDS)}
        missing = sorted(required - set(data))
        if missing:
            raise PrivacyError(f"event must have keys {sorted(required)}. Missing {missing}.")
        kwargs = dict(data)
        for name in _NUMBER_FIELDS:
            kwargs[name] = _decode_float(name, kwargs[name])
        if not isinstance(kwargs["participants"], list):
            raise PrivacyError(f"participants must be a list. Found {kwargs['participants']!r}.")
        kwargs["participants"] = tuple(kwargs["participants"])
        return cls(**kwargs)

    def charged_clients(self) -> tuple[str, ...]:
        """Clients charged ``epsilon`` by this event (record unit: the participants; else none)."""
        return self.participants if self.unit == UNIT_RECORD else ()
