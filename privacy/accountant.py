"""Privacy accountant: budgets and basic composition over the ledger (DESIGN.md 5.4).

Composition is sequential (basic): within and across rounds the ε of the events add up, and so
do their δ (Dwork, Kenthapadi, McSherry, Mironov, Naor 2006; Dwork & Roth 2014, Theorem 3.16).

- Record unit: each event charges every participant its (ε, δ); client ``i`` has spent the sum
  over the rounds it took part in.
- Client unit: every event charges the server-level total (the client-level guarantee of every
  client is the composition of all central releases).

Protocol (write-ahead): call :meth:`Accountant.charge` with a round's planned events *before*
the round's releases happen (before sending the round's configuration to the clients). If it
raises :class:`BudgetExceededError`, nothing was written and the round must not start; if it
returns, the charge is on disk (fsync) before any noise is drawn, so a crash never forgets a
release; a round that then fails is over-charged, never under-charged. A release that has
already happened (a client that replied, a round interrupted after its messages left) is
appended with :meth:`Accountant.record`, which checks no budget: recording it is not optional
(DESIGN.md 5.4: never forget a release), and a ledger then over a budget shows it in its
totals. A resumed run builds a new :class:`Accountant` on the same ledger file: old events are
counted once, from the file.

Exact comparison: a budget is checked on the exact rational sum of the ledger's floats
(:func:`privacy.budget.fits`), with no relative slack, so a spend one unit in the last place
above the budget is refused. A budget split into float parts must therefore round its parts
*down*: ``3 x 0.1`` is above ``0.3`` and ``5 x 0.2`` above ``1`` in exact arithmetic, while ``T``
parts :func:`privacy.budget.share` ``(B, parts=T)`` sum to at most ``B``; this is how the
search derives its per-round and per-domain ε. Totals are shown rounded to the nearest float
(``math.fsum``); the ledger keeps the exact figures.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Final

from privacy._checks import check_nonnegative
from privacy.budget import fits, total
from privacy.comparison import rdp_epsilon
from privacy.errors import BudgetExceededError, PrivacyError
from privacy.events import UNIT_CLIENT, UNIT_RECORD, UNITS, PrivacyEvent
from privacy.ledger import Ledger
from privacy.totals import PrivacyTotals, build_totals

__all__ = ["ENFORCEMENTS", "ENFORCE_BASIC", "ENFORCE_RDP", "Accountant"]

ENFORCE_BASIC: Final = "basic"
ENFORCE_RDP: Final = "rdp"
ENFORCEMENTS: Final = (ENFORCE_BASIC, ENFORCE_RDP)
"""What the record unit's ε budget may be enforced on (:class:`Accountant`, config ``budget-accountant``)."""


