"""Tickets at 98% conv sparsity over seeds: do connected tickets and ERK budgets stop the collapse?

Issue 12 recorded, at the main job's defaults with only ``sparsity=0.98`` and ``seed`` changed,
DP ticket .5721 ± .4085 over seeds 0-2, one seed at chance for every federated ticket (no
input->output path survived). This runs the same command (``dppt simulate``, one run per seed
and variant: DP ticket, non-private reference, dense and a random ticket of the same per-layer
structure, all trained the same way) for each ``--variants`` entry, and writes
``results/connected_tickets.json`` and ``results/connected_tickets.md``.

    python -m simulations.benchmarks.bench_connected_tickets --data-dir DIR [--seeds 0,1,2]
        [--variants erk,uniform,erk-synflow-prior,free-synflow,gaussian-refine] [--sparsity 0.98]
        [--results NAME] [--append]

Variants: ``erk`` (the default: ERK per-layer budgets, connected kernels), ``uniform`` (the old
uniform per-layer density, now connected), ``erk-synflow`` (the data-free ticket: ``score=synflow``,
ε = 0). Every ticket the search publishes is connected now; the random ticket copies the per-layer
counts with random kernels, so it may not be.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from federation.layout import SUMMARY_FILE
from simulations.benchmarks.process_memory import run_measured

RESULTS = Path(__file__).resolve().parent / "results"
VARIANTS = {
    "erk": ["layer-allocation=erk"],
    "uniform": ["layer-allocation=uniform"],
    "erk-synflow-prior": ["layer-allocation=erk", "prior=synflow"],
    "free-synflow": ["layer-allocation=erk", "prior=synflow", "score=synflow"],
    # Gaussian kernel votes under RDP refining the SynFlow prior (docs/design.md 3 and 5.1).
    "gaussian-refine": ["layer-allocation=erk", "prior=synflow", "mechanism=gaussian-topk", "clip-mode=l2",
                        "budget-accountant=rdp", "kernel-votes=true"],
}
COLUMNS = ("dp_ticket", "nonprivate_ticket", "dense", "random_ticket")


def _spread(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "n/a"
    if len(present) == 1:
        return f"{present[0]:.4f}"
    return f"{statistics.mean(present):.4f} ± {statistics.stdev(present):.4f}"


def _markdown(rows: list[dict], args: argparse.Namespace, started: str) -> list[str]:
    lines = [
        f"# Tickets at conv sparsity {args.sparsity} over seeds {args.seeds} (main-job defaults otherwise)",
        "",
        f"Command: `python -m simulations.benchmarks.bench_connected_tickets --data-dir DIR --seeds {args.seeds}"
        f" --variants {args.variants} --sparsity {args.sparsity} --results {args.results}`; started {started};"
        f" {os.cpu_count()} CPU cores, a machine shared with other work (wall times are loaded).",
        "",
        "| variant | seed | DP ticket (ε = 1) | non-private ticket | dense | random ticket | conv sparsity | kept paths |"
        " last-round Jaccard | wall s | peak RSS GiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    for r in rows:
        lines.append(f"| {r['variant']} | {r['seed']} | {' | '.join(fmt(r[c]) for c in COLUMNS)}"
                     f" | {fmt(r['conv-sparsity'])} | {r['paths']:.3g} | {fmt(r.get('hold-jaccard'))} | {r['wall-s']:.0f}"
                     f" | {r['peak-rss-gib']:.2f} |")
    lines += ["", "| variant | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        lines.append(f"| {variant} (mean ± sd, {len(mine)} seeds) | "
                     + " | ".join(_spread([r[c] for r in mine]) for c in COLUMNS) + " |")
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default="erk,uniform", help=f"comma-separated subset of {','.join(VARIANTS)}")
    parser.add_argument("--sparsity", default="0.98")
    parser.add_argument("--append", action="store_true", help="add to the recorded results instead of replacing them")
    parser.add_argument("--results", default="connected_tickets",
                        help="name of the results files under results/ (NAME.json and NAME.md)")
    args = parser.parse_args(argv)
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants must be a subset of {','.join(VARIANTS)}. Found {unknown}.")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    root = Path(tempfile.mkdtemp(prefix="dppt-bench-connected-"))
    rows: list[dict] = []
    recorded = RESULTS / f"{args.results}.json"
    if args.append and recorded.exists():  # keep earlier runs' rows (a rerun of a variant and seed replaces its row)
        done = {(v, s) for v in args.variants.split(",") for s in map(int, args.seeds.split(","))}
        rows = [r for r in json.loads(recorded.read_text())["rows"] if (r["variant"], r["seed"]) not in done]
    for variant in args.variants.split(","):
        for seed in args.seeds.split(","):
            out = root / f"{variant}-seed{seed}"
            settings = [f"sparsity={args.sparsity}", f"seed={seed}", *VARIANTS[variant]]
            sets = [x for s in settings for x in ("--set", s)]
            measured = run_measured([sys.executable, "-m", "simulations.cli", "simulate", "--data-dir", args.data_dir,
                                     "--out", str(out), *sets])
            if measured.returncode != 0:
                print(f"bench_connected_tickets: {variant} seed {seed} failed (exit {measured.returncode});"
                      f" its run directory is {out}", file=sys.stderr)
                return 1
            summary = json.loads((out / SUMMARY_FILE).read_text())
            row = {"variant": variant, "seed": int(seed), **{c: summary["accuracy"].get(c) for c in COLUMNS},
                   "conv-sparsity": summary["sparsity"]["conv"], "paths": summary["sparsity"]["paths"],
                   "wall-s": measured.wall_s, "peak-rss-gib": measured.peak_rss_gib,
                   "epsilon-record-max": summary["epsilon"]["record"]["max"],
                   "epsilon-record-rdp": summary["epsilon"].get("rdp", {}).get("record-max"),
                   "hold-jaccard": summary["search"].get("last-round-jaccard")}
            rows.append(row)
            print(json.dumps(row), flush=True)
            _write(rows, args, started)  # after every run: a stopped benchmark keeps what it measured
    print("\n".join(_markdown(rows, args, started)))
    return 0


def _write(rows: list[dict], args: argparse.Namespace, started: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    record = {"started": started, "machine": platform.platform(), "cpus": os.cpu_count(),
              "sparsity": float(args.sparsity), "rows": rows}
    (RESULTS / f"{args.results}.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / f"{args.results}.md").write_text("\n".join(_markdown(rows, args, started)) + "\n")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
