"""Which nodes take part in a round: the identity handshake, then a seeded sample.

The sample is drawn from the nodes whose client id is known (:mod:`strategies.identity`) when
``settings.identify_clients``, from every connected node otherwise. Its generator
(``settings.sampling_seed``) is public and checkpointed: a resumed search samples what the
interrupted one would have sampled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from logging import WARNING
from typing import Any

import numpy as np
from flwr.app import Message
from flwr.serverapp import Grid
from flwr.supercore.logger import log

from strategies import keys
from strategies.errors import SearchStopped, StrategyError
from strategies.identity import identity_message_content, resolve_identities
from strategies.settings import SearchSettings

__all__ = ["NodeSampler", "identify_nodes"]


def identify_nodes(grid: Grid, nodes: Iterable[int], identities: dict[int, str], *, timeout: float) -> None:
    """Ask the ``nodes`` not in ``identities`` for their client ids; add the accepted ones to it.

    A node refused (no reply, a malformed id, an id another node holds: :func:`resolve_identities`)
    stays out of ``identities``, with a warning; the caller leaves it out of the round.
    """
    unknown = [int(node) for node in nodes if int(node) not in identities]
    if not unknown:
        return
    queries = [
        Message(content=identity_message_content(), dst_node_id=node,
                message_type=keys.IDENTITY_MESSAGE_TYPE, group_id="identity")
        for node in unknown
    ]
    replies = grid.send_and_receive(queries, timeout=timeout)
    accepted, refused = resolve_identities(replies, asked=unknown, known=identities)
    identities.update(accepted)
    for node, why in refused.items():
        log(WARNING, "node %s is left out: %s", node, why)


class NodeSampler:
    """Sample a round's nodes, identifying unknown nodes first.

    Parameters
    ----------
    settings
        ``clients_per_round``, ``min_replies``, ``sampling_seed``, ``identify_clients`` and
        ``identity_timeout`` are read.
    """

    def __init__(self, *, settings: SearchSettings) -> None:
        self._settings = settings
        self._rng = np.random.default_rng(settings.sampling_seed)
        self._identities: dict[int, str] = {}

    @property
    def identities(self) -> dict[int, str]:
        """Node id -> client id of every node identified so far (node ids without identification)."""
        return dict(self._identities)

    def _identify(self, grid: Grid, nodes: list[int]) -> list[int]:
        """Ask unknown nodes for their client ids; return the nodes that may be sampled."""
        identify_nodes(grid, nodes, self._identities, timeout=self._settings.identity_timeout)
        return [node for node in nodes if node in self._identities]

    def sample(self, grid: Grid, *, server_round: int) -> tuple[int, ...]:
        """The sorted node ids of ``server_round``'s sample.

        Raises
        ------
        SearchStopped
            If fewer nodes than ``min_replies`` may be sampled.
        """
        nodes = sorted(int(node) for node in grid.get_node_ids())
        if self._settings.identify_clients:
            nodes = self._identify(grid, nodes)
        if len(nodes) < self._settings.min_replies:
            raise SearchStopped(
                f"available nodes must be at least min_replies = {self._settings.min_replies}. Found {len(nodes)}.",
                server_round=server_round,
            )
        wanted = self._settings.clients_per_round or len(nodes)
        # Node ids are unsigned 64-bit: sample positions, not ids.
        chosen = self._rng.choice(len(nodes), size=min(wanted, len(nodes)), replace=False)
        return tuple(sorted(nodes[int(i)] for i in chosen))

    def rng_state(self) -> dict[str, Any]:
        """The sampling generator's JSON-safe state."""
        return self._rng.bit_generator.state

    def load_rng_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`rng_state`; nothing changes if ``state`` is not a PCG64 state."""
        rng = np.random.default_rng()
        try:
            rng.bit_generator.state = state
        except (TypeError, ValueError, KeyError) as err:
            raise StrategyError(f"sampling-rng must be a PCG64 state. Found {state!r}.") from err
        self._rng = rng
