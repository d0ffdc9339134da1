"""An in-process Flower grid that runs the real ClientApp: the whole pipeline without Ray.

Every node is the real ``federation.client_app.app`` with its own ``Context`` (node_config
``partition-id`` / ``num-partitions`` / ``data-dir``). Tests can make a node die (error replies),
go silent (no reply), or make the grid itself crash after a number of exchanges (a server crash).
Node ids are fresh random 64-bit numbers per grid, as after a SuperLink restart.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
import torch
from flwr.app import Context, Error, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from federation.client_app import app as client_app
from federation.config import Config
from federation.device_policy import simulation_node_config


class GridCrash(RuntimeError):
    """The simulated server crash."""


class InProcessGrid:
    """Just enough of ``flwr.serverapp.Grid`` to run ``federation.pipeline.run_pipeline``."""

    def __init__(self, config: Config, data_dir: Path, *, crash_after: int | None = None) -> None:
        self.contexts: dict[int, Context] = {}
        for pid in range(config.num_clients):
            node = secrets.randbits(63) + 1
            self.contexts[node] = Context(
                run_id=1, node_id=node,
                # The policy a simulation derives from the run config (DESIGN.md 5.4b), under the node's own keys.
                node_config={**simulation_node_config(config), "partition-id": pid, "num-partitions": config.num_clients,
                             "data-dir": str(data_dir)},
                state=RecordDict(), run_config={},
            )
        self.apps: dict[int, Callable[[Message, Context], Message]] = {}  # per-node replacement ClientApps
        self.dead: set[int] = set()
        self.silent: set[int] = set()
        self.exchanges = 0
        self.crash_after = crash_after
        self.sent: list[list[Message]] = []
        # push_messages / pull_messages: answered replies not pulled yet, and how many one pull
        # returns (None: all; k: a federation whose replies come in slowly, k per pull).
        self.outbox: list[Message] = []
        self.replies_per_pull: int | None = None
        self.pull_interval = 0.1  # seconds between pulls, as Flower's InMemoryGrid (what ProgressGrid reads)

    def node_of(self, partition_id: int) -> int:
        return next(n for n, c in self.contexts.items() if c.node_config["partition-id"] == partition_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def _exchange(self, messages: Iterable[Message]) -> list[Message]:
        if self.crash_after is not None and self.exchanges >= self.crash_after:
            raise GridCrash(f"server crashed after {self.exchanges} exchanges")
        self.exchanges += 1
        messages = list(messages)
        self.sent.append(messages)
        return messages

    def _answer(self, message: Message) -> Message | None:
        """The node's reply (``None``: a silent node)."""
        node = int(message.metadata.dst_node_id)
        if node in self.silent:
            return None
        if node in self.dead:
            return Message(Error(code=0, reason="node died"), reply_to=message)
        try:
            app = self.apps.get(node, client_app)
            return app(message, self.contexts[node])
        except Exception as err:  # noqa: BLE001 - a crashing ClientApp becomes an error reply
            return Message(Error(code=0, reason=repr(err)), reply_to=message)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        return [reply for message in self._exchange(messages) if (reply := self._answer(message)) is not None]

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        """Answer every message now; the replies wait to be pulled (``replies_per_pull`` at a time)."""
        ids = []
        for message in self._exchange(messages):
            message.metadata.__dict__["_message_id"] = str(uuid.uuid4())  # as Flower's InMemoryGrid does
            ids.append(message.metadata.message_id)
            if (reply := self._answer(message)) is not None:
                self.outbox.append(reply)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        wanted = set(message_ids)
        ready = [reply for reply in self.outbox if reply.metadata.reply_to_message_id in wanted]
        ready = ready[: self.replies_per_pull] if self.replies_per_pull is not None else ready
        taken = {id(reply) for reply in ready}
        self.outbox = [reply for reply in self.outbox if id(reply) not in taken]
        return ready


@pytest.fixture
def small_config(data_dir: Path) -> Config:
    """A pipeline config that runs in seconds: 3 clients, 300 examples each, 3 search rounds."""
    return Config(
        num_clients=3, partition="iid", search_rounds=3, hold_rounds=1, train_rounds=2, max_examples_per_client=300,
        score_examples=128, max_test_examples=500, data_dir=str(data_dir), min_replies=2, epsilon=2.0,
    )


@pytest.fixture
def grid_type() -> type[InProcessGrid]:
    """The in-process grid class (test modules cannot import conftest under importlib mode)."""
    return InProcessGrid


@pytest.fixture
def grid_crash() -> type[GridCrash]:
    """The exception a crashing grid raises."""
    return GridCrash


@pytest.fixture
def server_identity() -> Iterator[None]:
    """One torch thread, and the identity a ServerApp process has (Flower's ``Message`` reads it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved
    torch.set_num_threads(threads)
