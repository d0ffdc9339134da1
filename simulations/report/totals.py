"""The ε/δ figures a run quotes, computed from its ledger alone (basic composition, DESIGN.md 5.4).

- Record unit: every event charges each participant its (ε, δ); client ``i`` has spent
  ``Σε`` and ``Σδ`` over the events it took part in. The run quotes the largest total over the
  clients charged (a bound on every client's guarantee) and their mean.
- Client unit: every event charges the server total ``Σε``, ``Σδ``.

Per round: after each (phase, round) of the ledger, in the order they first appear, the record
figure is the largest client total so far and the client figure the running total. Every sum is
``math.fsum`` (correctly rounded, hence independent of order), so the last per-round figure is
exactly the total, and every total is exactly :class:`privacy.Accountant`'s.
"""

from __future__ import annotations

import math
import os
import types
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from privacy import UNIT_RECORD, Accountant, Ledger, PrivacyEvent
from federation.layout import LEDGER_FILE
from simulations.report.formatting import natural_key
from simulations.report.ledger_reader import open_ledger

__all__ = ["PrivacyTotals", "RoundTotal", "privacy_totals", "totals_from_ledger"]


def _json_float(value: float) -> float | str:
    return "inf" if math.isinf(value) else value


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
        """Plain JSON (``inf`` written as ``"inf"``), e.g. for ``summary.json``."""
        return {
            "record": {
                "max": _json_float(self.record_epsilon_max),
                "mean": _json_float(self.record_epsilon_mean),
                "delta-max": self.record_delta_max,
                "releases": self.record_releases,
                "by-client": {c: _json_float(e) for c, e in self.record_epsilon_by_client.items()},
            },
            "client": {
                "total": _json_float(self.client_epsilon),
                "delta": self.client_delta,
                "releases": self.client_releases,
            },
            "rounds": [
                {"phase": r.phase, "round": r.round, "record-max": _json_float(r.record_epsilon_max),
                 "client": _json_float(r.client_epsilon)}
                for r in self.rounds
            ],
        }


def _per_round(events: Sequence[PrivacyEvent]) -> tuple[RoundTotal, ...]:
    order: dict[tuple[str, int], list[PrivacyEvent]] = {}
    for event in events:
        order.setdefault((event.phase, event.round), []).append(event)
    per_client: defaultdict[str, list[float]] = defaultdict(list)
    current: dict[str, float] = {}
    client_values: list[float] = []
    out: list[RoundTotal] = []
    for (phase, round_number), group in order.items():
        touched: set[str] = set()
        for event in group:
            if event.unit == UNIT_RECORD:
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
    return tuple(out)


def totals_from_ledger(ledger: Ledger, accountant: Accountant | None = None) -> PrivacyTotals:
    """:class:`PrivacyTotals` of an open ledger (read only); ``accountant``: one already counting it."""
    if accountant is None:
        accountant = Accountant(ledger, record_epsilon_budget=math.inf, client_epsilon_budget=math.inf)
    events = ledger.events
    eps = accountant.record_epsilon_by_client()
    deltas = accountant.record_delta_by_client()
    releases: defaultdict[str, int] = defaultdict(int)
    record_releases = 0
    for event in events:
        if event.unit == UNIT_RECORD:
            record_releases += 1
        for client in event.charged_clients():
            releases[client] += 1
    clients = sorted(eps, key=natural_key)
    return PrivacyTotals(
        num_events=len(events),
        phases=tuple(dict.fromkeys(event.phase for event in events)),
        record_releases=record_releases,
        record_epsilon_by_client={c: eps[c] for c in clients},
        record_delta_by_client={c: deltas[c] for c in clients},
        record_releases_by_client={c: releases[c] for c in clients},
        record_epsilon_max=max(eps.values(), default=0.0),
        record_epsilon_mean=math.fsum(eps.values()) / len(eps) if eps else 0.0,
        record_delta_max=max(deltas.values(), default=0.0),
        client_releases=len(events) - record_releases,
        client_epsilon=accountant.client_level_epsilon(),
        client_delta=accountant.client_level_delta(),
        rounds=_per_round(events),
    )


def privacy_totals(run_dir: str | os.PathLike[str]) -> PrivacyTotals:
    """The ε/δ figures of a run, from ``run_dir/ledger.jsonl`` only (never modified).

    Parameters
    ----------
    run_dir
        The run directory.

    Returns
    -------
    PrivacyTotals
        Record unit: per-client Σε, Σδ (basic composition), their max and mean over the
        clients charged; client unit: Σε, Σδ; per-round cumulative ε of both units.

    Raises
    ------
    ReportError
        If the ledger is missing, torn or corrupted (one line naming the file and the fix).
    """
    return totals_from_ledger(open_ledger(Path(run_dir) / LEDGER_FILE))
