"""The dppt ClientApp. Each node scores, votes and trains on its own data only.

The message brings the public weights, the current ticket and the run config: what to compute.
What the node agrees to release is its own (DESIGN.md 5.4b): its privacy policy in its
``node_config`` (:mod:`federation.device_policy`: the largest ε per vote, the mechanisms, the
smallest n, its own log and Σε budget) bounds every reply, and nothing in a message (an ε, a Δ,
a seed) can lower the noise. Its data is found through ``node_config`` too, which the Simulation
Engine sets per virtual node and a real SuperNode takes from ``--node-config``: a partition of
the dataset (``partition-id``, ``num-partitions``, optionally ``data-dir`` and ``client-id``), or
the device's own labelled images (``image-dir`` and ``client-id``, :mod:`federation.image_folder`).

Handlers (message types):

- ``query.identity``: the node's stable client id (its releases are charged under it) and its
  ``num-partitions``, so the server sees a federation sized unlike the run at once.
- ``train.vote``: one record-level noisy top-k vote per domain (:mod:`federation.voting`), once
  the policy admits it; the reply holds index arrays and the number of examples scored (public,
  the request's n), never scores, weights or timings. A refused request is an error reply that
  names the rule (:class:`federation.errors.PolicyRefusal`): nothing is released or charged.
- ``train``: local SGD of the model under the ticket's masks (dense without a ticket); the reply
  holds the trained weights, an ε = inf release: refused under ``max-epsilon``, logged otherwise.
  Under ``train-privacy = dp-sgd`` it is record-level DP-SGD (:mod:`federation.dp_training`): the
  reply also holds the round's σ, q and steps, and the client id the server charges it under,
  and no training loss (an unnoised figure of the private records, outside DP-SGD's guarantee).

There is no ``evaluate`` handler: tickets are evaluated on the server's test set, so a node
never answers a question about its data beyond the vote and the training update.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from logging import WARNING
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common import log
from flwr.common.constant import ErrorCode

from federation.client_data import load_client_data, node_image_dir, require_client_id
from federation.config import TRAIN_PRIVACY_DP_SGD, Config, ConfigError
from federation.device_policy import PolicyRefusal, device_policy_of
from federation import profiling
from federation.dp_training import dp_train_epochs, plan_round, record_round, state_history
from federation.messages import (
    DP_STEPS_FIELD, NODE_CLIENT_ID, NODE_NUM_PARTITIONS, NODE_PARTITION_ID, NOISE_MULTIPLIER_FIELD, NUM_EXAMPLES_FIELD,
    SAMPLE_RATE_FIELD, TRAIN_LOSS_FIELD, TRAIN_PRIVACY_KEY,
)
from federation.model_io import build_model, load_weights, plain_weights, ticket_policies
from federation.training import train_epochs
from federation.voting import VoteRequest, build_votes, ticket_masks
from models import apply_masks, remove_masks
from models.scores import reads_data
from privacy import DP_SGD, make_rng
from strategies import keys
from strategies.identity import CLIENT_ID_PATTERN
from strategies.settings import SCORE_RECORD


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


def node_config_of(context: Context, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """This node's config: ``defaults`` (a simulation's derived policy) under its own ``node_config``."""
    return {**(defaults or {}), **dict(context.node_config)}


def identity(msg: Message, context: Context) -> Message:
    """Reply with this node's client id and, for a partition of a dataset, its ``num-partitions``."""
    record = ConfigRecord({keys.CLIENT_ID_FIELD: client_id_of(context)})
    partitions = context.node_config.get(NODE_NUM_PARTITIONS)
    if isinstance(partitions, int) and node_image_dir(context.node_config) is None:
        record[keys.NUM_PARTITIONS_FIELD] = partitions
    return Message(content=RecordDict({keys.IDENTITY_KEY: record}), reply_to=msg)


def vote(msg: Message, context: Context, node_defaults: Mapping[str, Any] | None = None) -> Message:
    """Score this node's examples at the public weights and reply with noisy top-k indices.

    The device's policy (:mod:`federation.device_policy`) admits the request and prices it
    before any example is read; the release is on the device's own log before the reply leaves.
    """
    node_config = node_config_of(context, node_defaults)
    config, _ = config_from_message(msg)
    torch.set_num_threads(max(1, int(config.client_cpus)))
    policy = device_policy_of(node_config)
    request = VoteRequest.from_record(dict(msg.content[keys.VOTE_CONFIG_KEY]))
    attempt = int(msg.content[keys.VOTE_CONFIG_KEY].get(keys.ATTEMPT_FIELD, 0))
    released = policy.vote_charge(request, config, reads_data=reads_data(config.score))  # before any work
    with profiling.span("data"):
        data = load_client_data(node_config, config)
    with profiling.span("model"):
        model = build_model(config)
        load_weights(model, msg.content[keys.ARRAYS_KEY].to_torch_state_dict())
        masks = ticket_masks(msg.content.get(keys.TICKET_KEY))
    generator = torch.Generator().manual_seed(_seed(config.seed, request.server_round, attempt, data.seed_key))
    with profiling.span("compute"):
        votes, metrics = _score_and_vote(model, masks, data, request, config, policy, attempt, generator)
    # On the device's own record before the reply leaves (fsynced).
    with profiling.span("log"):
        policy.record(run=config.run_hash(), server_round=request.server_round, attempt=attempt, domains=released,
                      kind="vote")
    content = RecordDict({
        keys.VOTES_KEY: ArrayRecord({name: Array(indices) for name, indices in votes.items()}),
        keys.VOTE_META_KEY: ConfigRecord({keys.ROUND_FIELD: request.server_round}),
        keys.METRICS_KEY: MetricRecord(metrics),
    })
    return Message(content=content, reply_to=msg)


