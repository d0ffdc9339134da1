"""Hostile replies: every rejection reason is dropped and counted, never raised, and a client can
never move a histogram by more than c."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, RecordDict
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from privacy import RejectReason, tally_votes
from strategies import ReplyIssue, VoteDomain, collect_votes, keys, parse_reply

ROUND = 3
DOMAIN = VoteDomain(name="patterns", size=56, top_k=8, max_entries=8, layer=None, layers=("conv1",))
KERNELS = VoteDomain(name="kernels:conv1", size=8, top_k=4, max_entries=4, layer="conv1", layers=("conv1",))
DOMAINS = (DOMAIN, KERNELS)
GOOD_KERNELS = np.array([0, 1, 2, 3])


def _reply(vote: object, server_round: object = ROUND, kernels: object = GOOD_KERNELS) -> RecordDict:
    def as_array(value: object) -> Array:
        return value if isinstance(value, Array) else Array(np.asarray(value))

    record = ArrayRecord({"patterns": as_array(vote), "kernels:conv1": as_array(kernels)})
    return RecordDict({keys.VOTES_KEY: record, keys.VOTE_META_KEY: ConfigRecord({keys.ROUND_FIELD: server_round})})


HOSTILE = [
    (_reply(np.array([1, 56])), RejectReason.OUT_OF_RANGE),
    (_reply(np.array([-1, 2])), RejectReason.OUT_OF_RANGE),
    (_reply(np.array([4, 4, 5])), RejectReason.DUPLICATES),
    (_reply(np.arange(9)), RejectReason.OVERSIZED),  # 9 int64 > c = 8 int64: refused by size first
    (_reply(np.array([1.0, 2.0])), RejectReason.NOT_INTEGER),
    (_reply(np.array([1.0, np.nan])), RejectReason.NON_FINITE),
    (_reply(np.array([[1, 2], [3, 4]])), RejectReason.WRONG_NDIM),
    (_reply(np.array([], dtype=np.int64)), RejectReason.EMPTY),
    (_reply(np.array([1, 2]), server_round=ROUND - 1), RejectReason.WRONG_ROUND),
    (_reply(np.array([1, 2]), server_round="3"), RejectReason.WRONG_ROUND),
    (_reply(np.array([1, 2]), server_round=True), RejectReason.WRONG_ROUND),
    (_reply(np.zeros(100_000, dtype=np.int64)), RejectReason.OVERSIZED),
    (_reply(np.arange(9, dtype=np.int8)), RejectReason.TOO_MANY),  # small dtype: under the byte limit
    (_reply(Array(dtype="int64", shape=(2,), stype="numpy.ndarray", data=b"not an npy file")),
     RejectReason.NOT_AN_ARRAY),
    (_reply(Array(dtype="int64", shape=(2,), stype="torch.Tensor", data=b"\x00" * 16)), RejectReason.NOT_AN_ARRAY),
    (_reply(np.array([True, False])), RejectReason.NOT_INTEGER),
    (_reply(np.array(["1", "2"])), RejectReason.NOT_INTEGER),
]


@pytest.mark.parametrize(("content", "reason"), HOSTILE)
def test_every_hostile_vote_is_dropped_and_counted(content: RecordDict, reason: RejectReason) -> None:
    clean, problems = parse_reply(content, domains=DOMAINS, server_round=ROUND)
    assert "patterns" not in clean
    assert problems[reason.value] >= 1
    if reason is not RejectReason.WRONG_ROUND:  # the other domain's good vote still counts
        assert problems == {reason.value: 1}
        assert clean["kernels:conv1"].tolist() == GOOD_KERNELS.tolist()


def test_a_clean_vote_is_sorted_int64_and_read_only() -> None:
    clean, problems = parse_reply(_reply(np.array([9, 3, 1], dtype=np.uint8)), domains=DOMAINS, server_round=ROUND)
    assert not problems
    assert clean["patterns"].tolist() == [1, 3, 9] and clean["patterns"].dtype == np.int64
    assert not clean["patterns"].flags.writeable


def test_reply_level_problems_are_counted() -> None:
    no_votes = RecordDict({keys.VOTES_KEY: ConfigRecord({"patterns": [1, 2]})})  # not an ArrayRecord
    assert parse_reply(no_votes, domains=DOMAINS, server_round=ROUND) == ({}, {ReplyIssue.NO_VOTES_RECORD.value: 1})
    assert parse_reply(RecordDict(), domains=DOMAINS, server_round=ROUND)[1] == {ReplyIssue.NO_VOTES_RECORD.value: 1}
    partial = RecordDict({
        keys.VOTES_KEY: ArrayRecord({"patterns": Array(np.array([1])), "other": Array(np.array([1]))}),
        keys.VOTE_META_KEY: ConfigRecord({keys.ROUND_FIELD: ROUND}),
    })
    clean, problems = parse_reply(partial, domains=DOMAINS, server_round=ROUND)
    assert list(clean) == ["patterns"]
    assert problems == {ReplyIssue.MISSING_VOTE.value: 1, ReplyIssue.UNKNOWN_DOMAIN.value: 1}
    no_round = RecordDict({keys.VOTES_KEY: ArrayRecord({"patterns": Array(np.array([1]))})})
    assert parse_reply(no_round, domains=(DOMAIN,), server_round=ROUND)[1] == {RejectReason.WRONG_ROUND.value: 1}


def _message(node: int) -> Message:
    return Message(content=RecordDict(), dst_node_id=node, message_type=keys.VOTE_MESSAGE_TYPE)


def test_collect_votes_counts_failures_duplicates_and_strangers() -> None:
    good = _reply(np.array([1, 2, 3]))
    replies = [
        Message(good, reply_to=_message(1)),
        Message(good, reply_to=_message(1)),  # second reply of node 1: ignored
        Message(Error(code=0, reason="crash"), reply_to=_message(2)),  # error: failed, not charged
        Message(_reply(np.arange(20, dtype=np.int8)), reply_to=_message(3)),  # hostile but a participant
        Message(good, reply_to=_message(99)),  # never sampled
    ]
    collection = collect_votes(replies, domains=DOMAINS, server_round=ROUND, expected_nodes=[1, 2, 3, 4])
    assert collection.participants == ("1", "3")
    assert (collection.replies, collection.failed) == (5, 1)
    assert collection.voters["patterns"] == ("1",) and collection.voters["kernels:conv1"] == ("1", "3")
    assert collection.problems == {
        ReplyIssue.DUPLICATE_REPLY.value: 1, ReplyIssue.UNEXPECTED_NODE.value: 1, RejectReason.TOO_MANY.value: 1,
    }


@settings(max_examples=150, deadline=None)
@given(
    payload=hnp.arrays(
        dtype=st.sampled_from([np.int8, np.int64, np.uint16, np.float32, np.float64, np.bool_]),
        shape=hnp.array_shapes(min_dims=0, max_dims=2, max_side=12),
    ),
    server_round=st.sampled_from([ROUND, ROUND + 1]),
)
def test_no_reply_moves_the_histogram_by_more_than_c(payload: np.ndarray, server_round: int) -> None:
    honest = [np.array([0, 1, 2, 3, 4, 5, 6, 7])]
    clean, _ = parse_reply(_reply(payload, server_round=server_round), domains=DOMAINS, server_round=ROUND)
    base = tally_votes(honest, domain_size=DOMAIN.size, max_entries=DOMAIN.max_entries)
    votes = honest + ([clean["patterns"]] if "patterns" in clean else [])
    moved = tally_votes(votes, domain_size=DOMAIN.size, max_entries=DOMAIN.max_entries) - base
    assert moved.min() >= 0 and moved.max() <= 1 and moved.sum() <= DOMAIN.max_entries


class _Tripwire:
    """Unpickling this runs code (what a malicious pickle would do): it creates a folder."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        import os

        return (os.mkdir, (self.path,))


def test_a_pickled_payload_is_rejected_without_being_unpickled(tmp_path) -> None:
    import io

    ran = tmp_path / "the-payload-ran"
    buffer = io.BytesIO()
    np.save(buffer, np.array([_Tripwire(str(ran)), 1], dtype=object), allow_pickle=True)  # a .npy holding a pickle
    hostile = Array(dtype="object", shape=(2,), stype="numpy.ndarray", data=buffer.getvalue())
    clean, problems = parse_reply(_reply(hostile), domains=DOMAINS, server_round=ROUND)
    assert "patterns" not in clean and problems == {RejectReason.NOT_AN_ARRAY.value: 1}
    assert not ran.exists()  # the server never ran the payload's code
    np.load(io.BytesIO(buffer.getvalue()), allow_pickle=True)  # the tripwire works: loading with pickle runs it
    assert ran.is_dir()
