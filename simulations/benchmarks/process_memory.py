"""Run a command and sample the resident memory of its whole process tree (Linux /proc).

The figure is the peak, over samples every half second, of the RSS summed over the process and
all its descendants (the driver plus Ray's workers); shared pages are counted once per process,
so it over-states the true footprint.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Measured", "run_measured", "tree_rss_bytes"]


def tree_rss_bytes(root: int) -> int:
    """Sum of RSS over ``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            statm = Path(f"/proc/{entry}/statm").read_text().split()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        pid, ppid = int(entry), int(fields[1])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(statm[1]) * page
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total


@dataclass(frozen=True)
class Measured:
    returncode: int
    wall_s: float
    peak_rss_gib: float


def run_measured(cmd: list[str]) -> Measured:
    """Run ``cmd`` to completion (output passes through) and measure wall time and peak tree RSS."""
    print("running:", " ".join(cmd), flush=True)
    start = time.time()
    proc = subprocess.Popen(cmd, start_new_session=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_bytes(proc.pid))
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    stop.set()
    sampler.join()
    return Measured(code, time.time() - start, round(peak / 2**30, 2))
