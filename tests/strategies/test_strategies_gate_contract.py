"""The contract every privacy gate honours around every search strategy it wraps (DESIGN.md 5.4).

Each ``_check_*`` states one property; the contract runs every check for every gate in
:data:`GATES` around every inner search of :data:`SEARCHES`, and the charge check for any reply
pattern (hypothesis). Negative controls: three broken gates (one that only delegates, one that
charges after the votes are used, one that forgets the replies' releases when their charge is
refused) must fail the checks they break, so that a check that cannot fail is caught too.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from privacy import (
    LAPLACE_TOPK,
    UNIT_CLIENT,
    UNIT_RECORD,
    BudgetExceededError,
    Ledger,
    PrivacyEvent,
    ReleaseJournal,
)
from strategies import (
    PrivacyGate,
    PrivacySettings,
    SearchSettings,
    SearchStopped,
    keys,
    plan_round_events,
)

ARRAYS = ArrayRecord()
SPLIT = {"patterns": 0.5, "kernels:conv2": 0.5}

GATES: dict[str, type[PrivacyGate]] = {"privacy-gate": PrivacyGate}
"""Every gate the contract runs for."""

SEARCHES: dict[str, dict[str, object]] = {
    "record": {},
    "record-and-central": {"privacy": PrivacySettings(
        epsilon_split=SPLIT, record_epsilon=1.5, min_examples=100, central_noise="laplace", client_epsilon=0.5)},
    "declared-ids": {"settings": SearchSettings(kernel_vote_layers=("conv2",), min_replies=2, identify_clients=True)},
}
"""Inner searches (the conftest's PatternSearch with these settings) the gates wrap."""


class _PassThroughGate(PrivacyGate):
    """Negative control: delegates both hooks, plans, journals and charges nothing."""

    def configure_train(self, server_round, arrays, config, grid):  # type: ignore[no-untyped-def]
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round, replies):  # type: ignore[no-untyped-def]
        return self.strategy.aggregate_train(server_round, replies)  # type: ignore[attr-defined]


class _LateChargeGate(PrivacyGate):
    """Negative control: uses the votes, then charges the clients that replied."""

    def aggregate_train(self, server_round, replies):  # type: ignore[no-untyped-def]
        plan, self._asked = self._asked, None
        votes = self.strategy.collect(server_round, replies)
        arrays, metrics = self.strategy.conclude(votes)
        self.accountant.charge(plan_round_events(plan.domains, self.strategy.privacy,
                                                 participants=votes.collection.participants,
                                                 server_round=server_round, attempt=plan.attempt))
        return arrays, MetricRecord(metrics)


class _ForgetfulGate(PrivacyGate):
    """Negative control: when the replies' charge is refused, stops without recording their releases."""

    def aggregate_train(self, server_round, replies):  # type: ignore[no-untyped-def]
        plan, self._asked = self._asked, None
        votes = self.strategy.collect(server_round, replies)
        events = plan_round_events(plan.domains, self.strategy.privacy, participants=votes.collection.participants,
                                   server_round=server_round, attempt=plan.attempt, include_central=votes.enough)
        try:
            self.accountant.charge(events)
        except BudgetExceededError as err:
            raise SearchStopped(err.message, server_round=server_round) from err
        arrays, metrics = self.strategy.conclude(votes)
        return arrays, MetricRecord(metrics)


Make = Callable[..., PrivacyGate]


def _client_id(node: int, declared: bool) -> str:
    return f"client-{node}" if declared else str(node)


def _declaring(kit: SimpleNamespace, client: Callable[[int, Message], RecordDict | None]):
    def reply(node: int, message: Message) -> RecordDict | None:
        if message.metadata.message_type == keys.IDENTITY_MESSAGE_TYPE:
            return RecordDict({keys.IDENTITY_KEY: ConfigRecord({keys.CLIENT_ID_FIELD: _client_id(node, True)})})
        return client(node, message)

    return reply


