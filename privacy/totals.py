"""The ε/δ totals a run quotes: basic composition over its ledger (DESIGN.md 5.4).

- Record unit: every event charges each participant its (ε, δ); client ``i`` has spent
  ``Σε`` and ``Σδ`` over the events it took part in. The run quotes the largest total over the
  clients charged (a bound on every client's guarantee) and their mean.
- Client unit: every event charges the server total ``Σε``, ``Σδ``.

Per round: after each (phase, round) of the ledger, in the order they first appear, the record
figure is the largest client total so far and the client figure the running total.

The one place these figures are computed: :meth:`privacy.Accountant.totals` builds a
:class:`PrivacyTotals` from the accountant's own per-client sums (``summary.json`` writes its
:meth:`PrivacyTotals.to_json`; the report reads a ledger through the same method). Every sum is
``math.fsum`` (correctly rounded, hence independent of order), so the last per-round figure is
exactly the total.
"""

from __future__ import annotations

import math
import re
import types
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from privacy.events import UNIT_RECORD, PrivacyEvent

__all__ = ["PrivacyTotals", "RoundTotal", "build_totals", "natural_key"]

_DIGITS = re.compile(r"(\d+)")


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders ``"client-2"`` before ``"client-10"`` (the order totals list clients in)."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in _DIGITS.split(text) if part)


@dataclass(frozen=True, kw_only=True)
class RoundTotal:
    """Cumulative ε after one (phase, round) of the ledger."""

    phase: str = field(metadata={"help": "ledger phase, e.g. search"})
    round: int = field(metadata={"help": "round number"})
    record_epsilon_max: float = field(metadata={"help": "largest client Σε (record unit) so far"})
    client_epsilon: float = field(metadata={"help": "Σε of the client-unit releases so far"})


@dataclass(frozen=True, kw_only=True)
class PrivacyTotals:
    """Basic-composition totals of one ledger (module docstring for the rules)."""

    num_events: int = field(metadata={"help": "events in the ledger"})
    phases: tuple[str, ...] = field(metadata={"help": "ledger phases, in order of first appearance"})
    record_releases: int = field(metadata={"help": "record-unit events"})
    record_epsilon_by_client: Mapping[str, float] = field(metadata={"help": "client -> Σε (record unit)"})
    record_delta_by_client: Mapping[str, float] = field(metadata={"help": "client -> Σδ (record unit)"})
    record_releases_by_client: Mapping[str, int] = field(metadata={"help": "client -> events charged"})
    record_epsilon_max: float = field(metadata={"help": "max over clients of Σε; 0 without clients"})
    record_epsilon_mean: float = field(metadata={"help": "mean over the clients charged of Σε; 0 without"})
    record_delta_max: float = field(metadata={"help": "max over clients of Σδ; 0 without clients"})
    client_releases: int = field(metadata={"help": "client-unit events"})
    client_epsilon: float = field(metadata={"help": "Σε of the client-unit events"})
    client_delta: float = field(metadata={"help": "Σδ of the client-unit events"})
    rounds: tuple[RoundTotal, ...] = field(metadata={"help": "cumulative figures after each (phase, round)"})
    enforced: str = field(default="basic", metadata={"help": "what the record budget was enforced on: basic or rdp"})
    record_rdp_epsilon_max: float | None = field(
        default=None, metadata={"help": "max over clients of the RDP ε at rdp_delta (enforced = rdp), else None"}
    )
    rdp_delta: float | None = field(default=None, metadata={"help": "δ of the RDP figure (the δ budget), else None"})

    def __post_init__(self) -> None:
        for name in ("record_epsilon_by_client", "record_delta_by_client", "record_releases_by_client"):
            object.__setattr__(self, name, types.MappingProxyType(dict(getattr(self, name))))

    @property
    def worst_client(self) -> str | None:
        """The client with the largest Σε (first in natural order on ties); ``None`` without clients."""
        if not self.record_epsilon_by_client:
            return None
        clients = sorted(self.record_epsilon_by_client, key=natural_key)
        return max(clients, key=lambda client: self.record_epsilon_by_client[client])

    def to_json(self) -> dict[str, Any]:
        """The totals as ``summary.json``'s ``"epsilon"`` section (kebab-case keys).

        It names no client: the record unit is given as the largest and the mean Σε over the
        clients charged and their number. The per-client figures, keyed by client id, stay in
        the ledger, the operator's record (DESIGN.md 5.4b: who took part is not for publication).

        Floats stay floats (``inf`` included): the writer of the file encodes them, as it does
        every figure of a run directory.
        """
        return {
            "record": {
                "max": self.record_epsilon_max,
                "mean": self.record_epsilon_mean,
                "clients": len(self.record_epsilon_by_client),
                "releases": self.record_releases,
            },
            "client": {"total": self.client_epsilon, "releases": self.client_releases},
            "delta": {"record-max": self.record_delta_max, "client": self.client_delta},
            "enforced": self.enforced,
            **({"rdp": {"record-max": self.record_rdp_epsilon_max, "delta": self.rdp_delta}}
               if self.record_rdp_epsilon_max is not None else {}),
            "rounds": [
                {"phase": r.phase, "round": r.round, "record-max": r.record_epsilon_max, "client": r.client_epsilon}
                for r in self.rounds
            ],
        }


