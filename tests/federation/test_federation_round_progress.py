"""Progress within a round (federation.round_progress): lines for a long round, none for a short one,
and the same replies, in the same order, within the same timeout as Flower's blocking wait."""

from __future__ import annotations

import pytest
from flwr.app import Message

from federation.round_progress import ProgressGrid
from strategies import keys
from strategies.identity import identity_message_content


class FakeTime:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps = 0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds


def _queries(grid, group: str = "7") -> list[Message]:
    return [Message(content=identity_message_content(), dst_node_id=node, message_type=keys.IDENTITY_MESSAGE_TYPE,
                    group_id=group) for node in grid.get_node_ids()]


def _declared(replies: list[Message]) -> list[tuple[int, str]]:
    return [(int(r.metadata.src_node_id), r.content[keys.IDENTITY_KEY][keys.CLIENT_ID_FIELD]) for r in replies]


def _progress_grid(grid, interval_s: float) -> tuple[ProgressGrid, list[str], FakeTime]:
    lines: list[str] = []
    fake = FakeTime()
    return ProgressGrid(grid, progress=lines.append, interval_s=interval_s, clock=fake.clock, sleep=fake.sleep), lines, fake


def test_a_short_round_prints_nothing_and_returns_what_flower_s_wait_returns(
    small_config, data_dir, grid_type, server_identity
):
    grid = grid_type(small_config, data_dir)
    expected = _declared(list(grid.send_and_receive(_queries(grid), timeout=30)))
    progress, lines, fake = _progress_grid(grid, interval_s=10)
    replies = progress.send_and_receive(_queries(grid), timeout=30)
    assert _declared(replies) == expected and len(expected) == 3
    assert lines == [] and fake.sleeps == 0  # every reply at the first pull


def test_a_long_round_reports_replies_at_most_once_per_interval_and_keeps_its_timeout(
    small_config, data_dir, grid_type, server_identity
):
    grid = grid_type(small_config, data_dir)
    silent = grid.node_of(2)
    expected = [pair for pair in _declared(list(grid.send_and_receive(_queries(grid), timeout=30))) if pair[0] != silent]
    grid.silent.add(silent)
    grid.replies_per_pull = 1  # the two answering nodes' replies come one per pull
    grid.pull_interval = 1.0
    progress, lines, fake = _progress_grid(grid, interval_s=10)
    start = fake.now
    replies = progress.send_and_receive(_queries(grid), timeout=35)
    assert _declared(replies) == expected  # the same replies, in arrival order
    assert 35 <= fake.now - start < 36  # gave up at the timeout, as Flower's loop does
    assert fake.sleeps == 35  # one pull per second
    assert lines == [f"[waiting] query.identity round 7: 2/3 replies after {s} s (timeout 35 s)" for s in (10, 20, 30)]


def test_a_slow_round_that_completes_reports_what_has_arrived_and_failed(
    small_config, data_dir, grid_type, server_identity
):
    grid = grid_type(small_config, data_dir)
    grid.dead.add(grid.node_of(0))  # an error reply: counted as a reply, and as failed
    grid.replies_per_pull = 1
    grid.pull_interval = 6.0
    progress, lines, fake = _progress_grid(grid, interval_s=5)
    replies = progress.send_and_receive(_queries(grid, group="identity"), timeout=None)
    assert len(replies) == 3 and sum(reply.has_error() for reply in replies) == 1
    assert fake.sleeps == 2  # the third reply arrives at the third pull, 12 s after the push
    # 0 s: 1/3, below the interval; 6 s: 2/3, a line; 12 s: 3/3, done before a second line
    assert lines == ["[waiting] query.identity: 2/3 replies (1 failed) after 6 s"]


def test_the_interval_must_be_positive(small_config, data_dir, grid_type):
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        ProgressGrid(grid_type(small_config, data_dir), progress=print, interval_s=0)
