"""A :class:`flwr.serverapp.Grid` that adds behaviour to another grid by wrapping it.

Flower adds behaviour to a strategy by wrapping it (its DP wrappers); dppt does the same to the
grid: :class:`federation.federation_size.SizeCheckedGrid` checks the identity replies,
:class:`federation.round_progress.ProgressGrid` reports a long round's replies as they arrive.
A subclass overrides what it changes; everything else passes through to the wrapped grid.
"""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import Message
from flwr.proto.node_pb2 import NodeInfo  # pylint: disable=E0611
from flwr.serverapp import Grid
from flwr.supercore.run import Run

__all__ = ["GridWrapper"]


class GridWrapper(Grid):
    """Every :class:`Grid` method delegated, unchanged, to ``grid``."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid

    def set_run(self, run: Run) -> None:  # noqa: D102 - delegated
        self._grid.set_run(run)

    @property
    def run(self) -> Run:  # noqa: D102 - delegated
        return self._grid.run

    def create_message(self, *args, **kwargs) -> Message:  # noqa: D102 - delegated
        return self._grid.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:  # noqa: D102 - delegated
        return self._grid.get_node_ids()

    def get_nodes(self) -> Iterable[NodeInfo]:  # noqa: D102 - delegated
        return self._grid.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:  # noqa: D102 - delegated
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:  # noqa: D102 - delegated
        return self._grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:  # noqa: D102
        return self._grid.send_and_receive(messages, timeout=timeout)