class Accountant:
    """Budgets and totals of one run, backed by a :class:`Ledger`.

    Parameters
    ----------
    ledger
        The run's ledger; its existing events are counted (resume).
    record_epsilon_budget
        Largest total ε of any client under the record unit (``inf``: no budget).
    client_epsilon_budget
        Largest total ε of the client-unit releases (``inf``: no budget).
    delta_budget
        Largest total δ, per client for the record unit and in total for the client unit.
    enforce
        The composition the record unit's ε budget is enforced on: ``"basic"`` (default; Σε and
        Σδ each within their budget, exactly) or ``"rdp"`` (each client's events composed by
        Rényi DP, :func:`privacy.rdp_epsilon`, at ``δ = delta_budget``, within the ε budget;
        the δ budget is then the conversion's δ, and Σδ of the events is not checked). Basic
        composition stays in the ledger and the totals either way (DESIGN.md 5.4: tighter figures
        beside the basic one, never instead of it); the client unit is always basic.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        record_epsilon_budget: float,
        client_epsilon_budget: float,
        delta_budget: float = 0.0,
        enforce: str = ENFORCE_BASIC,
    ) -> None:
        if not isinstance(ledger, Ledger):
            raise PrivacyError(f"ledger must be a privacy.Ledger. Found {type(ledger).__name__}.")
        self._ledger = ledger
        self._budgets = {
            UNIT_RECORD: check_nonnegative("record_epsilon_budget", record_epsilon_budget, allow_inf=True),
            UNIT_CLIENT: check_nonnegative("client_epsilon_budget", client_epsilon_budget, allow_inf=True),
        }
        delta_budget = check_nonnegative("delta_budget", delta_budget)
        if delta_budget > 1.0:
            raise PrivacyError(f"delta_budget must be in [0, 1]. Found {delta_budget}.")
        self._delta_budget = delta_budget
        if enforce not in ENFORCEMENTS:
            raise PrivacyError(f"enforce must be one of {list(ENFORCEMENTS)}. Found {enforce!r}.")
        if enforce == ENFORCE_RDP and not 0.0 < delta_budget < 1.0:
            raise PrivacyError(f"delta_budget must be in (0, 1) with enforce='rdp' (the δ of the RDP"
                               f" conversion). Found {delta_budget}.")
        self._enforce = enforce
        self._record_eps: defaultdict[str, list[float]] = defaultdict(list)
        self._record_delta: defaultdict[str, list[float]] = defaultdict(list)
        self._client_eps: list[float] = []
        self._client_delta: list[float] = []
        self._seen = 0
        self._sync()

    # -- state -----------------------------------------------------------------------------

    def _sync(self) -> None:
        """Ingest ledger events not yet counted (appended at opening or by this accountant)."""
        events = self._ledger.events
        for event in events[self._seen :]:
            if event.unit == UNIT_RECORD:
                for client in event.participants:
                    self._record_eps[client].append(event.epsilon)
                    self._record_delta[client].append(event.delta)
            else:
                self._client_eps.append(event.epsilon)
                self._client_delta.append(event.delta)
        self._seen = len(events)

    @property
    def ledger(self) -> Ledger:
        """The backing ledger."""
        return self._ledger

    @property
    def delta_budget(self) -> float:
        """The δ budget (per client for the record unit, in total for the client unit)."""
        return self._delta_budget

    @property
    def enforce(self) -> str:
        """The composition the record unit's ε budget is enforced on: ``"basic"`` or ``"rdp"``."""
        return self._enforce

    def epsilon_budget(self, unit: str) -> float:
        """The ε budget of ``unit``."""
        self._check_unit(unit)
        return self._budgets[unit]

    @staticmethod
    def _check_unit(unit: str) -> None:
        if unit not in UNITS:
            raise PrivacyError(f"unit must be one of {list(UNITS)}. Found {unit!r}.")

    # -- totals ----------------------------------------------------------------------------

    def record_epsilon_by_client(self) -> dict[str, float]:
        """Total record-level ε of every client that took part in a record-unit release."""
        self._sync()
        return {client: math.fsum(values) for client, values in sorted(self._record_eps.items())}

    def record_delta_by_client(self) -> dict[str, float]:
        """Total record-level δ of every client that took part in a record-unit release."""
        self._sync()
        return {client: math.fsum(values) for client, values in sorted(self._record_delta.items())}

    def client_level_epsilon(self) -> float:
        """Total ε of the client-unit (server) releases."""
        self._sync()
        return math.fsum(self._client_eps)

    def client_level_delta(self) -> float:
        """Total δ of the client-unit (server) releases."""
        self._sync()
        return math.fsum(self._client_delta)

    def basic_composition(self, *, unit: str, client_id: str | None = None) -> tuple[float, float]:
        """Basic composition ``(Σε, Σδ)`` of a unit.

        Record unit: of ``client_id``, or, when ``None``, the largest ε and the largest δ over
        clients (an upper bound on every client's guarantee). Client unit: the server total.
        """
        self._check_unit(unit)
        if unit == UNIT_CLIENT:
            if client_id is not None:
                raise PrivacyError(f"client_id must be None for the client unit. Found {client_id!r}.")
            return self.client_level_epsilon(), self.client_level_delta()
        eps, delta = self.record_epsilon_by_client(), self.record_delta_by_client()
        if client_id is not None:
            return eps.get(client_id, 0.0), delta.get(client_id, 0.0)
        return max(eps.values(), default=0.0), max(delta.values(), default=0.0)

    def totals(self) -> PrivacyTotals:
        """Every figure the run quotes: per-client Σε, Σδ and releases, their max and mean, the
        client-unit Σε, Σδ, and the cumulative figures after each (phase, round).

        Basic composition (DESIGN.md 5.4) of the events counted so far, from this accountant's own
        sums (:mod:`privacy.totals`); ``summary.json`` and the report both quote this object.
        """
        self._sync()
        rdp = self.record_rdp_epsilon_max()
        return build_totals(
            self._ledger.events,
            record_epsilon_by_client=self.record_epsilon_by_client(),
            record_delta_by_client=self.record_delta_by_client(),
            record_releases_by_client={client: len(values) for client, values in self._record_eps.items()},
            client_epsilon=self.client_level_epsilon(),
            client_delta=self.client_level_delta(),
            enforced=self._enforce,
            record_rdp_epsilon_max=rdp,
            rdp_delta=None if rdp is None else self._delta_budget,
        )

    def record_rdp_epsilon_max(self) -> float | None:
        """Under ``enforce="rdp"``: the largest RDP ε at ``δ = delta_budget`` over the clients (0
        without any); ``None`` under basic enforcement (or for a client whose events have no RDP
        bound: basic composition is then the figure that holds)."""
        if self._enforce != ENFORCE_RDP:
            return None
        histories = {tuple(self.events_for(unit=UNIT_RECORD, client_id=client)) for client in self._record_eps}
        # Clients sampled in the same rounds share their events: one RDP computation per distinct history.
        figures = [rdp_epsilon(history, target_delta=self._delta_budget) for history in histories]
        if any(figure is None for figure in figures):
            return None
        return max((figure for figure in figures if figure is not None), default=0.0)

    def client_rdp_epsilon(self, delta: float) -> float | None:
        """The client-unit events composed by Rényi DP (:func:`privacy.rdp_epsilon`) at ``delta``: 0
        without any, ``None`` when one has no RDP bound (basic composition then holds). Whatever the
        enforcement; e.g. DP-FedAvg's Gaussian releases (``federation.dp_fedavg``)."""
        events = self.events_for(unit=UNIT_CLIENT)
        return rdp_epsilon(events, target_delta=delta) if events else 0.0

    def remaining(self, *, unit: str, client_id: str | None = None) -> tuple[float, float]:
        """``(ε budget - spent, δ budget - spent)`` for ``unit`` (and ``client_id``, see
        :meth:`basic_composition`); negative if a resumed ledger is already over a new budget."""
        eps, delta = self.basic_composition(unit=unit, client_id=client_id)
        budget = self._budgets[unit]
        eps_left = math.inf if math.isinf(budget) else budget - eps
        return eps_left, self._delta_budget - delta

    def events_for(self, *, unit: str, client_id: str | None = None) -> tuple[PrivacyEvent, ...]:
        """Events of ``unit``; for the record unit with ``client_id``, those charged to it."""
        self._check_unit(unit)
        return tuple(
            event
            for event in self._ledger.events
            if event.unit == unit and (client_id is None or client_id in event.participants)
        )

    # -- budgets ---------------------------------------------------------------------------

    def _violations(self, planned: Sequence[PrivacyEvent]) -> Iterable[BudgetExceededError]:
        self._sync()
        add_eps: defaultdict[str, list[float]] = defaultdict(list)
        add_delta: defaultdict[str, list[float]] = defaultdict(list)
        client_eps: list[float] = []
        client_delta: list[float] = []
        for event in planned:
            if event.unit == UNIT_RECORD:
                for client in event.participants:
                    add_eps[client].append(event.epsilon)
                    add_delta[client].append(event.delta)
            else:
                client_eps.append(event.epsilon)
                client_delta.append(event.delta)
        checks: list[tuple[str, str | None, str, list[float], list[float], float]] = []
        if self._enforce == ENFORCE_RDP:
            yield from self._rdp_violations(planned)
        for client in sorted(add_eps):
            if self._enforce == ENFORCE_RDP:
                continue  # checked on the RDP figure above (δ budget = the conversion's δ)
            checks.append((UNIT_RECORD, client, "epsilon", self._record_eps.get(client, []), add_eps[client],
                           self._budgets[UNIT_RECORD]))
            checks.append((UNIT_RECORD, client, "delta", self._record_delta.get(client, []), add_delta[client],
                           self._delta_budget))
        checks.append((UNIT_CLIENT, None, "epsilon", self._client_eps, client_eps, self._budgets[UNIT_CLIENT]))
        checks.append((UNIT_CLIENT, None, "delta", self._client_delta, client_delta, self._delta_budget))
        for unit, client, quantity, spent_values, added, budget in checks:
            requested = total(added)
            if requested > 0.0 and not fits(spent_values, added, budget):  # exact: no slack
                yield BudgetExceededError(
                    unit=unit, client_id=client, quantity=quantity,
                    spent=total(spent_values), requested=requested, budget=budget,
                )

    def _rdp_violations(self, planned: Sequence[PrivacyEvent]) -> Iterable[BudgetExceededError]:
        """Record-unit clients whose RDP ε at ``δ = delta_budget`` would exceed the ε budget.

        A client whose events have no RDP bound (an (ε, δ) event that is not Gaussian) is checked
        on basic composition instead, so nothing goes unchecked.
        """
        budget = self._budgets[UNIT_RECORD]
        if math.isinf(budget):
            return
        added: defaultdict[str, list[PrivacyEvent]] = defaultdict(list)
        for event in planned:
            if event.unit == UNIT_RECORD and (event.epsilon > 0.0 or event.delta > 0.0):
                for client in event.participants:
                    added[client].append(event)
        cache: dict[tuple, tuple[float | None, float | None]] = {}
        for client in sorted(added):
            history = self.events_for(unit=UNIT_RECORD, client_id=client)
            key = (tuple(e.event_id for e in history), tuple(e.event_id for e in added[client]))
            if key not in cache:
                before = rdp_epsilon(history, target_delta=self._delta_budget)
                after = rdp_epsilon([*history, *added[client]], target_delta=self._delta_budget)
                cache[key] = (before, after)
            before, after = cache[key]
            if after is None or before is None:
                spent = self._record_eps.get(client, [])
                extra = [e.epsilon for e in added[client]]
                if not fits(spent, extra, budget):
                    yield BudgetExceededError(unit=UNIT_RECORD, client_id=client, quantity="epsilon",
                                              spent=total(spent), requested=total(extra), budget=budget)
            elif after > budget:
                yield BudgetExceededError(
                    unit=UNIT_RECORD, client_id=client, quantity=f"epsilon (RDP at δ = {self._delta_budget:g})",
                    spent=before, requested=after - before, budget=budget,
                )

    @staticmethod
    def _as_events(events: Iterable[PrivacyEvent]) -> list[PrivacyEvent]:
        if isinstance(events, PrivacyEvent):
            return [events]
        batch = list(events)
        for item in batch:
            if not isinstance(item, PrivacyEvent):
                raise PrivacyError(f"events must hold PrivacyEvent objects. Found {type(item).__name__}.")
        return batch

    def would_exceed(self, planned_events: Iterable[PrivacyEvent]) -> str | None:
        """The reason charging ``planned_events`` would exceed a budget, or ``None`` if it fits.

        Nothing is written. Events with ε = 0 and δ = 0 always fit.
        """
        planned = self._as_events(planned_events)
        first = next(iter(self._violations(planned)), None)
        return None if first is None else first.message

    def charge(self, events: Iterable[PrivacyEvent]) -> None:
        """Check every event and every budget, then append the events as one ledger batch.

        An empty ``events`` does nothing. On any failure nothing is written.

        Raises
        ------
        BudgetExceededError
            If the events would take a unit (or client) over its budget.
        PrivacyError, LedgerError
            On invalid events or a ledger problem (e.g. an ``event_id`` already charged).
        """
        batch = self._as_events(events)
        if not batch:
            return
        first = next(iter(self._violations(batch)), None)
        if first is not None:
            raise first
        self._ledger.append(batch)
        self._sync()

    def record(self, events: Iterable[PrivacyEvent]) -> None:
        """Append releases that already happened as one ledger batch, without any budget check.

        The release happened; recording it is not optional (DESIGN.md 5.4: a release is never
        forgotten). Use it for what cannot be undone (the votes of the clients that replied, a
        round interrupted after its messages left), and :meth:`charge` for what is only planned.
        The ledger may then be over a budget: its totals (and :meth:`remaining`) show it, and the
        caller must stop. An empty ``events`` does nothing.

        Raises
        ------
        PrivacyError, LedgerError
            On invalid events or a ledger problem (e.g. an ``event_id`` already recorded); nothing
            is written then.
        """
        batch = self._as_events(events)
        if not batch:
            return
        self._ledger.append(batch)
        self._sync()
