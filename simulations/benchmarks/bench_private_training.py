"""The issue-14 benchmark: DP-SGD ticket training against DP-SGD dense training at the same whole-run ε.

For each client count and seed it runs ``dppt simulate`` seven times (MNIST, Dirichlet 0.5, the
default conv4 at the default ticket sparsity and rounds), each training only the models it names
(``train-variants``), so that a DP-SGD budget is spent on one model:

- ``plain``: the DP search at ε = 1, then the DP ticket and the dense model trained without noise
  (the non-private references: dense, and the same ticket trained plainly);
- ``dp-dense`` at each total ε: a data-free search (``score=magnitude``, ε = 0, one round) and the
  dense model trained with DP-SGD at ``train-epsilon = total / 2``;
- ``dp-ticket`` at each total ε: the DP search at ε = 1, then the DP ticket trained with DP-SGD
  at ``train-epsilon = (total - 1) / 2``.

The split: the whole run is stated for one example replaced, the search's relation (DESIGN.md
5.1). DP-SGD's RDP figure is for one example added or removed; by group privacy (replace = remove,
then add) an add-or-remove (ε, δ) bound is a replace-one (2ε, (1 + e^ε)δ) one, so the whole run
is (ε_search + 2 ε_train, δ_search + (1 + e^ε_train) δ_train) by basic composition. ``train-delta``
is set so that the whole run's δ is 1e-5 (the Laplace votes have δ = 0).

    python -m simulations.benchmarks.bench_private_training --data-dir DIR [--clients 10,100] [--seeds 0,1,2] [--resume]

Writes ``results/private_training.json`` after every run (a partial benchmark keeps what it ran;
``--resume`` runs only the rows it lacks) and ``results/private_training.md`` at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from federation.layout import SUMMARY_FILE
from simulations.benchmarks.process_memory import run_measured
from simulations.benchmarks.tables import mean_sd

RESULTS = Path(__file__).resolve().parent / "results"
TOTALS = (2.0, 4.0, 8.0)
SEARCH_EPSILON = 1.0
WHOLE_DELTA = 1e-5
COMMON = ["dataset=mnist", "partition=dirichlet", "alpha=0.5", "reference-search=false"]


def train_delta(train_epsilon: float) -> float:
    """The ``train-delta`` whose replace-one figure (1 + e^ε) δ is the whole run's δ."""
    return WHOLE_DELTA / (1.0 + math.exp(train_epsilon))


def plans(clients: int, seed: int) -> list[tuple[str, float | None, list[str]]]:
    """(label, total ε or None, --set values) of the seven runs of one client count and seed."""
    base = [*COMMON, f"num-clients={clients}", f"seed={seed}", f"min-replies={max(2, clients // 10)}"]
    runs: list[tuple[str, float | None, list[str]]] = [
        ("plain", None, [*base, f"epsilon={SEARCH_EPSILON:g}", "train-variants=dense,dp_ticket"])]
    for total in TOTALS:
        dense_eps = total / 2
        runs.append(("dp-dense", total, [*base, "score=magnitude", "search-rounds=1", "hold-rounds=0",
                                         "train-variants=dense", "train-privacy=dp-sgd",
                                         f"train-epsilon={dense_eps:g}", f"train-delta={train_delta(dense_eps):.6g}"]))
        ticket_eps = (total - SEARCH_EPSILON) / 2
        runs.append(("dp-ticket", total, [*base, f"epsilon={SEARCH_EPSILON:g}", "train-variants=dp_ticket",
                                          "train-privacy=dp-sgd", f"train-epsilon={ticket_eps:g}",
                                          f"train-delta={train_delta(ticket_eps):.6g}"]))
    return runs


def _row(label: str, total: float | None, clients: int, seed: int, summary: dict[str, Any],
         measured: Any, sets: list[str]) -> dict[str, Any]:
    train = summary.get("train-epsilon") or {}
    return {
        "run": label, "total-epsilon": total, "clients": clients, "seed": seed, "settings": sets,
        "accuracy": summary["accuracy"], "conv-sparsity": summary["sparsity"]["conv"],
        "search-epsilon-max": summary["epsilon"]["record"]["max"],
        "train-epsilon-rdp-max": (train.get("rdp") or {}).get("record-max"),
        "whole-run": summary.get("whole-run"),
        "wall-time-s": round(measured.wall_s, 1), "peak-rss-gib": measured.peak_rss_gib,
    }


