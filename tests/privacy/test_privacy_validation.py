"""Hostile votes: every rejection reason, the precedence of reasons, and clean votes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from privacy import PrivacyError, RejectReason, VoteCheck, validate_vote

SERVER = {"domain_size": 10, "max_entries": 3, "expected_round": 4, "max_payload_bytes": 256}

HOSTILE = [
    # (payload, received_round, reason)
    ([1, 2], 3, RejectReason.WRONG_ROUND),
    ([1, 2], "4", RejectReason.WRONG_ROUND),
    ([1, 2], None, RejectReason.WRONG_ROUND),
    ([1, 2], True, RejectReason.WRONG_ROUND),
    ("1,2", 4, RejectReason.NOT_AN_ARRAY),
    (b"\x01\x02", 4, RejectReason.NOT_AN_ARRAY),
    ({"vote": [1]}, 4, RejectReason.NOT_AN_ARRAY),
    (None, 4, RejectReason.NOT_AN_ARRAY),
    (7, 4, RejectReason.NOT_AN_ARRAY),
    (np.zeros(1000, dtype=np.int64), 4, RejectReason.OVERSIZED),
    (list(range(100)), 4, RejectReason.OVERSIZED),
    (np.array([[1, 2]]), 4, RejectReason.WRONG_NDIM),
    (np.array(3), 4, RejectReason.WRONG_NDIM),
    ([[1], [2, 3]], 4, RejectReason.WRONG_NDIM),
    ([[1, 2], [3, 4]], 4, RejectReason.WRONG_NDIM),
    (np.array([1.0, math.nan]), 4, RejectReason.NON_FINITE),
    ([1.0, math.inf], 4, RejectReason.NON_FINITE),
    (np.array([1.0, 2.0]), 4, RejectReason.NOT_INTEGER),
    (np.array([1.5]), 4, RejectReason.NOT_INTEGER),
    (np.array([True, False]), 4, RejectReason.NOT_INTEGER),
    ([True], 4, RejectReason.NOT_INTEGER),
    (["1"], 4, RejectReason.NOT_INTEGER),
    ([1, None], 4, RejectReason.NOT_INTEGER),
    (np.array([1, 2], dtype=np.complex128), 4, RejectReason.NOT_INTEGER),
    (np.array([1, "a"], dtype=object), 4, RejectReason.NOT_INTEGER),
    (np.array([], dtype=np.int64), 4, RejectReason.EMPTY),
    ([], 4, RejectReason.EMPTY),
    ([0, 1, 2, 3], 4, RejectReason.TOO_MANY),
    ([1, 10], 4, RejectReason.OUT_OF_RANGE),
    ([-1], 4, RejectReason.OUT_OF_RANGE),
    ([2**70], 4, RejectReason.OUT_OF_RANGE),
    (np.array([2**64 - 1], dtype=np.uint64), 4, RejectReason.OUT_OF_RANGE),
    (np.array([-128], dtype=np.int8), 4, RejectReason.OUT_OF_RANGE),
    ([3, 3], 4, RejectReason.DUPLICATES),
    (np.array([5, 1, 5], dtype=np.int32), 4, RejectReason.DUPLICATES),
]


@pytest.mark.parametrize(("payload", "received_round", "reason"), HOSTILE)
def test_hostile_vote_is_rejected_with_its_reason(
    payload: object, received_round: object, reason: RejectReason
) -> None:
    check = validate_vote(payload, received_round=received_round, **SERVER)
    assert check.vote is None and check.reason is reason and not check.accepted


def test_every_reason_is_exercised() -> None:
    assert {reason for *_, reason in HOSTILE} == set(RejectReason)


def test_reason_values_are_stable_strings() -> None:
    assert {r.value for r in RejectReason} == {
        "not-an-array", "not-integer", "wrong-ndim", "empty", "out-of-range", "duplicates", "too-many",
        "non-finite", "wrong-round", "oversized",
    }


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ([7, 0, 3], [0, 3, 7]),
        ((9,), [9]),
        (np.array([4, 2], dtype=np.uint8), [2, 4]),
        (np.array([1, 2], dtype=object), [1, 2]),
        ([np.int64(5), 6], [5, 6]),
    ],
)
def test_clean_vote_is_sorted_read_only_int64(payload: object, expected: list[int]) -> None:
    check = validate_vote(payload, received_round=4, **SERVER)
    assert check.accepted and check.reason is None
    assert check.vote is not None and check.vote.dtype == np.int64 and check.vote.tolist() == expected
    assert not check.vote.flags.writeable


def test_the_clean_vote_does_not_alias_the_payload() -> None:
    payload = np.array([1, 2], dtype=np.int64)
    check = validate_vote(payload, received_round=4, **SERVER)
    payload[0] = 9
    assert check.vote is not None and check.vote.tolist() == [1, 2]


def test_empty_vote_accepted_when_not_required() -> None:
    check = validate_vote([], received_round=4, require_nonempty=False, **SERVER)
    assert check.accepted and check.vote is not None and check.vote.size == 0


def test_precedence_of_reasons() -> None:
    # Wrong round wins over everything; size is checked before any content.
    assert validate_vote("junk", received_round=0, **SERVER).reason is RejectReason.WRONG_ROUND
    assert validate_vote(np.full(1000, math.nan), received_round=4, **SERVER).reason is RejectReason.OVERSIZED
    assert validate_vote([11, 11, 11, 11], received_round=4, **SERVER).reason is RejectReason.TOO_MANY


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"domain_size": 0}, "domain_size must be"),
        ({"max_entries": 11}, "max_entries must be in"),
        ({"expected_round": -1}, "expected_round must be"),
        ({"max_payload_bytes": 0}, "max_payload_bytes must be"),
        ({"require_nonempty": 1}, "require_nonempty must be a bool"),
    ],
)
def test_server_side_arguments_raise(overrides: dict, match: str) -> None:
    with pytest.raises(PrivacyError, match=match):
        validate_vote([1], received_round=4, **{**SERVER, **overrides})


def test_vote_check_holds_exactly_one_outcome() -> None:
    with pytest.raises(PrivacyError):
        VoteCheck(vote=None, reason=None)
