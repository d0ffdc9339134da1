"""Fixtures of the strategies tests: a fake Flower grid, honest clients, a small model.

The fake grid calls one Python function per node: it returns the reply's ``RecordDict``, raises
(the grid turns that into an error reply, as a crashing ClientApp would) or returns ``None``
(no reply: a timeout).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from privacy import Accountant, Ledger, ReleaseJournal, laplace_topk
from strategies import DensitySchedule, PatternSearch, PrivacyGate, PrivacySettings, SearchSettings, keys

ClientFn = Callable[[int, Message], RecordDict | None]

PLANTED_LIBRARY = (3, 10, 20, 30, 40, 50, 51, 55)  # of the 56 candidates with m = 4
PLANTED_KERNELS = tuple(j for j in range(24) if j % 4 != 1)  # 18 of conv2's 24 kernels; K <= 18 here
MIN_EXAMPLES = 100


class FakeGrid:
    """Just enough of ``flwr.serverapp.Grid``: node ids, message creation, send and receive."""

    def __init__(self, clients: dict[int, ClientFn]) -> None:
        self.clients = clients
        self.sent: list[list[Message]] = []

    def get_node_ids(self) -> Iterable[int]:
        return list(self.clients)

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        return Message(content=content, dst_node_id=dst_node_id, message_type=message_type, group_id=group_id)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        messages = list(messages)
        self.sent.append(messages)
        replies = []
        for message in messages:
            try:
                content = self.clients[message.metadata.dst_node_id](message.metadata.dst_node_id, message)
            except Exception as err:  # noqa: BLE001 - a crashing client becomes an error reply
                replies.append(Message(Error(code=0, reason=repr(err)), reply_to=message))
                continue
            if content is not None:
                replies.append(Message(content, reply_to=message))
        return replies


def vote_reply(votes: dict[str, object], server_round: object) -> RecordDict:
    """A reply content: ``votes`` (numpy arrays become Arrays) and the round answered."""
    record = ArrayRecord({name: v if isinstance(v, Array) else Array(np.asarray(v)) for name, v in votes.items()})
    return RecordDict({keys.VOTES_KEY: record, keys.VOTE_META_KEY: ConfigRecord({keys.ROUND_FIELD: server_round})})


def planted_scores(domain: str, size: int) -> np.ndarray:
    """Clipped mean scores in [0, 1] of an honest client: planted items 0.9, others 0.1."""
    scores = np.full(size, 0.1)
    scores[list(PLANTED_LIBRARY if domain == "patterns" else PLANTED_KERNELS)] = 0.9
    return scores


def honest_client(node: int, message: Message) -> RecordDict:
    """Follows the protocol of strategies.keys: one record-level noisy top-c vote per domain."""
    config = message.content[keys.VOTE_CONFIG_KEY]
    server_round = int(config[keys.ROUND_FIELD])
    rng = np.random.default_rng(1000 * node + server_round)
    votes: dict[str, object] = {}
    for domain in config[keys.DOMAINS_FIELD]:
        size = int(config[keys.domain_field(domain, keys.DOMAIN_SIZE_FIELD)])
        k = int(config[keys.domain_field(domain, keys.DOMAIN_MAX_ENTRIES_FIELD)])
        scores = planted_scores(domain, size)
        if config[keys.MECHANISM_FIELD] == "data-free":
            votes[domain] = np.argsort(-scores, kind="stable")[:k]
        else:
            epsilon = float(config[keys.domain_field(domain, keys.DOMAIN_EPSILON_FIELD)])
            sensitivity = float(config[keys.SENSITIVITY_FIELD])
            votes[domain] = laplace_topk(scores, k=k, epsilon=epsilon, sensitivity=sensitivity, rng=rng).indices
    return vote_reply(votes, server_round)


def failing_client(node: int, message: Message) -> RecordDict:
    raise RuntimeError(f"client {node} crashed")


def silent_client(node: int, message: Message) -> None:
    return None


@pytest.fixture(autouse=True)
def _single_thread_and_task_identity() -> Iterator[None]:
    """One torch thread; and the identity a ServerApp process has (Flower's ``Message`` reads it)."""
    torch.set_num_threads(1)
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield
    TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved


@pytest.fixture
def weights() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "conv1": torch.randn(4, 2, 3, 3, generator=generator),
        "conv2": torch.randn(6, 4, 3, 3, generator=generator),
        "fc": torch.randn(10, 24, generator=generator),
        "head": torch.randn(3, 10, generator=generator),
    }


POLICIES = {"conv1": "pattern", "conv2": "pattern", "fc": "unstructured", "head": "dense"}


def make_search(
    tmp_path: Path,
    weights: dict[str, torch.Tensor],
    *,
    record_budget: float = float("inf"),
    client_budget: float = float("inf"),
    settings: SearchSettings | None = None,
    privacy: PrivacySettings | None = None,
    schedule: DensitySchedule | None = None,
    journal: bool = False,
    gate: type[PrivacyGate] = PrivacyGate,
) -> PrivacyGate:
    """A gated search over the small model with kernel votes on conv2 (defaults: record-level ε = 4).

    ``journal``: with a release journal ``tmp_path / "journal.jsonl"``; ``gate``: the wrapper class.
    """
    settings = settings or SearchSettings(kernel_vote_layers=("conv2",), min_replies=2)
    privacy = privacy or PrivacySettings(
        epsilon_split={"patterns": 0.5, "kernels:conv2": 0.5}, record_epsilon=4.0, min_examples=MIN_EXAMPLES
    )
    schedule = schedule or DensitySchedule(start=4 / 9, target=0.25, decay_rounds=2, hold_rounds=2)
    accountant = Accountant(
        Ledger(tmp_path / "ledger.jsonl"), record_epsilon_budget=record_budget, client_epsilon_budget=client_budget
    )
    search = PatternSearch(
        weights=weights, policies=POLICIES, settings=settings, privacy=privacy, schedule=schedule,
        ticket_dir=tmp_path / "tickets",
    )
    return gate(
        strategy=search, accountant=accountant, journal=ReleaseJournal(tmp_path / "journal.jsonl") if journal else None
    )


@pytest.fixture
def kit(tmp_path: Path, weights: dict[str, torch.Tensor]) -> SimpleNamespace:
    """The helpers above, for test modules (conftest is not importable under importlib mode)."""
    return SimpleNamespace(
        FakeGrid=FakeGrid,
        vote_reply=vote_reply,
        honest_client=honest_client,
        failing_client=failing_client,
        silent_client=silent_client,
        planted_library=PLANTED_LIBRARY,
        planted_kernels=PLANTED_KERNELS,
        min_examples=MIN_EXAMPLES,
        policies=POLICIES,
        make_search=lambda path=tmp_path, **kwargs: make_search(path, weights, **kwargs),
    )
