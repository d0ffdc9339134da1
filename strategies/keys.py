"""Message type and record keys of one search round (module constants, as Flower does).

Server -> client (message type :data:`VOTE_MESSAGE_TYPE`; the ClientApp registers it with
``@app.train("vote")``), a ``RecordDict`` holding:

- :data:`ARRAYS_KEY` (``ArrayRecord``): the public weights.
- :data:`CONFIG_KEY` (``ConfigRecord``): the caller's run config, passed through unchanged.
- :data:`TICKET_KEY` (``ArrayRecord``, absent before the first ticket): :data:`LIBRARY_ARRAY`
  (bool ``(P, 3, 3)``) and one bool mask of the weight's shape per non-dense layer, keyed
  ``MASK_PREFIX + layer``.
- :data:`VOTE_CONFIG_KEY` (``ConfigRecord``): the round's vote configuration, fields below; the
  per-domain fields are keyed ``f"{domain}.{field}"`` (e.g. ``"patterns.top-k"``).

Client -> server (the reply), a ``RecordDict`` holding:

- :data:`VOTES_KEY` (``ArrayRecord``): one 1-D integer array per domain, keyed by domain name,
  of at most ``max-entries`` distinct indices in ``[0, size)``.
- :data:`VOTE_META_KEY` (``ConfigRecord``): :data:`ROUND_FIELD` (int), the round answered.
- optionally :data:`METRICS_KEY` (``MetricRecord``), plain metrics, ignored by the strategy.

The ticket training (Flower's ``FedAvg``) uses :data:`ARRAYS_KEY`, :data:`CONFIG_KEY` (with
:data:`ROUND_FIELD`), :data:`TICKET_KEY` and :data:`METRICS_KEY` too: FedAvg's default record keys.
"""

from __future__ import annotations

from typing import Final

VOTE_MESSAGE_TYPE: Final = "train.vote"
# Identity query (``@app.query("identity")``): sent once to every node not yet known, before it is
# sampled; the reply's IDENTITY_KEY ConfigRecord holds CLIENT_ID_FIELD, the stable id under which
# the node's releases are charged (node ids change when a simulation or a SuperLink restarts).
IDENTITY_MESSAGE_TYPE: Final = "query.identity"
IDENTITY_KEY: Final = "identity"
CLIENT_ID_FIELD: Final = "client-id"
# Also in the identity reply, from a node that holds a partition of a dataset: how many partitions
# it was told there are, so a federation sized unlike the run is found at once.
NUM_PARTITIONS_FIELD: Final = "num-partitions"

# The start of the error reason of a reply a device refused under its own privacy policy (DESIGN.md
# 5.4b), followed by the rule's name in brackets: the server counts these replies ("refused") and
# never charges them (an error reply releases nothing).
POLICY_REFUSAL: Final = "refused by the device's privacy policy"

# Records of the server's message.
ARRAYS_KEY: Final = "arrays"
CONFIG_KEY: Final = "config"
TICKET_KEY: Final = "ticket"
VOTE_CONFIG_KEY: Final = "vote-config"

# Records of the client's reply.
VOTES_KEY: Final = "votes"
VOTE_META_KEY: Final = "vote-meta"
METRICS_KEY: Final = "metrics"

# Entries of TICKET_KEY.
LIBRARY_ARRAY: Final = "library"
MASK_PREFIX: Final = "mask."

# Fields of VOTE_CONFIG_KEY (and ROUND_FIELD also of VOTE_META_KEY).
ROUND_FIELD: Final = "server-round"
ATTEMPT_FIELD: Final = "attempt"
DOMAINS_FIELD: Final = "domains"  # list[str], in order
SCORE_SOURCE_FIELD: Final = "score-source"  # "record" or "data-free"
MECHANISM_FIELD: Final = "mechanism"  # local mechanism: "laplace-topk", "gumbel-topk", "gaussian-topk" or "data-free"
CLIP_MODE_FIELD: Final = "clip-mode"  # how each example's contribution is bounded: "normalise", "clip" or "l2" (Gaussian)
CLIP_BOUND_FIELD: Final = "clip-bound"  # C: per-example contributions lie in [0, C] (1 under normalise)
SENSITIVITY_FIELD: Final = "sensitivity"  # Δ = C / min-examples (Gaussian: Δ₂ = √2·C / min-examples)
MIN_EXAMPLES_FIELD: Final = "min-examples"  # a client with fewer examples must not vote
DENSITY_FIELD: Final = "density"  # weight density of the ticket this round builds
PATTERN_ENTRIES_FIELD: Final = "pattern-entries"  # m
CENTRE_FIXED_FIELD: Final = "centre-fixed"  # candidates keep the centre

# Per-domain fields, keyed f"{domain}.{field}".
DOMAIN_SIZE_FIELD: Final = "size"
DOMAIN_TOP_K_FIELD: Final = "top-k"
DOMAIN_MAX_ENTRIES_FIELD: Final = "max-entries"
DOMAIN_EPSILON_FIELD: Final = "epsilon"  # record-level ε of the client's release for the domain
DOMAIN_DELTA_FIELD: Final = "delta"  # its record-level δ (0 but for gaussian-topk)
DOMAIN_LAYERS_FIELD: Final = "layers"  # list[str]: the layers the domain's scores pool over


def domain_field(domain: str, name: str) -> str:
    """Key of a per-domain field in :data:`VOTE_CONFIG_KEY`, e.g. ``"patterns.top-k"``."""
    return f"{domain}.{name}"
