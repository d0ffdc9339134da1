"""The issue-5 benchmark: DP ticket accuracy against ε on 100 clients, with dense, non-private and
random references, wall time and peak memory.

Runs ``dppt sweep`` (one run per ε; the references are trained once, by the ε = inf run) for each
dataset and writes ``results/dp_search.json`` and ``results/dp_search.md``.

    python -m simulations.benchmarks.bench_dp_search --data-dir DIR [--datasets mnist,fashion-mnist]

The fixed settings (below) are the benchmark's: MNIST and Fashion-MNIST, 100 clients, Dirichlet
alpha = 0.5, the default Conv4 (every 3x3 conv a pattern layer), 90% of conv weights pruned.
"""

from __future__ import annotations

import argparse
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

SETTINGS = [
    "num-clients=100", "partition=dirichlet", "alpha=0.5", "sparsity=0.9", "model=conv4",
    "search-rounds=5", "hold-rounds=2", "train-rounds=5", "fraction-train=0.5", "min-replies=10",
    "score-examples=128", "max-examples-per-client=0", "client-cpus=1",
]
SWEEPS = {"mnist": "0.5,1,2,4,8,inf", "fashion-mnist": "1,inf"}


def _table(rows: list[dict]) -> list[str]:
    lines = ["| dataset | ε (record, per client, whole search) | DP ticket | non-private ticket | dense | random ticket"
             " | conv sparsity | ε spent (max) | search rounds |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
        lines.append(f"| {r['dataset']} | {r['epsilon']} | {fmt(r['dp_ticket'])} | {fmt(r['nonprivate_ticket'])}"
                     f" | {fmt(r['dense'])} | {fmt(r['random_ticket'])} | {fmt(r['conv-sparsity'])}"
                     f" | {r['epsilon-spent']} | {r['rounds']} |")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--datasets", default=",".join(SWEEPS), help="comma-separated subset of %(default)s")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="dppt-bench-dp-"))
    rows, runs = [], {}
    for dataset in args.datasets.split(","):
        out = root / dataset
        sets = [x for s in [*SETTINGS, f"dataset={dataset}"] for x in ("--set", s)]
        measured = run_measured([sys.executable, "-m", "simulations.cli", "sweep", "--data-dir", args.data_dir,
                                 "--out", str(out), "--epsilons", SWEEPS[dataset], *sets])
        if measured.returncode != 0:
            print(f"dppt sweep failed on {dataset} with exit code {measured.returncode}", file=sys.stderr)
            return measured.returncode
        sweep = json.loads((out / "sweep.json").read_text())
        summaries = {p.parent.name: json.loads(p.read_text()) for p in out.glob(f"epsilon-*/{SUMMARY_FILE}")}
        refs = dict(next(s["accuracy"] for s in summaries.values() if s["accuracy"].get("dense") is not None))
        if "epsilon-inf" in summaries:  # the ε = inf run's DP ticket is the non-private ticket
            refs["nonprivate_ticket"] = summaries["epsilon-inf"]["accuracy"]["dp_ticket"]
        for label, summary in sorted(summaries.items(), key=lambda kv: float(kv[0].split("-", 1)[1])):
            eps = label.split("-", 1)[1]
            acc = summary["accuracy"]
            rows.append({
                "dataset": dataset, "epsilon": eps, "dp_ticket": acc["dp_ticket"],
                "nonprivate_ticket": refs.get("nonprivate_ticket"),
                "dense": refs["dense"], "random_ticket": refs["random_ticket"],
                "conv-sparsity": summary["sparsity"]["conv"], "epsilon-spent": summary["epsilon"]["record"]["max"],
                "rounds": f"{summary['search']['rounds-completed']}/{summary['search']['rounds-planned']}",
                "wall-time-s": summary["wall-time-s"],
            })
        runs[dataset] = {"wall-time-s (whole sweep)": round(measured.wall_s, 1),
                         "peak-rss-gib (process tree)": measured.peak_rss_gib, "sweep": sweep, "out": str(out)}
    figures = {"settings": SETTINGS, "sweeps": SWEEPS, "rows": rows, "runs": runs, "cpus": os.cpu_count(),
               "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M")}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dp_search.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    md = ["# DP pattern-ticket search: accuracy against ε (100 clients)", "",
          "Command: `python -m simulations.benchmarks.bench_dp_search --data-dir DIR`; settings: "
          + " ".join(f"`{s}`" for s in SETTINGS) + f"; {os.cpu_count()} CPU cores.", "", *_table(rows), ""]
    for dataset, run in runs.items():
        md.append(f"- {dataset}: whole sweep {run['wall-time-s (whole sweep)']} s, peak RSS of the process tree"
                  f" {run['peak-rss-gib (process tree)']} GiB.")
    (RESULTS / "dp_search.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
