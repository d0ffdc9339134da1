"""Where a run's time goes: timings for the benchmarks, written only where ``DPPT_PROFILE_DIR`` is set.

``simulations/benchmarks/bench_rounds.py`` sets ``DPPT_PROFILE_DIR`` and reads what this module
writes there: one JSON line per handled message from every ClientApp process (its kind, wall and
CPU time, and the time spent in each :func:`span`: reading the data, rebuilding the model, the
work itself), and one per ``send_and_receive`` of the server (messages sent, replies, wall time).
Without the variable every function here is a no-op that costs one environment lookup.

The timings stay in a file on the machine that measured them: no reply carries them (a reply
holds index arrays and weights only, DESIGN.md 5.4b), so a device's timing is never released.
Clocks: ``time.time()`` for when (the benchmark matches client records to server rounds on one
machine), ``time.perf_counter()`` for how long, ``time.thread_time()`` for the CPU a handler used.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

__all__ = ["PROFILE_ENV", "message", "record_server_call", "span"]

PROFILE_ENV: Final = "DPPT_PROFILE_DIR"

_current: list[dict[str, Any]] = []  # the message being handled in this process (one at a time per actor)


def _folder() -> Path | None:
    value = os.environ.get(PROFILE_ENV, "").strip()
    return Path(value) if value else None


def _append(folder: Path, side: str, row: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{side}-{socket.gethostname()}-{os.getpid()}.jsonl"
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(row) + "\n")


@contextmanager
def message(kind: str) -> Iterator[None]:
    """Time one handled message (``kind``: vote, train, ...) and the spans inside it."""
    folder = _folder()
    if folder is None:
        yield
        return
    row: dict[str, Any] = {"kind": kind, "start": time.time(), "spans": {}}
    wall0, cpu0 = time.perf_counter(), time.thread_time()
    _current.append(row)
    try:
        yield
    finally:
        _current.pop()
        row["wall-s"] = time.perf_counter() - wall0
        row["cpu-s"] = time.thread_time() - cpu0
        _append(folder, "client", row)


@contextmanager
def span(name: str) -> Iterator[None]:
    """Add the time of the block to the current message's ``spans[name]`` (nothing outside :func:`message`)."""
    if not _current:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        spans = _current[-1]["spans"]
        spans[name] = spans.get(name, 0.0) + time.perf_counter() - start


def record_server_call(kind: str, *, start: float, wall_s: float, sent: int, replies: int) -> None:
    """One ``send_and_receive`` of the server: what it sent, when, how long it waited."""
    folder = _folder()
    if folder is not None:
        _append(folder, "server", {"kind": kind, "start": start, "wall-s": wall_s, "sent": sent, "replies": replies})