def _hostile(kit: SimpleNamespace) -> Callable[[int, Message], RecordDict]:
    def reply(node: int, message: Message) -> RecordDict:  # replies (so it released), every vote invalid
        server_round = int(message.content[keys.VOTE_CONFIG_KEY][keys.ROUND_FIELD])
        return kit.vote_reply({"patterns": np.array([3, 3]), "kernels:conv2": np.array([[1, 2]])}, server_round)

    return reply


def _behaviours(kit: SimpleNamespace) -> dict[str, Callable[[int, Message], RecordDict | None]]:
    return {"honest": kit.honest_client, "hostile": _hostile(kit), "failing": kit.failing_client,
            "silent": kit.silent_client}


def _grid(
    kit: SimpleNamespace, gate: PrivacyGate, special: dict | None = None, clients: dict | None = None
) -> object:
    """Six honest nodes, updated by ``special``; or exactly ``clients`` (at least ``min_replies``)."""
    clients = clients or ({node: kit.honest_client for node in range(1, 7)} | (special or {}))
    if gate.strategy.settings.identify_clients:  # type: ignore[attr-defined]
        clients = {node: _declaring(kit, client) for node, client in clients.items()}
    return kit.FakeGrid(clients)


def _vote_batches(grid: object) -> list[list[Message]]:
    return [batch for batch in grid.sent if batch and batch[0].metadata.message_type == keys.VOTE_MESSAGE_TYPE]


def _record_charges(path: Path) -> Counter[str]:
    """Record-level ε per client, read back from the ledger on disk."""
    charged: Counter[str] = Counter()
    for event in Ledger(path).events:
        if event.unit == UNIT_RECORD:
            for client in event.charged_clients():
                charged[client] += event.epsilon
    return charged


def _check_nothing_leaves_over_budget(kit: SimpleNamespace, make: Make, tmp_path: Path) -> None:
    """A round that would exceed a budget raises SearchStopped: no vote sent, no charge, no ask."""
    budgets: list[dict[str, float]] = [{"record_budget": 1.0}]  # every search here asks ε >= 1.5 of each client
    for number, budget in enumerate(budgets):
        folder = tmp_path / f"budget-{number}"
        gate = make(folder, journal=True, **budget)
        if number == 0 and gate.strategy.privacy.central:
            budgets.append({"client_budget": 0.25})  # the server's central release costs ε = 0.5
        grid = _grid(kit, gate)
        try:
            grid.send_and_receive(gate.configure_train(1, ARRAYS, ConfigRecord(), grid))
        except SearchStopped:
            pass
        assert not _vote_batches(grid), f"a vote request left under {budget}"
        assert Ledger(folder / "ledger.jsonl").num_batches == 0, f"a round was charged under {budget}"
        assert ReleaseJournal(folder / "journal.jsonl", read_only=True).unsettled(()) == [], "an ask was written"
        assert gate.ticket is None


def _check_ask_is_on_disk_before_the_messages_return(kit: SimpleNamespace, make: Make, tmp_path: Path) -> None:
    """When configure_train returns, the journal on disk asks every addressee for the round's ε."""
    gate = make(tmp_path, journal=True)
    grid = _grid(kit, gate)
    messages = list(gate.configure_train(1, ARRAYS, ConfigRecord(), grid))
    assert messages
    declared = gate.strategy.settings.identify_clients  # type: ignore[attr-defined]
    addressees = {_client_id(int(m.metadata.dst_node_id), declared) for m in messages}
    asks = ReleaseJournal(tmp_path / "journal.jsonl", read_only=True).unsettled(())
    assert len(asks) == 1 and asks[0].round == 1, f"the journal must hold the round's ask. Found {asks}"
    asked: Counter[str] = Counter()
    for event in asks[0].events:
        for client in event.charged_clients():
            asked[client] += event.epsilon
    record_epsilon = gate.strategy.privacy.record_epsilon
    assert set(asked) == addressees and all(v == pytest.approx(record_epsilon) for v in asked.values())


