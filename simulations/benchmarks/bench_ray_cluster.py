"""Wall time of one ``dppt simulate`` config on a private local Ray and on a two-node Ray cluster.

Both runs have the same config and the same total CPUs: ``local`` is dppt's default (a private
Ray of this machine's cores), ``cluster`` joins a head and a worker node of ``cores / 2`` CPUs each,
started on this machine by :class:`simulations.deploy.LocalRayCluster` (``ray-address``). On one
machine the two nodes share its cores, so this measures what the cluster path costs (joining,
scheduling across raylets), not a speed-up; that needs nodes on separate machines. Each run's
ε is checked to be the configured budget. Run from the repository root with the offline data::

    python -m simulations.benchmarks.bench_ray_cluster --data-dir DIR [--set KEY=VALUE ...]

It prints a table and writes ``simulations/benchmarks/results/ray_cluster.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from federation.layout import SUMMARY_FILE
from simulations.deploy import LocalRayCluster

RESULTS = Path(__file__).resolve().parent / "results" / "ray_cluster.json"
SETTINGS = ("num-clients=10", "partition=iid", "search-rounds=3", "hold-rounds=1", "train-rounds=2",
            "max-examples-per-client=500", "score-examples=256", "max-test-examples=2000", "epsilon=1")


def _simulate(out: Path, data_dir: str, settings: list[str]) -> dict[str, object]:
    command = [sys.executable, "-m", "simulations.cli", "simulate", "--out", str(out), "--data-dir", data_dir,
               *[arg for setting in settings for arg in ("--set", setting)]]
    begin = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - begin
    if done.returncode != 0:
        raise SystemExit(f"dppt simulate failed ({done.returncode}): {(done.stdout + done.stderr)[-2000:]}")
    summary = json.loads((out / SUMMARY_FILE).read_text())
    return {
        "wall-time-s (whole command: Ray start or join, report included)": round(wall, 1),
        "wall-time-s (pipeline)": summary["wall-time-s"],
        "epsilon-record-max": summary["epsilon"]["record"]["max"],
        "accuracy-dp-ticket": summary["accuracy"]["dp_ticket"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="dataset root holding MNIST/raw/*.gz (read-only is fine)")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                        help="extra config settings for both runs")
    args = parser.parse_args(argv)
    settings = [*SETTINGS, *args.overrides]
    cores = os.cpu_count() or 2
    work = Path(tempfile.mkdtemp(prefix="dppt-bench-ray-"))
    rows: dict[str, dict[str, object]] = {}
    rows["local (private Ray, 1 node)"] = {"nodes": 1, "cpus": cores, **_simulate(work / "local", args.data_dir, settings)}
    with LocalRayCluster(work / "ray", nodes=2, cpus_per_node=max(1, cores // 2)) as cluster:
        begin = time.perf_counter()
        cluster.start()
        started = time.perf_counter() - begin
        row = _simulate(work / "cluster", args.data_dir, [*settings, f"ray-address={cluster.address}"])
        rows["cluster (ray-address, 2 nodes)"] = {"nodes": 2, "cpus": 2 * max(1, cores // 2),
                                                  "cluster-start-s (not in the run's time)": round(started, 1), **row}
    budget = next(float(s.split("=", 1)[1]) for s in reversed(settings) if s.startswith("epsilon="))
    for name, row in rows.items():
        if not math.isclose(float(row["epsilon-record-max"]), budget, rel_tol=1e-9):
            raise SystemExit(f"{name}: ε record max {row['epsilon-record-max']} is not the budget {budget}")
    figures = {
        "command": " ".join(["python -m simulations.benchmarks.bench_ray_cluster --data-dir DIR",
                             *(f"--set {s}" for s in args.overrides)]),
        "settings": settings,
        "runs": rows,
        "machine": f"{cores} CPU cores, one machine (both nodes share it)",
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"settings: {' '.join(settings)}")
    for name, row in rows.items():
        print(f"{name:<32} " + "  ".join(f"{key} {value}" for key, value in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
