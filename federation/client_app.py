"""The dppt ClientApp. Each node scores, votes and trains on its own data only.

Everything the client needs comes in the message: the public weights, the current ticket and the
resolved run config. Its own data is found through ``node_config``, which the Simulation Engine
sets per virtual node and a real SuperNode takes from ``--node-config``: a partition of the
dataset (``partition-id``, ``num-partitions``, optionally ``data-dir`` and ``client-id``), or the
device's own labelled images (``image-dir`` and ``client-id``, :mod:`federation.image_folder`).

Handlers (message types):

- ``query.identity``: the node's stable client id (its releases are charged under it) and its
  ``num-partitions``, so the server sees a federation sized unlike the run at once.
- ``train.vote``: one record-level noisy top-k vote per domain (:mod:`federation.voting`); the
  reply holds index arrays and plain metrics only, never scores or weights. With ``privacy-log``
  (and ``max-epsilon``) in its node config, the device logs each release itself and refuses votes
  past its own budget (:mod:`federation.device_log`).
- ``train``: local SGD of the model under the ticket's masks (dense without a ticket); the reply
  holds the trained weights (ticket training, not part of the search's privacy guarantee).

There is no ``evaluate`` handler: tickets are evaluated on the server's test set, so a node
never answers a question about its data beyond the vote and the training update.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from federation.client_data import load_client_data, node_image_dir, require_client_id
from federation.config import Config, ConfigError
from federation.device_log import DeviceLogError, device_log_of
from federation.messages import NODE_CLIENT_ID, NODE_NUM_PARTITIONS, NODE_PARTITION_ID, NUM_EXAMPLES_FIELD, TRAIN_LOSS_FIELD
from federation.model_io import build_model, load_weights, plain_weights, ticket_policies
from federation.training import train_epochs
from federation.voting import VoteError, VoteRequest, build_votes, ticket_masks
from models import apply_masks
from privacy import make_rng
from strategies import keys
from strategies.identity import CLIENT_ID_PATTERN
from strategies.settings import SCORE_RECORD

app = ClientApp()


def config_from_message(msg: Message) -> tuple[Config, int]:
    """The run config and the server round carried by a message."""
    raw = dict(msg.content[keys.CONFIG_KEY])
    server_round = int(raw.pop(keys.ROUND_FIELD, 0))
    return Config.from_mapping(raw), server_round


def client_id_of(context: Context) -> str:
    """This node's stable client id: node_config ``client-id``, else ``partition-<partition-id>``.

    A node with ``image-dir`` (its own images) has no partition to be named after: it must give
    ``client-id``, the id its privacy ledger is charged under (a random one would reset its budget
    at every restart).

    Raises
    ------
    ConfigError
        If the node gives no usable id, ``image-dir`` comes without ``client-id`` or with a
        partition, or the id does not match the client-id pattern.
    """
    node_config = context.node_config
    if node_image_dir(node_config) is not None:
        value = require_client_id(node_config)
    elif NODE_CLIENT_ID in node_config:
        value = str(node_config[NODE_CLIENT_ID])
    elif NODE_PARTITION_ID in node_config:
        value = f"partition-{int(node_config[NODE_PARTITION_ID])}"
    else:
        raise ConfigError(
            f"node_config has neither '{NODE_CLIENT_ID}' nor '{NODE_PARTITION_ID}'. Start the SuperNode with"
            f" --node-config \"{NODE_PARTITION_ID}=N {NODE_NUM_PARTITIONS}=M\" (or client-id=NAME), or with"
            f" \"image-dir=DIR client-id=NAME\" to use the device's own images."
        )
    if CLIENT_ID_PATTERN.fullmatch(value) is None:
        raise ConfigError(
            f"client-id must be 1-64 characters of letters, digits and . _ : - (starting with a letter or digit)."
            f" Found {value!r}."
        )
    return value


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([abs(int(p)) for p in parts]).generate_state(1)[0])


@app.query("identity")
def identity(msg: Message, context: Context) -> Message:
    """Reply with this node's client id and, for a partition of a dataset, its ``num-partitions``."""
    record = ConfigRecord({keys.CLIENT_ID_FIELD: client_id_of(context)})
    partitions = context.node_config.get(NODE_NUM_PARTITIONS)
    if isinstance(partitions, int) and node_image_dir(context.node_config) is None:
        record[keys.NUM_PARTITIONS_FIELD] = partitions
    return Message(content=RecordDict({keys.IDENTITY_KEY: record}), reply_to=msg)


