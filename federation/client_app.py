"""The dppt ClientApp. Each node trains on (and later scores) only its own partition.

Everything the client needs comes in the message: the public weights and the resolved run config.
Its own partition is found through ``node_config`` (``partition-id``, ``num-partitions``, and
optionally ``data-dir``), which the Simulation Engine sets per virtual node and a real SuperNode
takes from ``--node-config``.
"""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from federation.client_data import load_client_data
from federation.config import Config
from federation.messages import ARRAYS_KEY, CONFIG_KEY, METRICS_KEY, NUM_EXAMPLES_FIELD, ROUND_FIELD, TRAIN_LOSS_FIELD
from federation.model_io import build_model, load_weights, plain_weights
from federation.training import train_epochs

app = ClientApp()


def config_from_message(msg: Message) -> tuple[Config, int]:
    """The run config and the server round carried by a message."""
    raw = dict(msg.content[CONFIG_KEY])
    server_round = int(raw.pop(ROUND_FIELD, 0))
    return Config.from_mapping(raw), server_round


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Dense (or masked, later) local SGD on this node's partition; reply with the new plain weights."""
    config, server_round = config_from_message(msg)
    torch.set_num_threads(max(1, int(config.client_cpus)))
    data = load_client_data(context.node_config, config)
    model = build_model(config)
    load_weights(model, msg.content[ARRAYS_KEY].to_torch_state_dict())
    gen = torch.Generator().manual_seed(hash((config.seed, server_round, data.partition_id)) & 0x7FFFFFFF)
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
    content = RecordDict({ARRAYS_KEY: ArrayRecord(plain_weights(model)), METRICS_KEY: metrics})
    return Message(content=content, reply_to=msg)
