"""Messages any server could send a dppt device, with any field overridden: the hostile requests.

Shared by the device-policy tests on the in-process grid (``tests/federation``) and by the hostile
ServerApp of the real-deployment test (``tests/simulations/deploy_hostile_server.py``, which ships
this file beside it in its FAB). Not a test module. A message is built the way the real server
builds it (:func:`strategies.round_config_record`), then the fields a hostile server would bend are
overridden: ``vote`` fields of the vote configuration, ``run`` keys of the run config it passes.
"""

from __future__ import annotations

from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict

from federation.config import Config
from federation.model_io import build_model, plain_weights, ticket_policies
from models import prunable_layers
from storage import encode_float
from strategies import PrivacySettings, SearchSettings, build_domains, keys, round_config_record

__all__ = ["train_message", "vote_message"]


def _run_record(config: Config, run: dict[str, Any] | None = None) -> dict[str, Any]:
    return {key: encode_float(value) for key, value in {**config.to_dict(), **(run or {})}.items()}


def vote_message(
    config: Config, node: int, *, epsilon: float, vote: dict[str, Any] | None = None,
    run: dict[str, Any] | None = None, score_source: str = "record", delta: float = 0.0,
) -> Message:
    """A ``train.vote`` message for ``node`` asking ``epsilon`` per vote, with ``vote``/``run`` fields overridden.

    ``delta > 0`` asks for a Gaussian vote (``gaussian-topk``, L2-clipped scores) of that δ.
    """
    model = build_model(config, seed=config.seed)
    policies = ticket_policies(model)
    shapes = {name: tuple(layer.weight.shape) for name, layer in prunable_layers(model).items() if name in policies}
    gaussian = {"local_mechanism": "gaussian-topk", "clip_mode": "l2", "record_delta": delta} if delta > 0 else {}
    privacy = PrivacySettings(epsilon_split={"patterns": 1.0}, record_epsilon=epsilon,
                              min_examples=config.score_examples, score_source=score_source, **gaussian)
    settings = SearchSettings()
    domains = build_domains(shapes=shapes, policies=policies, settings=settings, density=0.3)
    vote_config = dict(round_config_record(domains=domains, privacy=privacy, settings=settings, server_round=1,
                                           attempt=0, density=0.3))
    vote_config.update(vote or {})
    content = RecordDict({
        keys.ARRAYS_KEY: ArrayRecord(plain_weights(model)),
        keys.CONFIG_KEY: ConfigRecord(_run_record(config, run)),
        keys.VOTE_CONFIG_KEY: ConfigRecord(vote_config),
    })
    return Message(content=content, dst_node_id=node, message_type=keys.VOTE_MESSAGE_TYPE, group_id="1")


def train_message(config: Config, node: int) -> Message:
    """A ``train`` message for ``node``: the public weights and the run config of round 1."""
    model = build_model(config, seed=config.seed)
    content = RecordDict({
        keys.ARRAYS_KEY: ArrayRecord(plain_weights(model)),
        keys.CONFIG_KEY: ConfigRecord({**_run_record(config), keys.ROUND_FIELD: 1}),
    })
    return Message(content=content, dst_node_id=node, message_type=MessageType.TRAIN, group_id="1")