def _per_round(events: Sequence[PrivacyEvent]) -> tuple[tuple[RoundTotal, ...], int]:
    """Cumulative figures after each (phase, round), and the number of record-unit events."""
    order: dict[tuple[str, int], list[PrivacyEvent]] = {}
    for event in events:
        order.setdefault((event.phase, event.round), []).append(event)
    per_client: defaultdict[str, list[float]] = defaultdict(list)
    current: dict[str, float] = {}
    client_values: list[float] = []
    record_releases = 0
    out: list[RoundTotal] = []
    for (phase, round_number), group in order.items():
        touched: set[str] = set()
        for event in group:
            if event.unit == UNIT_RECORD:
                record_releases += 1
                for client in event.participants:
                    per_client[client].append(event.epsilon)
                    touched.add(client)
            else:
                client_values.append(event.epsilon)
        for client in touched:  # only the clients charged this round change
            current[client] = math.fsum(per_client[client])
        out.append(RoundTotal(
            phase=phase, round=round_number, record_epsilon_max=max(current.values(), default=0.0),
            client_epsilon=math.fsum(client_values),
        ))
    return tuple(out), record_releases


def build_totals(
    events: Sequence[PrivacyEvent],
    *,
    record_epsilon_by_client: Mapping[str, float],
    record_delta_by_client: Mapping[str, float],
    record_releases_by_client: Mapping[str, int],
    client_epsilon: float,
    client_delta: float,
    enforced: str = "basic",
    record_rdp_epsilon_max: float | None = None,
    rdp_delta: float | None = None,
) -> PrivacyTotals:
    """:class:`PrivacyTotals` from an accountant's sums; only :meth:`privacy.Accountant.totals` calls it.

    The per-client and server-level sums are the accountant's own (DESIGN.md 5.4, basic
    composition); ``events`` are the same ledger's events, read once more only for what the
    accountant does not keep: the per-round figures and the phases.
    """
    clients = sorted(record_epsilon_by_client, key=natural_key)
    eps = {client: record_epsilon_by_client[client] for client in clients}
    rounds, record_releases = _per_round(events)
    return PrivacyTotals(
        num_events=len(events),
        phases=tuple(dict.fromkeys(event.phase for event in events)),
        record_releases=record_releases,
        record_epsilon_by_client=eps,
        record_delta_by_client={client: record_delta_by_client[client] for client in clients},
        record_releases_by_client={client: record_releases_by_client[client] for client in clients},
        record_epsilon_max=max(eps.values(), default=0.0),
        record_epsilon_mean=math.fsum(eps.values()) / len(eps) if eps else 0.0,
        record_delta_max=max(record_delta_by_client.values(), default=0.0),
        client_releases=len(events) - record_releases,
        client_epsilon=client_epsilon,
        client_delta=client_delta,
        enforced=enforced,
        record_rdp_epsilon_max=record_rdp_epsilon_max,
        rdp_delta=rdp_delta,
        rounds=rounds,
    )
