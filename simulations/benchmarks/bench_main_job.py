"""Wall time, peak memory, accuracies and ε of the README's main job (``dppt simulate``, defaults).

Runs ``dppt simulate`` as a subprocess (extra arguments pass through), samples the memory of its
process tree, and writes ``results/main_job.json``.

    python -m simulations.benchmarks.bench_main_job --data-dir DIR [--set KEY=VALUE ...]
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from federation.layout import SUMMARY_FILE
from simulations.benchmarks.process_memory import run_measured

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str]) -> int:
    out = Path(tempfile.mkdtemp(prefix="dppt-bench-")) / "run"
    measured = run_measured([sys.executable, "-m", "simulations.cli", "simulate", "--out", str(out), *argv])
    if measured.returncode != 0:
        print(f"dppt simulate failed with exit code {measured.returncode}", file=sys.stderr)
        return measured.returncode
    summary = json.loads((out / SUMMARY_FILE).read_text())
    figures = {
        "command": " ".join(["dppt simulate", *argv]),
        "accuracy": summary["accuracy"],
        "conv-sparsity": summary["sparsity"]["conv"],
        "epsilon-record-max": summary["epsilon"]["record"]["max"],
        "search-rounds": f"{summary['search']['rounds-completed']}/{summary['search']['rounds-planned']}",
        "wall-time-s (whole command, Ray start and report included)": round(measured.wall_s, 1),
        "wall-time-s (pipeline)": summary["wall-time-s"],
        "peak-rss-gib (driver + Ray workers, sampled every 0.5 s)": measured.peak_rss_gib,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "run-dir": str(out),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "main_job.json").write_text(json.dumps(figures, indent=2) + "\n")
    for key, value in figures.items():
        print(f"{key:<62} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
