"""check_node (what a device owner runs before joining), client ids of image-dir nodes, and the real
ClientApp answering a vote and a training round from an image folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, Context, Message, RecordDict
from PIL import Image

from federation.client_app import app as client_app
from federation.client_app import client_id_of
from federation.config import Config, ConfigError
from federation.data import load_tensors
from federation.messages import NUM_EXAMPLES_FIELD
from strategies.keys import ARRAYS_KEY, CONFIG_KEY, METRICS_KEY
from federation.model_io import build_model, plain_weights, ticket_policies
from federation.node_check import NodeCheck, check_node, format_node_check
from federation.pipeline import config_record
from federation.voting import VoteError
from models import prunable_layers
from strategies import PrivacySettings, SearchSettings, build_domains, keys, round_config_record


def _mnist_folder(root: Path, data_dir: Path, n: int) -> Path:
    """The first ``n`` MNIST training images as PNG files in class folders."""
    images, labels = load_tensors("mnist", data_dir=data_dir, train=True)
    pixels = torch.round((images[:n, 0] * 0.3081 + 0.1307) * 255).clamp(0, 255).to(torch.uint8).numpy()
    for i in range(n):
        folder = root / str(int(labels[i]))
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels[i], "L").save(folder / f"{i:05d}.png")
    return root


def _context(node_config: dict) -> Context:
    return Context(run_id=1, node_id=7, node_config=node_config, state=RecordDict(), run_config={})


# --- client ids -------------------------------------------------------------------------------------


def test_an_image_dir_node_must_name_itself(tmp_path):
    with pytest.raises(ConfigError, match="client-id must be set when image-dir is given .*privacy ledger"):
        client_id_of(_context({"image-dir": str(tmp_path)}))
    assert client_id_of(_context({"image-dir": str(tmp_path), "client-id": "clinic-7"})) == "clinic-7"
    with pytest.raises(ConfigError, match="client-id must be 1-64 characters"):
        client_id_of(_context({"image-dir": str(tmp_path), "client-id": "a b"}))
    with pytest.raises(ConfigError, match="drop partition-id to use the image folder"):
        client_id_of(_context({"image-dir": str(tmp_path), "client-id": "a", "partition-id": 0}))


def test_partition_nodes_keep_their_ids():
    assert client_id_of(_context({"partition-id": 4, "num-partitions": 10})) == "partition-4"
    assert client_id_of(_context({"partition-id": 4, "client-id": "bob"})) == "bob"
    with pytest.raises(ConfigError, match="neither 'client-id' nor 'partition-id'.*image-dir=DIR client-id=NAME"):
        client_id_of(_context({}))


# --- check_node -------------------------------------------------------------------------------------


def test_a_partition_node_is_checked_as_the_client_app_sees_it(data_dir):
    config = Config(num_clients=3, partition="iid", max_examples_per_client=300, score_examples=128,
                    data_dir=str(data_dir))
    check = check_node({"partition-id": 1, "num-partitions": 3}, config)
    assert isinstance(check, NodeCheck)
    assert check.client_id == "partition-1" and check.source.startswith("partition 1 of 3 in ")
    assert check.num_examples == 300 and sum(check.class_counts) == 300 and len(check.class_counts) == 10
    assert check.score_examples == 128 and check.ready and check.problems == ()
    text = format_node_check(check)
    assert "client-id  partition-1" in text and "status     ready" in text and "problem" not in text


def test_an_image_dir_node_with_too_few_examples_is_not_ready(tmp_path, data_dir):
    root = _mnist_folder(tmp_path / "imgs", data_dir, 40)
    node_config = {"image-dir": str(root), "client-id": "clinic-7"}
    check = check_node(node_config, Config(score_examples=512))
    _, labels = load_tensors("mnist", data_dir=data_dir, train=True)
    assert check.client_id == "clinic-7" and check.source == f"image folder {root.resolve()}"
    assert check.num_examples == 40
    assert check.class_counts == tuple(np.bincount(labels[:40].numpy(), minlength=10).tolist())
    assert not check.ready
    assert check.problems == ("holds 40 examples < score-examples 512: it will abstain from every vote",)
    assert "status     NOT READY" in format_node_check(check)
    assert "problem    holds 40 examples" in format_node_check(check)
    assert check_node(node_config, Config(score_examples=40)).ready
    assert check_node(node_config, Config(score_examples=512, score="magnitude")).ready  # data-free: no abstention


def test_a_cap_below_score_examples_is_named(tmp_path, data_dir):
    root = _mnist_folder(tmp_path / "imgs", data_dir, 30)
    config = Config(score_examples=25, max_examples_per_client=20)
    check = check_node({"image-dir": str(root), "client-id": "a"}, config)
    assert check.num_examples == 20 and not check.ready
    assert "max-examples-per-client 20 caps every node below score-examples" in check.problems[0]


def test_check_node_fails_as_the_client_app_would(tmp_path):
    with pytest.raises(ConfigError, match="client-id must be set"):
        check_node({"image-dir": str(tmp_path)}, Config())
    with pytest.raises(ConfigError, match="node_config has neither"):
        check_node({}, Config())


# --- the real ClientApp on an image-dir node --------------------------------------------------------


def _vote_message(config: Config, node_id: int, *, min_examples: int) -> Message:
    model = build_model(config, seed=0)
    policies = ticket_policies(model)
    shapes = {name: tuple(layer.weight.shape) for name, layer in prunable_layers(model).items() if name in policies}
    settings = SearchSettings()
    privacy = PrivacySettings(epsilon_split={"patterns": 1.0}, record_epsilon=1.0, min_examples=min_examples)
    domains = build_domains(shapes=shapes, policies=policies, settings=settings, density=0.3)
    content = RecordDict({
        keys.ARRAYS_KEY: ArrayRecord(plain_weights(model)),
        keys.CONFIG_KEY: config_record(config),
        keys.VOTE_CONFIG_KEY: round_config_record(
            domains=domains, privacy=privacy, settings=settings, server_round=1, attempt=0, density=0.3,
        ),
    })
    return Message(content=content, dst_node_id=node_id, message_type=keys.VOTE_MESSAGE_TYPE, group_id="1")


@pytest.mark.usefixtures("server_identity")
def test_the_client_app_votes_and_trains_on_an_image_folder(tmp_path, data_dir):
    root = _mnist_folder(tmp_path / "imgs", data_dir, 48)
    context = _context({"image-dir": str(root), "client-id": "clinic-7"})
    config = Config(score_examples=32, max_examples_per_client=0)
    reply = client_app(_vote_message(config, context.node_id, min_examples=32), context)
    assert not reply.has_error()
    votes = reply.content[keys.VOTES_KEY]
    vote = votes["patterns"].numpy()
    assert list(votes) == ["patterns"] and vote.dtype == np.int64 and vote.size == SearchSettings().library_size
    assert reply.content[METRICS_KEY]["scored-examples"] == 32

    with pytest.raises(VoteError, match="48 examples, fewer than min-examples = 64: it abstains"):
        client_app(_vote_message(config, context.node_id, min_examples=64), context)

    model = build_model(config, seed=0)
    train = Message(
        content=RecordDict({ARRAYS_KEY: ArrayRecord(plain_weights(model)), CONFIG_KEY: config_record(config)}),
        dst_node_id=context.node_id, message_type="train", group_id="1",
    )
    trained = client_app(train, context)
    assert trained.content[METRICS_KEY][NUM_EXAMPLES_FIELD] == 48
    assert set(trained.content[ARRAYS_KEY].to_torch_state_dict()) == set(plain_weights(model))