def _check_repliers_are_charged_once_before_their_votes_are_used(
    kit: SimpleNamespace, make: Make, tmp_path: Path, behaviours: Mapping[int, str] | None = None
) -> None:
    """Only the clients that replied (hostile ones too) are charged, in one ledger batch, before the
    ticket changes; a central release is charged before its noise is drawn.

    ``behaviours``: node -> a key of ``_behaviours`` (default: six honest, one failing, one silent).
    """
    behaviours = behaviours or {**dict.fromkeys(range(1, 7), "honest"), 7: "failing", 8: "silent"}
    gate = make(tmp_path, journal=True)
    kinds = _behaviours(kit)
    grid = _grid(kit, gate, clients={node: kinds[kind] for node, kind in behaviours.items()})
    ledger = tmp_path / "ledger.jsonl"
    seen: dict[str, object] = {}
    conclude = gate.strategy.conclude

    def spy(votes, *, releaser=None, **kwargs):  # type: ignore[no-untyped-def]
        seen.update(batches=Ledger(ledger).num_batches, charged=_record_charges(ledger), ticket=gate.ticket,
                    open=ReleaseJournal(tmp_path / "journal.jsonl", read_only=True).unsettled(()))

        def release(domain, clean):  # type: ignore[no-untyped-def]
            seen.setdefault("client-eps", sum(e.epsilon for e in Ledger(ledger).events if e.unit == UNIT_CLIENT))
            return releaser(domain, clean)

        return conclude(votes, releaser=None if releaser is None else release, **kwargs)

    gate.strategy.conclude = spy  # type: ignore[method-assign]
    replies = grid.send_and_receive(gate.configure_train(1, ARRAYS, ConfigRecord(), grid))
    arrays, _ = gate.aggregate_train(1, replies)
    declared = gate.strategy.settings.identify_clients  # type: ignore[attr-defined]
    repliers = {_client_id(node, declared) for node, kind in behaviours.items() if kind in ("honest", "hostile")}
    enough = len(repliers) >= gate.strategy.settings.min_replies  # type: ignore[attr-defined]
    assert seen, "the wrapped strategy must be handed the votes"
    batches = 1 if repliers else 0
    assert seen["batches"] == batches, f"the round must be {batches} ledger batch before its votes are used: {seen}"
    charged = seen["charged"]
    assert set(charged) == repliers, f"exactly the clients that replied must be charged. Found {sorted(charged)}"
    assert all(v == pytest.approx(gate.strategy.privacy.record_epsilon) for v in charged.values())
    assert seen["ticket"] is None and seen["open"] == [], "charged and the ask closed before the ticket changes"
    privacy = gate.strategy.privacy
    if privacy.central and enough:
        assert seen["client-eps"] == pytest.approx(privacy.client_epsilon), "charged before the noise is drawn"
    assert (arrays is not None) == enough == (gate.ticket is not None)
    assert Ledger(ledger).num_batches == batches and _record_charges(ledger) == charged, "nothing charged after use"


def _check_an_interrupted_round_is_charged_in_full_on_reopening(
    kit: SimpleNamespace, make: Make, tmp_path: Path
) -> None:
    """A round asked and sent but never charged is charged for every sampled client, once."""
    first = make(tmp_path, journal=True)
    grid = _grid(kit, first, special={7: kit.silent_client})
    grid.send_and_receive(first.configure_train(1, ARRAYS, ConfigRecord(), grid))  # then the server dies
    reopened = make(tmp_path, journal=True)
    assert Ledger(tmp_path / "ledger.jsonl").num_batches == 0
    settled = reopened.settle_interrupted_rounds()
    declared = reopened.strategy.settings.identify_clients  # type: ignore[attr-defined]
    sampled = {_client_id(node, declared) for node in range(1, 8)}  # the silent client may have released too
    charged = _record_charges(tmp_path / "ledger.jsonl")
    assert len(settled) == 1, f"the interrupted round must be settled. Found {settled}"
    assert set(charged) == sampled, f"every sampled client must be charged. Found {sorted(charged)}"
    assert all(v == pytest.approx(reopened.strategy.privacy.record_epsilon) for v in charged.values())
    assert reopened.settle_interrupted_rounds() == [] and _record_charges(tmp_path / "ledger.jsonl") == charged
    grid = _grid(kit, reopened)
    messages = list(reopened.configure_train(1, ARRAYS, ConfigRecord(), grid))
    assert messages[0].content[keys.VOTE_CONFIG_KEY][keys.ATTEMPT_FIELD] == 1, "a settled attempt is not reused"


