"""Metadata carried by a ticket: where it comes from and what it cost."""

from __future__ import annotations

import dataclasses
import datetime
import numbers
import types
from collections.abc import Mapping
from typing import Any

from kernels.errors import KernelsError
from storage import decode_float, encode_float

__all__ = ["TicketMetadata"]


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TicketMetadata:
    """Provenance of a ticket, checked at construction.

    ``epsilon_spent`` maps a privacy unit (for example ``"record"``, ``"client"``) to the ε spent
    so far under that unit. ``math.inf`` is allowed and means "no privacy guarantee" (the
    non-private ticket); a ticket that read no private data (a random or data-free ticket) has
    an empty mapping.
    """

    config_hash: str = dataclasses.field(
        metadata={"help": "hash of the canonical run config that produced the ticket; '' if unknown"}
    )
    epsilon_spent: Mapping[str, float] = dataclasses.field(
        default_factory=dict, metadata={"help": "privacy unit -> epsilon spent (>= 0, may be inf)"}
    )
    round: int = dataclasses.field(default=0, metadata={"help": "search round that created the ticket (0 = none)"})
    created_at: str = dataclasses.field(
        default_factory=_utc_now, metadata={"help": "ISO 8601 timestamp of creation, UTC by default"}
    )

    def __post_init__(self) -> None:
        if not isinstance(self.config_hash, str):
            raise KernelsError(f"config_hash must be a str. Found {type(self.config_hash).__name__}.")
        if not isinstance(self.epsilon_spent, Mapping):
            raise KernelsError(f"epsilon_spent must be a mapping. Found {type(self.epsilon_spent).__name__}.")
        epsilons: dict[str, float] = {}
        for unit, epsilon in self.epsilon_spent.items():
            if not isinstance(unit, str) or not unit:
                raise KernelsError(f"epsilon_spent keys must be non-empty str. Found {unit!r}.")
            if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or not float(epsilon) >= 0.0:
                raise KernelsError(f"epsilon_spent[{unit!r}] must be a real number >= 0. Found {epsilon!r}.")
            epsilons[unit] = float(epsilon)
        object.__setattr__(self, "epsilon_spent", types.MappingProxyType(epsilons))
        if isinstance(self.round, bool) or not isinstance(self.round, int) or self.round < 0:
            raise KernelsError(f"round must be a non-negative int. Found {self.round!r}.")
        try:
            datetime.datetime.fromisoformat(self.created_at)
        except (TypeError, ValueError) as err:
            raise KernelsError(f"created_at must be an ISO 8601 timestamp. Found {self.created_at!r}.") from err

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (an infinite ε is written as the string ``"inf"``)."""
        return {
            "config_hash": self.config_hash,
            "epsilon_spent": {u: encode_float(e) for u, e in self.epsilon_spent.items()},
            "round": self.round,
            "created_at": self.created_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TicketMetadata:
        """Inverse of :meth:`to_json`; raises :class:`KernelsError` on any bad field."""
        expected = {"config_hash", "epsilon_spent", "round", "created_at"}
        if not isinstance(data, Mapping) or set(data) != expected:
            found = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise KernelsError(f"metadata keys must be {sorted(expected)}. Found {found}.")
        epsilons = data["epsilon_spent"]
        if not isinstance(epsilons, Mapping):
            raise KernelsError(f"epsilon_spent must be a mapping. Found {type(epsilons).__name__}.")
        return cls(
            config_hash=data["config_hash"],
            epsilon_spent={u: decode_float(e) for u, e in epsilons.items()},
            round=data["round"],
            created_at=data["created_at"],
        )
