"""A hostile dppt ClientApp for the real-deployment test (not a test module: the node imports it).

- ``query.identity``: answers like the real client, as ``partition-2``.
- ``train.vote``: the real reply structure (``votes`` ArrayRecord keyed by domain, ``vote-meta``
  with the round) but every domain's vote is malformed, the kind cycling with round and domain,
  plus a 16 MiB int64 array under a key that is no domain.
- ``train``: the real ClientApp.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from federation.client_app import app as honest_app
from strategies.keys import METRICS_KEY
from strategies import keys

CLIENT_ID = "partition-2"
KINDS = ("out-of-range", "duplicates", "float", "nan", "too-many", "oversized")
PADDING_KEY = "padding"

app = ClientApp()


def bad_vote(kind: str, size: int, max_entries: int) -> np.ndarray:
    """One malformed vote for a domain of ``size`` items that accepts at most ``max_entries`` (c)."""
    c = max(1, min(max_entries, size))
    if kind == "out-of-range":
        return np.array([size, size + 7, -1][:c], dtype=np.int64)
    if kind == "duplicates":
        return np.zeros(max(2, c), dtype=np.int64)
    if kind == "float":
        return np.arange(c, dtype=np.float64) + 0.5
    if kind == "nan":
        return np.full(c, np.nan, dtype=np.float64)
    if kind == "too-many":  # int32: within the 8c-byte payload limit, so the entry count is what fails
        return np.arange(c + 1, dtype=np.int32)
    if kind == "oversized":  # c + 1 int64 entries: over the payload limit, refused before decoding
        return np.arange(c + 1, dtype=np.int64)
    raise ValueError(f"kind must be one of {KINDS}. Found {kind!r}.")


@app.query("identity")
def identity(msg: Message, context: Context) -> Message:
    return Message(content=RecordDict({keys.IDENTITY_KEY: ConfigRecord({keys.CLIENT_ID_FIELD: CLIENT_ID})}),
                   reply_to=msg)


@app.train("vote")
def vote(msg: Message, context: Context) -> Message:
    config = msg.content[keys.VOTE_CONFIG_KEY]
    server_round = int(config[keys.ROUND_FIELD])
    votes: dict[str, Array] = {}
    for position, name in enumerate(config[keys.DOMAINS_FIELD]):
        size = int(config[keys.domain_field(name, keys.DOMAIN_SIZE_FIELD)])
        max_entries = int(config[keys.domain_field(name, keys.DOMAIN_MAX_ENTRIES_FIELD)])
        votes[name] = Array(bad_vote(KINDS[(server_round + position) % len(KINDS)], size, max_entries))
    votes[PADDING_KEY] = Array(np.arange(2 * 1024 * 1024, dtype=np.int64))  # 16 MiB
    content = RecordDict({
        keys.VOTES_KEY: ArrayRecord(votes),
        keys.VOTE_META_KEY: ConfigRecord({keys.ROUND_FIELD: server_round}),
        METRICS_KEY: MetricRecord({"hostile": 1.0}),
    })
    return Message(content=content, reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    return honest_app(msg, context)
