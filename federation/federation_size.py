"""Stop a run at once when the federation was sized unlike the run's ``num-clients``.

Every simulated SuperNode gets ``num-partitions`` = the federation's size in its node config (a
real SuperNode gets it from ``--node-config``), and its ClientApp refuses to read data when that
differs from the run's ``num-clients``. Found only at the first vote, such a run sent every
sampled node a message that failed, round after round. The nodes declare their
``num-partitions`` in their identity reply, the first message of a search, so
:class:`SizeCheckedGrid` can end the run on that first reply with one line that says which
command fixes it.

The run is ended only when every node that declares a count declares the same wrong one (a
federation sized differently). Nodes that disagree among themselves are only logged: one
misconfigured or hostile device must not stop everybody's run; its own votes fail and it is
dropped, as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from logging import WARNING

from flwr.app import Message
from flwr.common import log
from flwr.serverapp import Grid

from federation.errors import ConfigError
from federation.grid_wrapper import GridWrapper
from strategies import keys
from strategies.identity import declared_partitions

__all__ = ["SizeCheckedGrid", "check_federation_size"]


def check_federation_size(replies: Iterable[Message], *, num_clients: int) -> None:
    """Raise when the identity replies all declare one partition count other than ``num_clients``.

    Raises
    ------
    ConfigError
        One line: the two sizes, and the commands that make them equal.
    """
    declared = {int(reply.metadata.src_node_id): declared_partitions(reply) for reply in replies}
    declaring = [count for count in declared.values() if count is not None]
    counts = set(declaring)
    if len(counts) == 1 and (found := counts.pop()) != num_clients:
        raise ConfigError(
            f"num-clients must equal the federation's num-partitions. Found num-clients = {num_clients},"
            f" num-partitions = {found} (declared by {len(declaring)} SuperNodes). Set the federation size with"
            f" flwr run . --federation-config \"num-supernodes={num_clients}\" (a simulation; real SuperNodes:"
            f" --node-config \"... num-partitions={num_clients}\"), or pass --run-config \"num-clients={found}\"."
        )
    for node, count in declared.items():
        if count is not None and count != num_clients:
            log(WARNING, "node %s declares num-partitions = %s, unlike the run's num-clients = %s: its votes will"
                " fail", node, count, num_clients)


class SizeCheckedGrid(GridWrapper):
    """A :class:`flwr.serverapp.Grid` that checks every batch of identity replies it returns.

    Everything else is the wrapped grid's: messages, node ids and the run pass through unchanged.
    """

    def __init__(self, grid: Grid, *, num_clients: int) -> None:
        super().__init__(grid)
        self._num_clients = num_clients

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """The wrapped grid's replies, after :func:`check_federation_size` on the identity replies."""
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        identity = [reply for reply in replies if reply.metadata.message_type == keys.IDENTITY_MESSAGE_TYPE]
        if identity:
            check_federation_size(identity, num_clients=self._num_clients)
        return replies