@app.train("vote")
def vote(msg: Message, context: Context) -> Message:
    """Score this node's examples at the public weights and reply with noisy top-k indices."""
    config, _ = config_from_message(msg)
    torch.set_num_threads(max(1, int(config.client_cpus)))
    request = VoteRequest.from_record(dict(msg.content[keys.VOTE_CONFIG_KEY]))
    attempt = int(msg.content[keys.VOTE_CONFIG_KEY].get(keys.ATTEMPT_FIELD, 0))
    device = device_log_of(context.node_config)
    released = {d.name: d.epsilon if request.score_source == SCORE_RECORD else 0.0 for d in request.domains}
    if device is not None:
        try:
            device.check(math.fsum(released.values()))  # before any work: the device's own budget
        except DeviceLogError as err:
            raise VoteError(str(err)) from None
    data = load_client_data(context.node_config, config)
    model = build_model(config)
    load_weights(model, msg.content[keys.ARRAYS_KEY].to_torch_state_dict())
    masks = ticket_masks(msg.content.get(keys.TICKET_KEY))
    generator = torch.Generator().manual_seed(_seed(config.seed, request.server_round, attempt, data.seed_key))
    if config.score_train_epochs:
        # Config refuses this outside unit=client (DESIGN.md 4): trained weights void Δ = C/n.
        apply_masks(model, masks)
        train_epochs(model, data.images, data.labels, epochs=config.score_train_epochs, batch_size=config.batch_size,
                     lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, generator=generator)
    # DESIGN.md 5.5: noise from OS entropy unless the user set noise-seed (then it must stay secret).
    seed = None if config.noise_seed < 0 else _seed(config.noise_seed, request.server_round, attempt, data.seed_key)
    rng = make_rng(seed)
    scored = request.score_source == SCORE_RECORD
    policies = ticket_policies(model, other_layers=config.other_layers)
    votes, metrics = build_votes(
        model, request, score=config.score, policies=policies, masks=masks,
        data=(data.images, data.labels) if scored else None, rng=rng, generator=generator,
    )
    if device is not None:  # on the device's own record before the reply leaves (fsynced)
        try:
            device.record(run=config.run_hash(), server_round=request.server_round, attempt=attempt, domains=released)
        except DeviceLogError as err:
            raise VoteError(str(err)) from None
    content = RecordDict({
        keys.VOTES_KEY: ArrayRecord({name: Array(indices) for name, indices in votes.items()}),
        keys.VOTE_META_KEY: ConfigRecord({keys.ROUND_FIELD: request.server_round}),
        keys.METRICS_KEY: MetricRecord(metrics),
    })
    return Message(content=content, reply_to=msg)


def _masked_model(msg: Message, config: Config) -> torch.nn.Module:
    model = build_model(config)
    load_weights(model, msg.content[keys.ARRAYS_KEY].to_torch_state_dict())
    apply_masks(model, ticket_masks(msg.content.get(keys.TICKET_KEY)))
    return model


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Local SGD on this node's partition under the ticket's masks; reply with the new plain weights."""
    config, server_round = config_from_message(msg)
    torch.set_num_threads(max(1, int(config.client_cpus)))
    data = load_client_data(context.node_config, config)
    model = _masked_model(msg, config)
    gen = torch.Generator().manual_seed(_seed(config.seed, server_round, data.seed_key))
    loss = train_epochs(
        model,
        data.images,
        data.labels,
        epochs=config.local_epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        generator=gen,
    )
    metrics = MetricRecord({TRAIN_LOSS_FIELD: loss, NUM_EXAMPLES_FIELD: data.num_examples})
    content = RecordDict({keys.ARRAYS_KEY: ArrayRecord(plain_weights(model)), keys.METRICS_KEY: metrics})
    return Message(content=content, reply_to=msg)