def table(rows: list[dict[str, Any]]) -> list[str]:
    """One line per client count and total ε: mean ± sd over the seeds that ran."""
    lines = ["| clients | whole-run ε (δ = 1e-5) | DP ticket, DP-SGD | dense, DP-SGD | non-private dense"
             " | DP ticket, plain SGD | seeds | wall s per run (ticket / dense) |", "|---|---|---|---|---|---|---|---|"]
    for clients in sorted({r["clients"] for r in rows}):
        mine = [r for r in rows if r["clients"] == clients]
        plain = [r for r in mine if r["run"] == "plain"]
        for total in TOTALS:
            ticket = [r for r in mine if r["run"] == "dp-ticket" and r["total-epsilon"] == total]
            dense = [r for r in mine if r["run"] == "dp-dense" and r["total-epsilon"] == total]
            if not ticket and not dense:
                continue
            walls = "/".join(f"{statistics.mean(r['wall-time-s'] for r in rs):.0f}" if rs else "n/a"
                             for rs in (ticket, dense))
            lines.append(
                f"| {clients} | {total:g} | {mean_sd([r['accuracy']['dp_ticket'] for r in ticket])}"
                f" | {mean_sd([r['accuracy']['dense'] for r in dense])}"
                f" | {mean_sd([r['accuracy']['dense'] for r in plain])}"
                f" | {mean_sd([r['accuracy']['dp_ticket'] for r in plain])}"
                f" | {len(ticket)}/{len(dense)} | {walls} |")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--clients", default="10,100")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows of results/private_training.json and run only the missing ones")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="dppt-bench-private-training-"))
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {"totals": TOTALS, "search-epsilon": SEARCH_EPSILON, "whole-delta": WHOLE_DELTA,
                               "common": COMMON, "rows": rows, "cpus": os.cpu_count(),
                               "python": platform.python_version(), "started": time.strftime("%Y-%m-%d %H:%M")}
    RESULTS.mkdir(exist_ok=True)
    done: set[tuple[int, int, str, float | None]] = set()
    if args.resume and (RESULTS / "private_training.json").is_file():
        earlier = json.loads((RESULTS / "private_training.json").read_text())
        rows.extend(earlier["rows"])
        figures["started"] = earlier.get("started", figures["started"])
        done = {(r["clients"], r["seed"], r["run"], r["total-epsilon"]) for r in rows}
    for clients in (int(c) for c in args.clients.split(",")):  # every seed of the smaller federation first
        for seed in (int(s) for s in args.seeds.split(",")):
            for i, (label, total, sets) in enumerate(plans(clients, seed)):
                if (clients, seed, label, total) in done:
                    continue
                out = root / f"c{clients}-s{seed}-{i}-{label}"
                print(f"[bench] {clients} clients, seed {seed}: {label} total ε {total}", flush=True)
                measured = run_measured([sys.executable, "-m", "simulations.cli", "simulate", "--data-dir",
                                         args.data_dir, "--out", str(out),
                                         *[x for s in sets for x in ("--set", s)]])
                if measured.returncode != 0:
                    print(f"dppt simulate failed ({label}, {clients} clients, seed {seed}): exit"
                          f" {measured.returncode}", file=sys.stderr)
                    return measured.returncode
                summary = json.loads(next(out.rglob(SUMMARY_FILE)).read_text())
                rows.append(_row(label, total, clients, seed, summary, measured, sets))
                figures["finished"] = time.strftime("%Y-%m-%d %H:%M")
                (RESULTS / "private_training.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    md = ["# Private ticket training: DP-SGD ticket against DP-SGD dense at the same whole-run ε", "",
          f"Command: `python -m simulations.benchmarks.bench_private_training --data-dir DIR --clients {args.clients}"
          f" --seeds {args.seeds}`; MNIST, Dirichlet 0.5, main-job defaults otherwise; search ε = {SEARCH_EPSILON:g}"
          " for the ticket, train-epsilon = (total - 1)/2 for the ticket and total/2 for dense (replace-one by group"
          f" privacy); {os.cpu_count()} CPU cores.", "", *table(rows), "",
          f"Peak RSS of the process tree, largest run: {max(r['peak-rss-gib'] for r in rows)} GiB."]
    (RESULTS / "private_training.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
