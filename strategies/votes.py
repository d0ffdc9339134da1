"""Reading the clients' replies: every vote validated, every problem counted, nothing raised.

Sensitivity is enforced, never trusted (DESIGN.md 5.3): a domain's vote is accepted only when
:func:`privacy.validate_vote` accepts it; a vote that fails is dropped with its
:class:`privacy.RejectReason`. Problems of a whole reply (no votes record, a missing domain, a
second reply from a node, a reply from a node that was not asked) are counted as
:class:`ReplyIssue`. Both are counted in one ``Counter`` keyed by their string values.

Participants (the clients charged for the round) are the sampled nodes that sent a reply with
content, valid or not, once each; error replies (and timeouts, which send nothing) are counted
as failed and never charged. Among the failed, the replies a device refused under its own
privacy policy (its error reason starts with :data:`strategies.keys.POLICY_REFUSAL`, DESIGN.md
5.4b) are also counted as ``refused``, by rule.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from typing import Final

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict

from privacy import RejectReason, validate_vote
from strategies.domains import VoteDomain
from strategies.keys import POLICY_REFUSAL, ROUND_FIELD, VOTE_META_KEY, VOTES_KEY

__all__ = ["ReplyIssue", "VoteCollection", "client_id", "collect_votes", "parse_reply", "refusal_rule"]

# Room for the .npy header around the raw bytes of an Array (the header is padded to 64 bytes
# and rarely exceeds 128); a payload larger than this plus the vote's limit is refused undecoded.
_NPY_HEADER_ALLOWANCE: Final = 4096


class ReplyIssue(str, enum.Enum):
    """Problems of a whole reply, beside the per-vote :class:`privacy.RejectReason` s."""

    NO_VOTES_RECORD = "no-votes-record"  # the reply has no ArrayRecord under VOTES_KEY
    MISSING_VOTE = "missing-vote"  # a domain of the round has no entry
    UNKNOWN_DOMAIN = "unknown-domain"  # an entry for a domain the round does not have (ignored)
    DUPLICATE_REPLY = "duplicate-reply"  # a second reply from the same node (ignored)
    UNEXPECTED_NODE = "unexpected-node"  # a reply from a node that was not sampled (ignored)


def client_id(node_id: int, identities: Mapping[int, str] | None = None) -> str:
    """Ledger id of a Flower node: its declared client id if known, else its node id in decimal."""
    if identities is not None and int(node_id) in identities:
        return identities[int(node_id)]
    return str(int(node_id))


def refusal_rule(reply: Message) -> str | None:
    """The policy rule a device named when it refused (its error reason), or ``None``."""
    if not reply.has_error():
        return None
    reason = str(reply.error.reason or "")
    at = reason.find(POLICY_REFUSAL)
    if at < 0:
        return None
    rest = reason[at + len(POLICY_REFUSAL):]
    if rest.startswith(" (") and ")" in rest:
        return rest[2:rest.index(")")]
    return "unnamed"


def _id_order(client: str) -> tuple[int, int | str]:
    """Numeric ids in numeric order, then the others alphabetically."""
    return (0, int(client)) if client.isdigit() else (1, client)


def _round_matches(received: object, expected: int) -> bool:
    if isinstance(received, (bool, np.bool_)) or not isinstance(received, (Integral, np.integer)):
        return False
    return int(received) == expected


def _decode(entry: object, limit: int) -> np.ndarray | RejectReason:
    """The vote array of an ArrayRecord entry, or why it cannot be read (never raises)."""
    data = getattr(entry, "data", None)
    if not isinstance(data, bytes):
        return RejectReason.NOT_AN_ARRAY
    if len(data) > limit + _NPY_HEADER_ALLOWANCE:
        return RejectReason.OVERSIZED  # refused before decoding
    try:
        array = entry.numpy()  # type: ignore[attr-defined]  # np.load(allow_pickle=False)
    except Exception:  # noqa: BLE001 - any undecodable payload is a rejected vote, never a crash
        return RejectReason.NOT_AN_ARRAY
    return array if isinstance(array, np.ndarray) else RejectReason.NOT_AN_ARRAY


def parse_reply(
    content: RecordDict, *, domains: Sequence[VoteDomain], server_round: int
) -> tuple[dict[str, np.ndarray], Counter[str]]:
    """Clean votes of one reply per domain, and the count of every problem found.

    Returns
    -------
    tuple
        ``{domain: sorted read-only int64 vote}`` for the accepted votes, and a ``Counter`` of
        :class:`privacy.RejectReason` and :class:`ReplyIssue` values.
    """
    problems: Counter[str] = Counter()
    votes_record = content.get(VOTES_KEY) if isinstance(content, RecordDict) else None
    if not isinstance(votes_record, ArrayRecord):
        problems[ReplyIssue.NO_VOTES_RECORD.value] += 1
        return {}, problems
    meta = content.get(VOTE_META_KEY)
    received_round = meta.get(ROUND_FIELD) if isinstance(meta, ConfigRecord) else None
    round_ok = _round_matches(received_round, server_round)
    known = {domain.name for domain in domains}
    problems[ReplyIssue.UNKNOWN_DOMAIN.value] += sum(1 for key in votes_record if key not in known)
    clean: dict[str, np.ndarray] = {}
    for domain in domains:
        if domain.name not in votes_record:
            problems[ReplyIssue.MISSING_VOTE.value] += 1
            continue
        if not round_ok:  # checked first, as validate_vote does, and without decoding
            problems[RejectReason.WRONG_ROUND.value] += 1
            continue
        payload = _decode(votes_record[domain.name], domain.max_payload_bytes)
        if isinstance(payload, RejectReason):
            problems[payload.value] += 1
            continue
        check = validate_vote(
            payload, domain_size=domain.size, max_entries=domain.max_entries, expected_round=server_round,
            received_round=received_round, max_payload_bytes=domain.max_payload_bytes,
        )
        if check.vote is None:
            assert check.reason is not None
            problems[check.reason.value] += 1
        else:
            clean[domain.name] = check.vote
    return clean, +problems


@dataclass(frozen=True, kw_only=True)
class VoteCollection:
    """What a round's replies hold, once validated.

    Parameters
    ----------
    votes
        Domain -> accepted votes (one per voting client at most).
    voters
        Domain -> client ids whose vote was accepted, aligned with ``votes``.
    participants
        Client ids that sent a reply with content (charged for the round), sorted.
    problems
        Count of every :class:`privacy.RejectReason` and :class:`ReplyIssue` value.
    failed
        Replies that carried an error (or nothing).
    refused
        Rule -> error replies a device refused under its own privacy policy (among ``failed``).
    replies
        Replies received, all kinds.
    """

    votes: Mapping[str, tuple[np.ndarray, ...]] = field(metadata={"help": "domain -> clean votes"})
    voters: Mapping[str, tuple[str, ...]] = field(metadata={"help": "domain -> voting client ids"})
    participants: tuple[str, ...] = field(metadata={"help": "client ids charged for the round"})
    problems: Counter[str] = field(metadata={"help": "reason -> count"})
    failed: int = field(metadata={"help": "error replies"})
    refused: Counter[str] = field(default_factory=Counter, metadata={"help": "policy rule -> refusals"})
    replies: int = field(metadata={"help": "replies received"})


def collect_votes(
    replies: Iterable[Message],
    *,
    domains: Sequence[VoteDomain],
    server_round: int,
    expected_nodes: Collection[int],
    identities: Mapping[int, str] | None = None,
) -> VoteCollection:
    """Validate every reply of a round (see the module docstring); never raises on a bad reply.

    ``identities`` maps node ids to the client ids they are charged under (default: node ids).
    """
    expected = {int(node) for node in expected_nodes}
    votes: dict[str, list[np.ndarray]] = {domain.name: [] for domain in domains}
    voters: dict[str, list[str]] = {domain.name: [] for domain in domains}
    problems: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    seen: set[int] = set()
    participants: list[str] = []
    failed = received = 0
    for reply in replies:
        received += 1
        if reply.has_error() or not reply.has_content():
            failed += 1
            rule = refusal_rule(reply)
            if rule is not None:
                refused[rule] += 1
            continue
        node = int(reply.metadata.src_node_id)
        if node not in expected:
            problems[ReplyIssue.UNEXPECTED_NODE.value] += 1
            continue
        if node in seen:
            problems[ReplyIssue.DUPLICATE_REPLY.value] += 1
            continue
        seen.add(node)
        participants.append(client_id(node, identities))
        clean, reply_problems = parse_reply(reply.content, domains=domains, server_round=server_round)
        problems.update(reply_problems)
        for name, vote in clean.items():
            votes[name].append(vote)
            voters[name].append(client_id(node, identities))
    return VoteCollection(
        votes={name: tuple(v) for name, v in votes.items()},
        voters={name: tuple(v) for name, v in voters.items()},
        participants=tuple(sorted(participants, key=_id_order)),
        problems=problems,
        failed=failed,
        refused=refused,
        replies=received,
    )