def _check_a_release_that_happened_is_recorded_even_over_budget(
    kit: SimpleNamespace, make: Make, tmp_path: Path
) -> None:
    """The ledger changes between the ask and the replies so that their charge would exceed the record
    budget: the repliers' releases are recorded all the same (once, never forgotten), the ask is
    closed, the search stops, and the votes are not used (no ticket, no central release)."""
    budget = 10.0  # every search here asks ε <= 4 per round of each client: round 1 fits when planned
    gate = make(tmp_path, journal=True, record_budget=budget)
    behaviours = {**dict.fromkeys(range(1, 6), "honest"), 6: "hostile", 7: "failing", 8: "silent"}
    kinds = _behaviours(kit)
    grid = _grid(kit, gate, clients={node: kinds[kind] for node, kind in behaviours.items()})
    messages = list(gate.configure_train(1, ARRAYS, ConfigRecord(), grid))
    replies = grid.send_and_receive(messages)
    declared = gate.strategy.settings.identify_clients  # type: ignore[attr-defined]
    addressees = tuple(sorted(_client_id(int(m.metadata.dst_node_id), declared) for m in messages))
    repliers = {_client_id(node, declared) for node, kind in behaviours.items() if kind in ("honest", "hostile")}
    privacy = gate.strategy.privacy
    spent_elsewhere = budget - privacy.record_epsilon / 2  # + this round's ε > budget
    gate.accountant.ledger.append([PrivacyEvent(
        round=1, phase="another-search", domain="patterns", layer=None, unit=UNIT_RECORD, mechanism=LAPLACE_TOPK,
        sensitivity=0.01, noise_scale=0.02 / spent_elsewhere, epsilon=spent_elsewhere, delta=0.0,
        participants=addressees,
    )])
    try:
        gate.aggregate_train(1, replies)
        stopped = None
    except SearchStopped as stop:
        stopped = stop
    assert stopped is not None and "budget" in stopped.reason, "a charge over budget must stop the search"
    ledger = tmp_path / "ledger.jsonl"
    this_round = [e for e in Ledger(ledger).events if e.phase == privacy.phase]
    charged: Counter[str] = Counter()
    for event in this_round:
        for client in event.charged_clients():
            charged[client] += event.epsilon
    assert set(charged) == repliers, f"the clients that replied must be recorded. Found {sorted(charged)}"
    assert all(v == pytest.approx(privacy.record_epsilon) for v in charged.values())
    assert all(e.unit == UNIT_RECORD for e in this_round), "no central noise was drawn: none is recorded"
    assert gate.ticket is None, "the votes must not be used"
    assert ReleaseJournal(tmp_path / "journal.jsonl", read_only=True).unsettled(()) == [], "the ask must be closed"
    recorded = Ledger(ledger).events
    reopened = make(tmp_path, journal=True, record_budget=budget)
    assert reopened.settle_interrupted_rounds() == [] and Ledger(ledger).events == recorded, "recorded once"
    remaining = [reopened.accountant.remaining(unit=UNIT_RECORD, client_id=client)[0] for client in repliers]
    assert all(left < 0 for left in remaining), "the ledger's totals show the budget exceeded"


