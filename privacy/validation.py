"""Validation of client votes on the server (DESIGN.md 5.3: sensitivity is enforced, never trusted).

:func:`validate_vote` takes whatever a client sent and returns either a clean vote or the reason
it is dropped. A clean vote is a read-only, sorted int64 array of at most ``max_entries``
distinct indices in ``[0, domain_size)``, so it can add at most 1 to any count and at most
``max_entries`` in total (:func:`privacy.histogram.tally_votes` re-checks this).

Accepted inputs: numpy arrays of an integer dtype and plain lists or tuples of Python or numpy
integers. Rejected: booleans (``True`` is not an index), and every floating-point array, even
one holding whole numbers (``[1.0, 2.0]``): a vote is an integer array by contract, and a client
that sends floats is not following the protocol. Floating-point payloads are still checked for
NaN/inf first so that the logged reason is the most informative one.

Checks run in this order, the first failure is the reason: wrong-round, not-an-array, oversized,
wrong-ndim, non-finite, not-integer, empty, too-many, out-of-range, duplicates. The size check
precedes any conversion, so an oversized payload costs nothing to reject.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np

from privacy._checks import check_int
from privacy.errors import PrivacyError

__all__ = ["RejectReason", "VoteCheck", "validate_vote"]

_ITEM_BYTES = 8  # a list entry is counted as one int64


class RejectReason(str, enum.Enum):
    """Why a vote was dropped (stable string values, used as metric keys)."""

    NOT_AN_ARRAY = "not-an-array"
    NOT_INTEGER = "not-integer"
    WRONG_NDIM = "wrong-ndim"
    EMPTY = "empty"
    OUT_OF_RANGE = "out-of-range"
    DUPLICATES = "duplicates"
    TOO_MANY = "too-many"
    NON_FINITE = "non-finite"
    WRONG_ROUND = "wrong-round"
    OVERSIZED = "oversized"


@dataclass(frozen=True, kw_only=True)
class VoteCheck:
    """Outcome of :func:`validate_vote`: exactly one of ``vote`` and ``reason`` is ``None``."""

    vote: np.ndarray | None = field(metadata={"help": "clean vote, sorted read-only int64"})
    reason: RejectReason | None = field(metadata={"help": "why the vote was dropped"})

    def __post_init__(self) -> None:
        if (self.vote is None) == (self.reason is None):
            raise PrivacyError("VoteCheck must hold exactly one of vote and reason.")

    @property
    def accepted(self) -> bool:
        """Whether the vote is clean."""
        return self.vote is not None


def _reject(reason: RejectReason) -> VoteCheck:
    return VoteCheck(vote=None, reason=reason)


def _payload_bytes(payload: np.ndarray | list | tuple) -> int:
    if isinstance(payload, np.ndarray):
        return int(payload.nbytes)
    return len(payload) * _ITEM_BYTES


def _as_array(payload: list | tuple) -> np.ndarray | RejectReason:
    """Convert a plain list or tuple; integers only (bools are not), nesting gives wrong-ndim."""
    if not payload:
        return np.zeros(0, dtype=np.int64)
    if all(isinstance(item, (Integral, np.integer)) and not isinstance(item, (bool, np.bool_)) for item in payload):
        values = [int(item) for item in payload]
        fits = all(-(2**63) <= value < 2**63 for value in values)
        # Python ints beyond int64 stay exact (object dtype) and fail the range check later.
        return np.array(values, dtype=np.int64 if fits else object)
    try:
        return np.array(payload)
    except (ValueError, TypeError):  # ragged nesting
        return RejectReason.WRONG_NDIM


def validate_vote(
    payload: object,
    *,
    domain_size: int,
    max_entries: int,
    expected_round: int,
    received_round: object,
    max_payload_bytes: int,
    require_nonempty: bool = True,
) -> VoteCheck:
    """Check a client's vote; return the clean vote or the reason it is dropped.

    Parameters
    ----------
    payload
        Whatever the client sent as its vote for one domain.
    domain_size
        Number of items in the domain; indices must lie in ``[0, domain_size)``.
    max_entries
        ``c``: the most indices a vote may hold (the histogram's L1 sensitivity).
    expected_round
        The round the server is collecting.
    received_round
        The round the client says it answers (anything else than ``expected_round`` is rejected).
    max_payload_bytes
        Largest accepted payload (array ``nbytes``; 8 bytes per list entry).
    require_nonempty
        Whether an empty vote is rejected (``True``) or accepted as a vote for nothing.

    Returns
    -------
    VoteCheck
        ``vote`` (sorted read-only int64) or ``reason``.

    Raises
    ------
    PrivacyError
        Only for invalid *server-side* arguments; a bad payload never raises.
    """
    domain_size = check_int("domain_size", domain_size, minimum=1)
    max_entries = check_int("max_entries", max_entries, minimum=1, maximum=domain_size)
    expected_round = check_int("expected_round", expected_round, minimum=0)
    max_payload_bytes = check_int("max_payload_bytes", max_payload_bytes, minimum=1)
    if not isinstance(require_nonempty, bool):
        raise PrivacyError(f"require_nonempty must be a bool. Found {require_nonempty!r}.")

    if (
        isinstance(received_round, (bool, np.bool_))
        or not isinstance(received_round, (Integral, np.integer))
        or int(received_round) != expected_round
    ):
        return _reject(RejectReason.WRONG_ROUND)
    if not isinstance(payload, (np.ndarray, list, tuple)):
        return _reject(RejectReason.NOT_AN_ARRAY)
    if _payload_bytes(payload) > max_payload_bytes:
        return _reject(RejectReason.OVERSIZED)
    array = payload if isinstance(payload, np.ndarray) else _as_array(payload)
    if isinstance(array, RejectReason):
        return _reject(array)
    if array.ndim != 1:
        return _reject(RejectReason.WRONG_NDIM)
    kind = array.dtype.kind
    if kind in "fc" and not np.all(np.isfinite(array)):
        return _reject(RejectReason.NON_FINITE)
    if array.dtype == np.bool_ or kind not in "iuO":
        return _reject(RejectReason.NOT_INTEGER)
    if kind == "O" and not all(
        isinstance(item, (Integral, np.integer)) and not isinstance(item, (bool, np.bool_)) for item in array
    ):
        return _reject(RejectReason.NOT_INTEGER)
    if array.size == 0:
        if require_nonempty:
            return _reject(RejectReason.EMPTY)
        empty = np.zeros(0, dtype=np.int64)
        empty.setflags(write=False)
        return VoteCheck(vote=empty, reason=None)
    if array.size > max_entries:
        return _reject(RejectReason.TOO_MANY)
    # Compare in Python integers for object arrays and in the array's own dtype otherwise, so
    # that huge uint64 or Python ints cannot wrap around when cast to int64.
    low, high = (min(array), max(array)) if kind == "O" else (array.min(), array.max())
    if int(low) < 0 or int(high) >= domain_size:
        return _reject(RejectReason.OUT_OF_RANGE)
    vote = np.sort(array.astype(np.int64))
    if np.any(vote[1:] == vote[:-1]):
        return _reject(RejectReason.DUPLICATES)
    vote.setflags(write=False)
    return VoteCheck(vote=vote, reason=None)