def _score_and_vote(
    model: torch.nn.Module, masks: Any, data: Any, request: VoteRequest, config: Config, policy: Any, attempt: int,
    generator: torch.Generator,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The vote's work: optional local training of the scores, then the noisy top-k of every domain."""
    if config.score_train_epochs:
        # The policy priced this as unnoised (ε = inf): trained weights void Δ = C/n (DESIGN.md 4).
        apply_masks(model, masks)
        train_epochs(model, data.images, data.labels, epochs=config.score_train_epochs, batch_size=config.batch_size,
                     lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                     grad_clip_norm=config.grad_clip_norm, generator=generator)
    # DESIGN.md 5.5: noise from OS entropy; a seed only from the node config of a simulation, never a message.
    seed = None if policy.noise_seed is None else _seed(policy.noise_seed, request.server_round, attempt, data.seed_key)
    rng = make_rng(seed)
    scored = request.score_source == SCORE_RECORD
    policies = ticket_policies(model, other_layers=config.other_layers)
    return build_votes(
        model, request, score=config.score, policies=policies, masks=masks,
        data=(data.images, data.labels) if scored else None, rng=rng, generator=generator,
    )


def _masked_model(msg: Message, config: Config) -> torch.nn.Module:
    model = build_model(config)
    load_weights(model, msg.content[keys.ARRAYS_KEY].to_torch_state_dict())
    apply_masks(model, ticket_masks(msg.content.get(keys.TICKET_KEY)))
    return model


def train(msg: Message, context: Context, node_defaults: Mapping[str, Any] | None = None) -> Message:
    """Local training on this node's partition under the ticket's masks; reply with the new plain weights.

    ``train-privacy = none``: plain SGD, an ε = inf release (DESIGN.md 5.4b): refused under the
    device's ``max-epsilon``, and logged as such with a ``privacy-log``. ``dp-sgd``: record-level
    DP-SGD (:mod:`federation.dp_training`, DESIGN.md 5.8) at a noise the device computes itself,
    priced at its round's ε against ``max-epsilon`` before any step and logged before the reply leaves.
    """
    node_config = node_config_of(context, node_defaults)
    config, server_round = config_from_message(msg)
    policy = device_policy_of(node_config)
    dp_sgd = config.train_privacy == TRAIN_PRIVACY_DP_SGD
    policy.admit_train(dp_sgd=dp_sgd, train_delta=config.train_delta)
    torch.set_num_threads(max(1, int(config.client_cpus)))
    with profiling.span("data"):
        data = load_client_data(node_config, config)
    if dp_sgd:
        return _dp_train(msg, context, config, server_round, policy, data)
    with profiling.span("model"):
        model = _masked_model(msg, config)
    gen = torch.Generator().manual_seed(_seed(config.seed, server_round, data.seed_key))
    with profiling.span("compute"):
        loss = train_epochs(
            model,
            data.images,
            data.labels,
            epochs=config.local_epochs,
            batch_size=config.batch_size,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            grad_clip_norm=config.grad_clip_norm,
            generator=gen,
        )
    policy.record(run=config.run_hash(), server_round=server_round, attempt=0, domains={"train": math.inf},
                  kind="train")
    metrics = MetricRecord({TRAIN_LOSS_FIELD: loss, NUM_EXAMPLES_FIELD: data.num_examples})
    content = RecordDict({keys.ARRAYS_KEY: ArrayRecord(plain_weights(model)), keys.METRICS_KEY: metrics})
    return Message(content=content, reply_to=msg)


def _dp_train(msg: Message, context: Context, config: Config, server_round: int, policy: Any, data: Any) -> Message:
    """DP-SGD of one round: plan (σ, q, steps) and price it, train, log, reply with its figures."""
    planned = plan_round(config, num_examples=data.num_examples, history=state_history(context.state))
    policy.check_budget(planned.epsilon)  # the device's own max-epsilon, before any step
    model = build_model(config)
    load_weights(model, msg.content[keys.ARRAYS_KEY].to_torch_state_dict())
    masks = ticket_masks(msg.content.get(keys.TICKET_KEY))
    apply_masks(model, masks)  # checks the masks against the model, zeroes the pruned weights
    remove_masks(model)  # Opacus takes plain layers; dp_train_epochs keeps the pruned weights at zero
    # DESIGN.md 5.5: samples and noise from OS entropy; a seed only from a simulation's node config.
    seed = (secrets.randbits(63) if policy.noise_seed is None
            else _seed(policy.noise_seed, server_round, data.seed_key, len(state_history(context.state))))
    dp_train_epochs(model, data.images, data.labels, planned=planned, masks=masks, lr=config.lr,
                    momentum=config.momentum, weight_decay=config.weight_decay,
                    generator=torch.Generator().manual_seed(seed))  # its mean loss is not sent (below)
    record_round(context.state, planned)
    policy.record(run=config.run_hash(), server_round=server_round, attempt=0,
                  domains={DP_SGD: planned.epsilon}, kind="train")
    # Release policy (DESIGN.md 5.8): a DP-SGD reply holds only what DP-SGD's guarantee covers, the
    # noised weights, and the accounting figures (σ, q, steps) the server needs to charge them. The
    # unnoised mean training loss is a function of the private records outside that guarantee, so it
    # stays on the device (computed, never sent). ``num-examples`` is the partition's size:
    # FedAvg weights by it and it is not noised, so it is treated as public (a simulation's partition
    # report already states every partition's size); a deployment that deems its size private must
    # not run this handler.
    metrics = MetricRecord({
        NUM_EXAMPLES_FIELD: data.num_examples,
        NOISE_MULTIPLIER_FIELD: planned.noise_multiplier, SAMPLE_RATE_FIELD: planned.sample_rate,
        DP_STEPS_FIELD: planned.steps,
    })
    content = RecordDict({
        keys.ARRAYS_KEY: ArrayRecord(plain_weights(model)), keys.METRICS_KEY: metrics,
        TRAIN_PRIVACY_KEY: ConfigRecord({keys.CLIENT_ID_FIELD: client_id_of(context)}),
    })
    return Message(content=content, reply_to=msg)


def build_client_app(node_defaults: Mapping[str, Any] | None = None) -> ClientApp:
    """The dppt ClientApp; ``node_defaults`` lie under every node's own ``node_config``.

    A real SuperNode runs :data:`app` (no defaults: its ``--node-config`` is its whole policy). A
    simulation passes :func:`federation.device_policy.simulation_node_config`, the policy the run
    config implies, since the Simulation Engine gives virtual nodes only their partition.
    """
    defaults = dict(node_defaults or {})
    client_app = ClientApp()

    @client_app.query("identity")
    def _identity(msg: Message, context: Context) -> Message:
        with profiling.message("identity"):
            return identity(msg, context)

    @client_app.train("vote")
    def _vote(msg: Message, context: Context) -> Message:
        return _refusing(vote, msg, context, defaults, kind="vote")

    @client_app.train()
    def _train(msg: Message, context: Context) -> Message:
        return _refusing(train, msg, context, defaults, kind="train")

    return client_app


def _refusing(handler: Any, msg: Message, context: Context, defaults: Mapping[str, Any], *, kind: str) -> Message:
    """Run ``handler``; a request outside the device's policy becomes an error reply naming the rule.

    The refusal is a decision, not a crash: it is logged on the device (one line, and on its
    privacy-log when it keeps one, DESIGN.md 5.4b) and answered with Flower's precondition error
    (what Flower's own mods reply when a request fails theirs), so nothing is released.
    """
    try:
        with profiling.message(kind):
            return handler(msg, context, defaults)
    except PolicyRefusal as refusal:
        log(WARNING, "dppt: %s", refusal)
        raw = msg.content[keys.CONFIG_KEY] if keys.CONFIG_KEY in msg.content else {}
        vote_config = msg.content[keys.VOTE_CONFIG_KEY] if keys.VOTE_CONFIG_KEY in msg.content else {}
        server_round = int(vote_config.get(keys.ROUND_FIELD, raw.get(keys.ROUND_FIELD, 0)) or 0)
        try:
            run = Config.from_mapping({k: v for k, v in dict(raw).items() if k != keys.ROUND_FIELD}).run_hash()
        except ConfigError:
            run = "unreadable"
        device_policy_of(node_config_of(context, defaults)).note_refusal(
            refusal, run=run, server_round=server_round, attempt=int(vote_config.get(keys.ATTEMPT_FIELD, 0) or 0),
            kind=kind)
        return Message(Error(code=ErrorCode.MOD_FAILED_PRECONDITION, reason=str(refusal)), reply_to=msg)


app = build_client_app()
