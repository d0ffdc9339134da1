"""A node's partition cached on its device (node_config cache-dir): same examples, no dataset read after the first."""

from __future__ import annotations

import logging

import pytest
import torch

import federation.client_data as client_data
from federation.client_data import load_client_data
from federation.config import Config


def _node(data_dir, cache) -> dict[str, object]:
    return {"partition-id": 1, "num-partitions": 3, "data-dir": str(data_dir), "cache-dir": str(cache)}


def test_the_second_message_reads_only_the_cache_and_gets_the_same_examples(data_dir, tmp_path, monkeypatch):
    config = Config(num_clients=3, partition="iid", max_examples_per_client=300, data_dir=str(data_dir))
    first = load_client_data(_node(data_dir, tmp_path / "cache"), config)
    (cached,) = (tmp_path / "cache").iterdir()
    assert cached.suffix == ".safetensors" and cached.stat().st_mode & 0o077 == 0  # the node's data: owner only

    def no_dataset(*args, **kwargs):
        raise AssertionError("the dataset was read although the cache holds this node's examples")

    monkeypatch.setattr(client_data, "load_tensors", no_dataset)
    second = load_client_data(_node(data_dir, tmp_path / "cache"), config)
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)
    assert second.source.endswith("(cached)") and second.seed_key == first.seed_key == 1
    monkeypatch.undo()
    uncached = load_client_data({k: v for k, v in _node(data_dir, "").items() if k != "cache-dir"}, config)
    assert torch.equal(uncached.images, first.images)
    # another cap is another set of examples: another file
    load_client_data(_node(data_dir, tmp_path / "cache"), config.replace(max_examples_per_client=200))
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_a_damaged_cache_is_ignored_and_rewritten(data_dir, tmp_path, caplog):
    config = Config(num_clients=3, partition="iid", max_examples_per_client=100, data_dir=str(data_dir))
    good = load_client_data(_node(data_dir, tmp_path), config)
    (cached,) = tmp_path.iterdir()
    cached.write_bytes(b"not a safetensors file")
    with caplog.at_level(logging.WARNING):
        again = load_client_data(_node(data_dir, tmp_path), config)
    assert torch.equal(again.images, good.images) and "unreadable client cache" in caplog.text
    assert load_client_data(_node(data_dir, tmp_path), config).source.endswith("(cached)")


def test_an_unwritable_cache_folder_only_warns(data_dir, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    config = Config(num_clients=3, partition="iid", max_examples_per_client=100, data_dir=str(data_dir))
    with caplog.at_level(logging.WARNING):
        data = load_client_data(_node(data_dir, blocker / "cache"), config)
    assert data.num_examples == 100 and "cannot write the client cache" in caplog.text


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_cache_dir_means_no_cache(data_dir, tmp_path, value, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = Config(num_clients=3, partition="iid", max_examples_per_client=50, data_dir=str(data_dir))
    assert not load_client_data(_node(data_dir, value), config).source.endswith("(cached)")
    assert list(tmp_path.iterdir()) == []
