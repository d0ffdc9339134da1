"""What a device owner runs before joining: is this node's ``--node-config`` one the ClientApp can serve?

:func:`check_node` takes the exact path of the ClientApp (:func:`federation.client_app.client_id_of`
on a ``Context`` holding the node config, then :func:`federation.client_data.load_client_data`),
so a node that passes here finds the same id and the same examples when the server calls it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import Context, RecordDict

from federation.client_app import client_id_of
from federation.client_data import load_client_data
from federation.config import Config, reads_client_data
from federation.data import dataset_info
from federation.device_policy import device_policy_of

__all__ = ["NodeCheck", "check_node", "format_node_check"]


@dataclass(frozen=True, kw_only=True)
class NodeCheck:
    """What one node would bring to a run."""

    client_id: str = field(metadata={"help": "the id its releases are charged under"})
    source: str = field(metadata={"help": "where its examples come from"})
    num_examples: int = field(metadata={"help": "examples after max-examples-per-client"})
    class_counts: tuple[int, ...] = field(metadata={"help": "examples per class, one entry per class of the dataset"})
    score_examples: int = field(metadata={"help": "examples a vote scores (the run's score-examples)"})
    ready: bool = field(metadata={"help": "no problem: it can vote and train"})
    problems: tuple[str, ...] = field(metadata={"help": "why it is not ready, one line each"})
    device_spent: float | None = field(default=None, metadata={"help": "Σε of its own privacy-log, None without one"})
    device_budget: float | None = field(default=None, metadata={"help": "its own max-epsilon, None without one"})
    policy: tuple[str, ...] = field(default=(), metadata={"help": "its privacy policy, as lines for a person"})


def check_node(node_config: Mapping[str, Any], config: Config) -> NodeCheck:
    """Find this node's id and examples as the ClientApp does, and say whether it can take part.

    A node is ready when it holds at least one example and, for a data-dependent score (SNIP),
    at least ``score-examples`` of them (with fewer it abstains from every vote), and, with its
    own ``privacy-log`` and ``max-epsilon``, has budget left, and its own ``min-examples`` is not
    above ``score-examples``. The node's privacy policy (:mod:`federation.device_policy`) is
    part of the result, so the owner sees what the device will refuse. Data-free
    scores (magnitude, SynFlow) score no example, so only the first condition applies.

    Raises
    ------
    ConfigError
        If the node config is incomplete or inconsistent (the ClientApp would fail the same way).
    federation.data.DataError
        If the dataset or the image folder cannot be read.
    federation.partitions.PartitionError
        If the partition cannot be built or the partition id is out of range.
    """
    context = Context(run_id=0, node_id=0, node_config=dict(node_config), state=RecordDict(), run_config={})
    client_id = client_id_of(context)
    data = load_client_data(context.node_config, config)
    counts = np.bincount(data.labels.numpy(), minlength=dataset_info(config.dataset).num_classes)
    problems: list[str] = []
    if data.num_examples == 0:
        problems.append("holds no examples: it cannot vote, train or evaluate")
    elif reads_client_data(config) and data.num_examples < config.score_examples:
        problem = (
            f"holds {data.num_examples} examples < score-examples {config.score_examples}:"
            " it will abstain from every vote"
        )
        cap = config.max_examples_per_client
        if 0 < cap < config.score_examples:
            problem += f" (max-examples-per-client {cap} caps every node below score-examples)"
        problems.append(problem)
    policy = device_policy_of(node_config)  # DESIGN.md 5.4b: what this device agrees to release
    device = policy.log
    spent = device.spent() if device is not None else None
    budget = device.max_epsilon if device is not None else None
    if spent is not None and budget is not None and spent >= budget:
        problems.append(f"its own privacy log holds ε {spent:g} >= max-epsilon {budget:g}: it will refuse every vote")
    if reads_client_data(config) and config.score_examples < policy.min_examples:
        problems.append(f"score-examples {config.score_examples} < its own min-examples {policy.min_examples}:"
                        " it will refuse every vote")
    return NodeCheck(
        policy=tuple(policy.describe()),
        device_spent=spent,
        device_budget=budget,
        client_id=client_id,
        source=data.source,
        num_examples=data.num_examples,
        class_counts=tuple(int(c) for c in counts),
        score_examples=config.score_examples,
        ready=not problems,
        problems=tuple(problems),
    )


def format_node_check(check: NodeCheck) -> str:
    """A few lines for a person: id, data, examples per class, and ready or why not."""
    counts = " ".join(f"{label}:{count}" for label, count in enumerate(check.class_counts))
    lines = [
        f"client-id  {check.client_id}",
        f"data       {check.source}",
        f"examples   {check.num_examples} (per class {counts})",
        f"scoring    {check.score_examples} examples per vote",
        f"status     {'ready' if check.ready else 'NOT READY'}",
    ]
    if check.device_spent is not None:
        budget = "no budget" if check.device_budget is None else f"max-epsilon {check.device_budget:g}"
        lines.append(f"own log    ε spent {check.device_spent:g} ({budget})")
    lines.extend(check.policy)
    lines.extend(f"problem    {problem}" for problem in check.problems)
    return "\n".join(lines)
