"""A hostile ServerApp for the real-deployment test of the device's policy (not a test module).

The SuperLink runs it from the FAB of a small Flower project the test writes (this file and
``tests/policy_requests.py`` beside it), against a real SuperNode that runs the real dppt
ClientApp with a privacy policy of its own. In :func:`main` it sends the one node of the
federation, in turn, each request of :data:`REQUESTS`: five outside that policy (each asks
the device to release more than it agreed to), then an honest vote within it. What came back is
written, atomically, as JSON to the file named by the run config's :data:`RESULT_KEY`: one entry
per request, ``request``, ``replied``, ``has-error``, ``rule`` (:func:`strategies.votes.
refusal_rule`), ``reason`` (the error's) and ``votes`` (domain -> number of indices, if answered).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Final

from flwr.app import Context, Message
from flwr.serverapp import Grid, ServerApp
from policy_requests import train_message, vote_message  # shipped beside this file in the FAB

from federation.config import Config
from storage import write_atomic
from strategies import keys
from strategies.votes import refusal_rule

__all__ = ["PER_VOTE", "REQUESTS", "RESULT_KEY", "app"]

RESULT_KEY: Final = "result-file"  # run config: where the replies are written (JSON)
PER_VOTE: Final = 0.5  # the ε per vote the device's policy admits (the test's max-vote-epsilon)
_REPLY_TIMEOUT: Final = 300.0  # seconds per request: a fresh flwr-clientapp imports torch each time
_NODE_TIMEOUT: Final = 60.0

# The run it pretends to be: one client, a tiny partition, n = 64 scored examples (conv4 on MNIST).
CONFIG: Final = Config(num_clients=1, partition="iid", max_examples_per_client=200, score_examples=64,
                       min_replies=1, reference_search=False, baselines=False)
_C_OVER_2N: Final = CONFIG.clip_bound / (2 * CONFIG.score_examples)  # half the Δ = C/n: half the noise

# (name, message for a node): the requests in the order they are sent.
REQUESTS: Final[tuple[tuple[str, Callable[[int], Message]], ...]] = (
    ("epsilon-5", lambda node: vote_message(CONFIG, node, epsilon=5.0)),
    ("half-sensitivity", lambda node: vote_message(CONFIG, node, epsilon=PER_VOTE,
                                                   vote={keys.SENSITIVITY_FIELD: _C_OVER_2N})),
    ("server-seed", lambda node: vote_message(CONFIG, node, epsilon=PER_VOTE, run={"noise-seed": 7})),
    ("train", lambda node: train_message(CONFIG, node)),
    ("gumbel", lambda node: vote_message(CONFIG, node, epsilon=PER_VOTE,
                                         vote={keys.MECHANISM_FIELD: "gumbel-topk"})),
    ("honest", lambda node: vote_message(CONFIG, node, epsilon=PER_VOTE)),
)

app = ServerApp()


def _the_node(grid: Grid) -> int:
    deadline = time.time() + _NODE_TIMEOUT
    while not (nodes := list(grid.get_node_ids())):
        if time.time() > deadline:
            raise RuntimeError(f"no SuperNode connected in {_NODE_TIMEOUT:.0f} s")
        time.sleep(1)
    if len(nodes) != 1:
        raise RuntimeError(f"the hostile ServerApp expects exactly one SuperNode. Found {len(nodes)}.")
    return int(nodes[0])


def _outcome(name: str, replies: list[Message]) -> dict[str, Any]:
    if not replies:
        return {"request": name, "replied": False}
    (reply,) = replies
    if reply.has_error():
        return {"request": name, "replied": True, "has-error": True, "rule": refusal_rule(reply),
                "reason": str(reply.error.reason or "")}
    votes = reply.content.get(keys.VOTES_KEY)
    counts = {domain: int(array.numpy().size) for domain, array in votes.items()} if votes is not None else None
    return {"request": name, "replied": True, "has-error": False, "rule": None, "reason": None, "votes": counts}


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Send :data:`REQUESTS` to the one node, in turn, and write what came back to ``result-file``."""
    result_file = str(context.run_config[RESULT_KEY])
    node = _the_node(grid)
    outcomes = []
    for name, build in REQUESTS:
        replies = list(grid.send_and_receive([build(node)], timeout=_REPLY_TIMEOUT))
        outcomes.append(_outcome(name, replies))
    write_atomic(result_file, (json.dumps(outcomes, indent=1) + "\n").encode("utf-8"))
