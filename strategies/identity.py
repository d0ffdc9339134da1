"""Stable client ids: which id a node's releases are charged under.

Flower node ids are assigned by the SuperLink (or the Simulation Engine) and change when it
restarts, so a per-client budget keyed by node id would start from zero after a resume. Each
node therefore declares a stable client id once (message type
:data:`strategies.keys.IDENTITY_MESSAGE_TYPE`). The declaration is not trusted for anything but
bookkeeping: an id that is malformed, or already held by another connected node, excludes the
node from sampling. A node that claims another client's id can only make that client look more
spent (the accountant then refuses it earlier), never less.

A node that holds a partition of a dataset also declares how many partitions it was told there
are (:data:`strategies.keys.NUM_PARTITIONS_FIELD`), so the server can tell at once, before any data is read, that
the federation was sized differently from the run (:func:`declared_partitions`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

from flwr.app import ConfigRecord, Message, RecordDict

from strategies import keys

__all__ = [
    "CLIENT_ID_PATTERN", "declared_partitions", "identity_message_content", "parse_identity",
    "resolve_identities",
]

CLIENT_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def identity_message_content() -> RecordDict:
    """Content of an identity query (an empty config record: the query carries nothing)."""
    return RecordDict({keys.IDENTITY_KEY: ConfigRecord({})})


def parse_identity(reply: Message) -> tuple[str | None, str]:
    """The client id an identity reply declares (or ``None``) and, if ``None``, why."""
    if reply.has_error():
        return None, f"identity query failed: {str(reply.error.reason).strip().splitlines()[-1][:200]}"
    if not reply.has_content():
        return None, "empty identity reply"
    record = reply.content.get(keys.IDENTITY_KEY)
    if not isinstance(record, ConfigRecord):
        return None, "identity reply without its record"
    value = record.get(keys.CLIENT_ID_FIELD)
    if not isinstance(value, str) or CLIENT_ID_PATTERN.fullmatch(value) is None:
        return None, f"malformed client id {value!r:.80}"
    return value, ""


def declared_partitions(reply: Message) -> int | None:
    """The partition count an identity reply declares, or ``None`` (no partition, or malformed).

    Only bookkeeping: a node without a partition (its own images) declares none, and a value
    that is not a positive int is ignored here (the node's own data loading refuses it).
    """
    if reply.has_error() or not reply.has_content():
        return None
    record = reply.content.get(keys.IDENTITY_KEY)
    value = record.get(keys.NUM_PARTITIONS_FIELD) if isinstance(record, ConfigRecord) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return None
    return value


def resolve_identities(
    replies: Iterable[Message], *, asked: Iterable[int], known: Mapping[int, str]
) -> tuple[dict[int, str], dict[int, str]]:
    """New node -> client id entries from identity replies, and the nodes refused with why.

    A node is refused when it does not answer, answers with a malformed id, or declares an id
    that another node (known, or answering in the same batch) already holds.
    """
    asked_set = {int(node) for node in asked}
    declared: dict[int, str | None] = {}
    problems: dict[int, str] = {}
    for reply in replies:
        node = int(reply.metadata.src_node_id)
        if node in asked_set and node not in declared:
            declared[node], problems[node] = parse_identity(reply)
    held = {client: node for node, client in known.items()}
    counts: dict[str, int] = {}
    for client in declared.values():
        if client is not None:
            counts[client] = counts.get(client, 0) + 1
    accepted: dict[int, str] = {}
    refused: dict[int, str] = {}
    for node in sorted(asked_set):
        client = declared.get(node)
        if node not in declared:
            refused[node] = "no identity reply"
        elif client is None:
            refused[node] = problems[node]
        elif client in held and held[client] != node:
            refused[node] = f"client id {client!r} is held by node {held[client]}"
        elif counts[client] > 1:
            refused[node] = f"client id {client!r} declared by several nodes"
        else:
            accepted[node] = client
    return accepted, refused