CHECKS = {
    "over-budget": _check_nothing_leaves_over_budget,
    "ask-before-send": _check_ask_is_on_disk_before_the_messages_return,
    "charge-before-use": _check_repliers_are_charged_once_before_their_votes_are_used,
    "interrupted-round": _check_an_interrupted_round_is_charged_in_full_on_reopening,
    "recorded-over-budget": _check_a_release_that_happened_is_recorded_even_over_budget,
}


@pytest.mark.parametrize("check", list(CHECKS), ids=list(CHECKS))
@pytest.mark.parametrize("search", list(SEARCHES), ids=list(SEARCHES))
@pytest.mark.parametrize("gate", list(GATES), ids=list(GATES))
def test_gate_contract(kit: SimpleNamespace, tmp_path: Path, gate: str, search: str, check: str) -> None:
    def make(path: Path, **kwargs: object) -> PrivacyGate:
        return kit.make_search(path, gate=GATES[gate], **SEARCHES[search], **kwargs)

    CHECKS[check](kit, make, tmp_path)


@pytest.mark.parametrize(
    ("broken", "check"),
    [(_PassThroughGate, name) for name in CHECKS] + [(_LateChargeGate, "charge-before-use"),
                                                     (_ForgetfulGate, "recorded-over-budget")],
    ids=[f"pass-through-{name}" for name in CHECKS] + ["late-charge-charge-before-use",
                                                       "forgetful-recorded-over-budget"],
)
def test_the_contract_catches_a_broken_gate(kit: SimpleNamespace, tmp_path: Path, broken: type, check: str) -> None:
    def make(path: Path, **kwargs: object) -> PrivacyGate:
        return kit.make_search(path, gate=broken, **kwargs)

    with pytest.raises(AssertionError):
        CHECKS[check](kit, make, tmp_path)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(st.sampled_from(["honest", "hostile", "failing", "silent"]), min_size=2, max_size=7))
@pytest.mark.parametrize("search", list(SEARCHES), ids=list(SEARCHES))
@pytest.mark.parametrize("gate", list(GATES), ids=list(GATES))
def test_gate_charges_exactly_the_repliers_for_any_reply_pattern(
    kit: SimpleNamespace, gate: str, search: str, kinds: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        def make(path: Path, **kwargs: object) -> PrivacyGate:
            return kit.make_search(path, gate=GATES[gate], **SEARCHES[search], **kwargs)

        behaviours = {node: kind for node, kind in enumerate(kinds, start=1)}
        _check_repliers_are_charged_once_before_their_votes_are_used(kit, make, Path(folder), behaviours)


def test_an_interrupted_round_is_recorded_in_full_even_over_budget(kit: SimpleNamespace, tmp_path: Path) -> None:
    """Settling records the asked releases whatever the budget (they may have happened); the next round
    of those clients is then refused cleanly."""
    first = kit.make_search(tmp_path, journal=True, record_budget=6.0)  # 4 per round
    grid = _grid(kit, first)
    messages = list(first.configure_train(1, ARRAYS, ConfigRecord(), grid))
    grid.send_and_receive(messages)  # then the server dies
    sampled = tuple(sorted(str(m.metadata.dst_node_id) for m in messages))
    Ledger(tmp_path / "ledger.jsonl").append([PrivacyEvent(  # spent elsewhere meanwhile: 3 + 4 > 6
        round=1, phase="another-search", domain="patterns", layer=None, unit=UNIT_RECORD, mechanism=LAPLACE_TOPK,
        sensitivity=0.01, noise_scale=0.02 / 3.0, epsilon=3.0, delta=0.0, participants=sampled,
    )])
    reopened = kit.make_search(tmp_path, journal=True, record_budget=6.0)
    assert len(reopened.settle_interrupted_rounds()) == 1
    charged = _record_charges(tmp_path / "ledger.jsonl")
    assert set(charged) == set(sampled) and all(v == pytest.approx(7.0) for v in charged.values())
    with pytest.raises(SearchStopped, match="budget"):
        reopened.configure_train(1, ARRAYS, ConfigRecord(), _grid(kit, reopened))
