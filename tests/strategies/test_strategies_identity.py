"""Stable client ids: charges follow the declared id across node-id changes; bad declarations exclude a node."""

from __future__ import annotations

import math
from types import SimpleNamespace

from flwr.app import ConfigRecord, Message, RecordDict

from strategies import SearchSettings, keys, run_search
from strategies.identity import resolve_identities


def _identity(client: object) -> RecordDict:
    return RecordDict({keys.IDENTITY_KEY: ConfigRecord({keys.CLIENT_ID_FIELD: client})})


def _declaring(kit: SimpleNamespace, client: object):
    def reply(node: int, message: Message) -> RecordDict:
        if message.metadata.message_type == keys.IDENTITY_MESSAGE_TYPE:
            return _identity(client)
        return kit.honest_client(node, message)

    return reply


def _settings() -> SearchSettings:
    return SearchSettings(kernel_vote_layers=("conv2",), min_replies=2, identify_clients=True)


def test_releases_are_charged_under_the_declared_ids(kit: SimpleNamespace) -> None:
    grid = kit.FakeGrid({11: _declaring(kit, "alice"), 12: _declaring(kit, "bob"), 13: _declaring(kit, "carol")})
    search = kit.make_search(settings=_settings())
    run_search(search, grid, arrays=kit_arrays(), num_rounds=2)
    participants = {p for e in search.accountant.ledger.events for p in e.participants}
    assert participants == {"alice", "bob", "carol"}
    assert search.strategy.identities == {11: "alice", 12: "bob", 13: "carol"}
    assert sum(1 for batch in grid.sent if batch[0].metadata.message_type == keys.IDENTITY_MESSAGE_TYPE) == 1


def test_a_restart_with_new_node_ids_keeps_each_clients_budget(kit: SimpleNamespace, tmp_path) -> None:
    first = kit.make_search(settings=_settings(), record_budget=8.0)  # ε = 4 per round: two rounds fit
    run_search(first, kit.FakeGrid({1: _declaring(kit, "alice"), 2: _declaring(kit, "bob")}),
               arrays=kit_arrays(), num_rounds=1)
    state = first.state_dict()
    resumed = kit.make_search(settings=_settings(), record_budget=8.0)  # same ledger file, new process
    resumed.load_state(state)
    grid = kit.FakeGrid({7: _declaring(kit, "alice"), 8: _declaring(kit, "bob")})  # new node ids
    outcome = run_search(resumed, grid, arrays=kit_arrays())
    # round 2 fits; round 3 would take alice and bob to 12 > 8: refused before anything is sent
    assert outcome.completed_round == 2 and "budget" in (outcome.stop_reason or "")
    totals = resumed.accountant.record_epsilon_by_client()
    assert set(totals) == {"alice", "bob"} and all(math.isclose(v, 8.0) for v in totals.values())


def test_nodes_with_bad_or_clashing_ids_are_never_sampled(kit: SimpleNamespace) -> None:
    grid = kit.FakeGrid({
        1: _declaring(kit, "alice"), 2: _declaring(kit, "bob"), 7: _declaring(kit, "carol"),
        3: _declaring(kit, "alice"),  # two nodes claim one id: neither is sampled
        4: _declaring(kit, "bad id with spaces"), 5: _declaring(kit, 42), 6: kit.failing_client,
    })
    search = kit.make_search(settings=_settings())
    run_search(search, grid, arrays=kit_arrays(), num_rounds=1)
    vote_batches = [b for b in grid.sent if b[0].metadata.message_type == keys.VOTE_MESSAGE_TYPE]
    assert {int(m.metadata.dst_node_id) for m in vote_batches[0]} == {2, 7}
    assert {p for e in search.accountant.ledger.events for p in e.participants} == {"bob", "carol"}


def test_resolve_identities_names_why_each_node_is_refused() -> None:
    def reply(node: int, client: object) -> Message:
        query = Message(content=RecordDict(), dst_node_id=node, message_type=keys.IDENTITY_MESSAGE_TYPE)
        return Message(_identity(client), reply_to=query)

    accepted, refused = resolve_identities(
        [reply(1, "a"), reply(2, "b"), reply(3, "b"), reply(4, "x y"), reply(5, "held")],
        asked=[1, 2, 3, 4, 5, 6], known={99: "held"},
    )
    assert accepted == {1: "a"}
    assert "declared by several nodes" in refused[2] and "declared by several nodes" in refused[3]
    assert "malformed client id" in refused[4]
    assert "held by node 99" in refused[5]
    assert refused[6] == "no identity reply"


def kit_arrays():
    from flwr.app import ArrayRecord

    return ArrayRecord()


def _identity_reply(record: dict[str, object]) -> Message:
    query = Message(content=RecordDict(), dst_node_id=5, message_type=keys.IDENTITY_MESSAGE_TYPE, group_id="identity")
    return Message(RecordDict({keys.IDENTITY_KEY: ConfigRecord(record)}), reply_to=query)


def test_a_declared_partition_count_is_read_and_malformed_ones_are_ignored() -> None:
    from strategies.identity import declared_partitions

    NUM_PARTITIONS_FIELD = keys.NUM_PARTITIONS_FIELD

    assert declared_partitions(_identity_reply({keys.CLIENT_ID_FIELD: "a", NUM_PARTITIONS_FIELD: 10})) == 10
    for value in (0, -3, True, "10", 2.0):
        assert declared_partitions(_identity_reply({keys.CLIENT_ID_FIELD: "a", NUM_PARTITIONS_FIELD: value})) is None
    assert declared_partitions(_identity_reply({keys.CLIENT_ID_FIELD: "a"})) is None  # a node with its own images
