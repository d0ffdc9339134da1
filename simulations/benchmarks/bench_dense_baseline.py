"""Wall time, peak memory and final accuracy of the default main job (dense FedAvg baseline).

Runs ``dppt simulate`` (any extra arguments are passed through) as a subprocess and samples the
resident memory of its whole process tree (the driver plus Ray's workers) every half second from
/proc. Prints the figures and writes ``results/dense_baseline.json``.

    python -m simulations.benchmarks.bench_dense_baseline --data-dir DIR [--set KEY=VALUE ...]
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _tree_rss_bytes(root: int) -> int:
    """Sum of RSS over ``root`` and all its descendants (Linux /proc)."""
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


def main(argv: list[str]) -> int:
    out = Path(tempfile.mkdtemp(prefix="dppt-bench-")) / "run"
    cmd = [sys.executable, "-m", "simulations.cli", "simulate", "--out", str(out), *argv]
    print("running:", " ".join(cmd), flush=True)
    start = time.time()
    proc = subprocess.Popen(cmd, start_new_session=True)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss_bytes(proc.pid))
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    stop.set()
    sampler.join()
    wall = time.time() - start
    if code != 0:
        print(f"dppt simulate failed with exit code {code}", file=sys.stderr)
        return code
    summary = json.loads((out / "summary.json").read_text())
    figures = {
        "command": " ".join(["dppt simulate", *argv]),
        "accuracy": summary["accuracy"],
        "rounds": summary["rounds-completed"],
        "wall-time-s (whole command, Ray start included)": round(wall, 1),
        "wall-time-s (server loop)": summary["wall-time-s"],
        "peak-rss-gib (driver + Ray workers, sampled every 0.5 s)": round(peak / 2**30, 2),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dense_baseline.json").write_text(json.dumps(figures, indent=2) + "\n")
    for key, value in figures.items():
        print(f"{key:<58} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
