"""Progress within a long round: replies received out of the messages sent, while the server waits.

Flower's ``Grid.send_and_receive`` pushes a round's messages and then blocks until every reply is
in or the timeout passes; at 1000 clients that is minutes without a word. :class:`ProgressGrid`
runs the same loop itself, with the wrapped grid's ``push_messages`` and ``pull_messages``, and
says every ``interval_s`` seconds how many replies are in. A round shorter than ``interval_s``
prints nothing.

Nothing else changes: the same messages are pushed once; replies are pulled at the grid's own
interval (Flower 1.41: ``InMemoryGrid.pull_interval``, 0.1 s in the Simulation Engine; 3 s,
hard-coded, in the deployment's ``HttpGrid``) until every message has its reply or ``timeout``
seconds have passed since the push; they are returned in the order they arrived, as Flower's
loop returns them (``flwr.superlink.grid.inmemory_grid.InMemoryGrid.send_and_receive``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Final

from flwr.app import Message
from flwr.serverapp import Grid

from federation import profiling
from federation.grid_wrapper import GridWrapper

__all__ = ["PROGRESS_INTERVAL_S", "ProgressGrid"]

PROGRESS_INTERVAL_S: Final = 10.0
"""Seconds between two progress lines of one round (and before the first)."""
DEPLOYMENT_PULL_INTERVAL_S: Final = 3.0
"""The pull interval of Flower 1.41's ``HttpGrid.send_and_receive`` (a literal there, no attribute)."""

Progress = Callable[[str], None]


class ProgressGrid(GridWrapper):
    """A grid whose ``send_and_receive`` reports a long round's replies as they arrive.

    Parameters
    ----------
    progress
        Where the lines go (the pipeline's progress printer).
    interval_s
        Seconds between lines; the first comes ``interval_s`` after the push.
    clock, sleep
        Time source and wait, injectable so that tests need not wait.
    """

    def __init__(
        self,
        grid: Grid,
        *,
        progress: Progress,
        interval_s: float = PROGRESS_INTERVAL_S,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0. Found {interval_s!r}.")
        super().__init__(grid)
        self._progress, self._interval = progress, interval_s
        self._clock, self._sleep = clock, sleep
        self._pull_interval = float(getattr(grid, "pull_interval", DEPLOYMENT_PULL_INTERVAL_S))

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        """Push ``messages``, pull their replies until all are in or ``timeout`` s passed (``None``: no limit)."""
        messages = list(messages)
        waiting = set(self._grid.push_messages(messages))
        sent = len(waiting)
        kind = _describe(messages)
        start = self._clock()
        next_line = start + self._interval
        replies: list[Message] = []
        while timeout is None or self._clock() < start + timeout:
            arrived = list(self._grid.pull_messages(waiting))
            replies.extend(arrived)
            waiting.difference_update(reply.metadata.reply_to_message_id for reply in arrived)
            if not waiting:
                break
            now = self._clock()
            if now >= next_line:
                errors = sum(1 for reply in replies if reply.has_error())
                limit = "" if timeout is None else f" (timeout {timeout:g} s)"
                failed = f" ({errors} failed)" if errors else ""
                self._progress(f"[waiting] {kind}: {len(replies)}/{sent} replies{failed} after {now - start:.0f} s"
                               f"{limit}")
                next_line = now + self._interval
            self._sleep(self._pull_interval)
        profiling.record_server_call(kind, start=start, wall_s=self._clock() - start, sent=sent, replies=len(replies))
        return replies


def _describe(messages: list[Message]) -> str:
    """``train.vote round 3``: the message type and round (Flower's ``group_id``) of a batch."""
    if not messages:
        return "no messages"
    metadata = messages[0].metadata
    return f"{metadata.message_type} round {metadata.group_id}" if metadata.group_id.isdigit() else metadata.message_type
