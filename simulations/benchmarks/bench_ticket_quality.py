"""Issue 12's benchmark: is the DP ticket worth its privacy at 95-98% conv sparsity, on 100 clients?

For each cell (dataset, conv sparsity, seed) it trains, the same way (5 masked-FedAvg rounds, half
of the 100 clients per round):

- ``dppt sweep --epsilons inf,0.5,1,2``: the DP ticket at record-level ε 0.5, 1 and 2 per client
  (the main job's search: SynFlow prior, ERK budgets, Laplace library vote, connected), the
  non-private ticket (ε = inf, the same search without noise), and, trained once by the ε = inf
  run, the dense model and a random ticket of the non-private ticket's per-layer structure;
- ``dppt simulate --set score=synflow``: the free prior alone (data-free library too, ε = 0);
- ``dppt simulate --set score=magnitude --set prior=magnitude``: a magnitude ticket (ε = 0);
- ``dppt simulate --set kernel-votes=true --set mechanism=gaussian-topk --set clip-mode=l2 --set
  budget-accountant=rdp``: the DP ticket whose kernels are voted too (``dp-1-kv``): the SynFlow prior
  refined where a majority of the Gaussian kernel votes agree, record-level (ε, δ) = (1, 1e-5) per
  client enforced on Rényi DP (the Laplace columns are (ε, 0) by basic composition).

It writes ``results/ticket_quality.json`` and ``results/ticket_quality.md`` after every cell, so a
stopped benchmark keeps what it measured, and ``--resume`` runs only the missing cells (and, in a
recorded cell, the single runs of a column added since). Cells run in
the order that matters most: MNIST at 0.98 (the issue's goal), Fashion-MNIST at 0.98, then 0.95.

    python -m simulations.benchmarks.bench_ticket_quality --data-dir DIR [--datasets mnist,fashion-mnist]
        [--sparsities 0.98,0.95] [--seeds 0,1,2] [--epsilons inf,0.5,1,2] [--train-rounds 5] [--resume]
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
NAME = "ticket_quality"
SETTINGS = [
    "num-clients=100", "partition=dirichlet", "alpha=0.5", "model=conv4", "search-rounds=5", "hold-rounds=2",
    "train-rounds=5", "fraction-train=0.5", "min-replies=10", "score-examples=128", "max-examples-per-client=0",
]
EPSILONS = ("inf", "0.5", "1", "2")
TRAIN_ROUNDS = 5
FREE = {  # data-free tickets: one `dppt simulate` each, trained alone
    "prior": ["score=synflow", "reference-search=false", "baselines=false"],
    "magnitude": ["score=magnitude", "prior=magnitude", "reference-search=false", "baselines=false"],
}
SINGLE = {  # one `dppt simulate` each, trained alone: the data-free tickets, then the kernel-voted DP one
    **FREE,
    "dp-1-kv": ["kernel-votes=true", "mechanism=gaussian-topk", "clip-mode=l2", "budget-accountant=rdp",
                "epsilon=1", "reference-search=false", "baselines=false"],
}
COLUMNS = ("dense", "dp-0.5", "dp-1", "dp-2", "dp-1-kv", "nonprivate", "prior", "magnitude", "random")


def _sets(settings: list[str]) -> list[str]:
    return [x for s in settings for x in ("--set", s)]


def _settings(train_rounds: int) -> list[str]:
    """:data:`SETTINGS` with ``train-rounds`` set to ``train_rounds``."""
    return [s if not s.startswith("train-rounds=") else f"train-rounds={train_rounds}" for s in SETTINGS]


def _cell(data_dir: str, settings: list[str], epsilons: list[str], dataset: str, sparsity: str, seed: int,
          root: Path) -> dict:
    base = [*settings, f"dataset={dataset}", f"sparsity={sparsity}", f"seed={seed}"]
    out = root / f"{dataset}-{sparsity}-seed{seed}"
    row: dict = {"dataset": dataset, "sparsity": float(sparsity), "seed": seed, "wall-s": {}, "peak-rss-gib": {}}
    measured = run_measured([sys.executable, "-m", "simulations.cli", "sweep", "--data-dir", data_dir,
                             "--out", str(out / "sweep"), "--epsilons", ",".join(epsilons), *_sets(base)])
    if measured.returncode != 0:
        raise RuntimeError(f"the sweep of {out.name} failed (exit {measured.returncode}); see {out / 'sweep'}")
    row["wall-s"]["sweep"], row["peak-rss-gib"]["sweep"] = round(measured.wall_s, 1), measured.peak_rss_gib
    for eps in epsilons:
        summary = json.loads((out / "sweep" / f"epsilon-{eps}" / SUMMARY_FILE).read_text())
        acc = summary["accuracy"]
        row["nonprivate" if eps == "inf" else f"dp-{eps}"] = acc["dp_ticket"]
        row[f"epsilon-spent-{eps}"] = summary["epsilon"]["record"]["max"]
        row[f"rounds-{eps}"] = f"{summary['search']['rounds-completed']}/{summary['search']['rounds-planned']}"
        if eps == "inf":
            row["dense"], row["random"] = acc.get("dense"), acc.get("random_ticket")
        if eps == "1":
            row["conv-sparsity"], row["paths"] = summary["sparsity"]["conv"], summary["sparsity"]["paths"]
            row["hold-jaccard"] = summary["search"].get("last-round-jaccard")
    _singles(data_dir, row, base, out)
    return row


def _singles(data_dir: str, row: dict, base: list[str], out: Path) -> None:
    """Run the cell's single-simulation columns that ``row`` does not hold yet, filling ``row``."""
    for name, extra in SINGLE.items():
        if name in row:
            continue
        measured = run_measured([sys.executable, "-m", "simulations.cli", "simulate", "--data-dir", data_dir,
                                 "--out", str(out / name), *_sets([*base, *extra])])
        if measured.returncode != 0:
            raise RuntimeError(f"the {name} run of {out.name} failed (exit {measured.returncode}); see {out / name}")
        summary = json.loads((out / name / SUMMARY_FILE).read_text())
        row[name] = summary["accuracy"]["dp_ticket"]
        row[f"paths-{name}"] = summary["sparsity"]["paths"]
        row["wall-s"][name], row["peak-rss-gib"][name] = round(measured.wall_s, 1), measured.peak_rss_gib


def _spread(values: list) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "n/a"
    if len(present) == 1:
        return f"{present[0]:.4f} (1 seed)"
    return f"{statistics.mean(present):.4f} ± {statistics.stdev(present):.4f}"


def _markdown(record: dict) -> list[str]:
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    lines = [
        "# Tickets worth their privacy? 100 clients, Dirichlet 0.5, conv sparsity 0.95 and 0.98",
        "",
        f"Command: `python -m simulations.benchmarks.bench_ticket_quality --data-dir DIR {record['args']}`;"
        f" started {record['started']}; {record['cpus']} CPU cores, a machine shared with other work (wall"
        " times are loaded). Settings: " + " ".join(f"`{s}`" for s in record["settings"]) + ". DP columns: record-level"
        " ε per client for the whole search (basic composition, δ = 0); prior and magnitude are data-free"
        " (ε = 0); dp-1-kv votes the kernels too (Gaussian, L2-clipped, (1, 1e-5) on RDP); random copies"
        " the non-private ticket's per-layer counts with random kernels.",
        "",
        "| dataset | sparsity | seed | " + " | ".join(COLUMNS) + " | conv sparsity | kept paths (ε 1) | wall s | peak RSS GiB |",
        "|---|---|---|" + "---|" * (len(COLUMNS) + 4),
    ]
    for r in record["rows"]:
        lines.append(f"| {r['dataset']} | {r['sparsity']} | {r['seed']} | " + " | ".join(fmt(r.get(c)) for c in COLUMNS)
                     + f" | {fmt(r.get('conv-sparsity'))} | {r.get('paths', 0):.3g} | {sum(r['wall-s'].values()):.0f}"
                     f" | {max(r['peak-rss-gib'].values()):.2f} |")
    lines += ["", "| dataset | sparsity | seeds | " + " | ".join(COLUMNS) + " |", "|---|---|---|" + "---|" * len(COLUMNS)]
    cells = dict.fromkeys((r["dataset"], r["sparsity"]) for r in record["rows"])
    for dataset, sparsity in cells:
        mine = [r for r in record["rows"] if (r["dataset"], r["sparsity"]) == (dataset, sparsity)]
        lines.append(f"| {dataset} | {sparsity} | {len(mine)} | " + " | ".join(_spread([r.get(c) for r in mine]) for c in COLUMNS) + " |")
    return lines


def _name(train_rounds: int) -> str:
    """The results' file name: ``ticket_quality``, or ``ticket_quality_<N>rounds`` for longer training."""
    return NAME if train_rounds == TRAIN_ROUNDS else f"{NAME}_{train_rounds}rounds"


def _write(record: dict, name: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text("\n".join(_markdown(record)) + "\n")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--datasets", default="mnist,fashion-mnist")
    parser.add_argument("--sparsities", default="0.98,0.95")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epsilons", default=",".join(EPSILONS), help="the sweep's ε; inf gives the non-private,"
                        " dense and random tickets")
    parser.add_argument("--train-rounds", type=int, default=TRAIN_ROUNDS, help="masked-FedAvg rounds of every"
                        " ticket; another than 5 writes results/ticket_quality_<N>rounds.*")
    parser.add_argument("--resume", action="store_true", help="keep the recorded cells and run only the missing ones")
    args = parser.parse_args(argv)
    if args.train_rounds < 1:
        parser.error(f"--train-rounds must be >= 1. Found {args.train_rounds}.")
    epsilons = args.epsilons.split(",")
    if "inf" not in epsilons:
        parser.error(f"--epsilons must hold inf (it trains the non-private, dense and random tickets). Found {args.epsilons}.")
    name, settings = _name(args.train_rounds), _settings(args.train_rounds)
    recorded = RESULTS / f"{name}.json"
    if args.resume and recorded.exists():
        record = json.loads(recorded.read_text())
    else:
        record = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.platform(),
                  "cpus": os.cpu_count(), "settings": settings, "rows": []}
    record["args"] = " ".join(f"--{k} {v}" for k, v in [("datasets", args.datasets), ("sparsities", args.sparsities),
                                                          ("seeds", args.seeds), ("epsilons", args.epsilons),
                                                          ("train-rounds", args.train_rounds)])
    root = Path(tempfile.mkdtemp(prefix="dppt-bench-quality-"))
    for row in record["rows"]:  # columns added since a cell was recorded
        if any(column not in row for column in SINGLE):
            base = [*record["settings"], f"dataset={row['dataset']}", f"sparsity={row['sparsity']}", f"seed={row['seed']}"]
            try:
                _singles(args.data_dir, row, base, root / f"{row['dataset']}-{row['sparsity']}-seed{row['seed']}")
            except RuntimeError as err:
                print(f"bench_ticket_quality: {err}", file=sys.stderr)
                return 1
            print(json.dumps(row), flush=True)
            _write(record, name)
    done = {(r["dataset"], r["sparsity"], r["seed"]) for r in record["rows"]}
    for sparsity in args.sparsities.split(","):
        for dataset in args.datasets.split(","):
            for seed in map(int, args.seeds.split(",")):
                if (dataset, float(sparsity), seed) in done:
                    continue
                try:
                    row = _cell(args.data_dir, record["settings"], epsilons, dataset, sparsity, seed, root)
                except RuntimeError as err:
                    print(f"bench_ticket_quality: {err}", file=sys.stderr)
                    return 1
                record["rows"].append(row)
                print(json.dumps(row), flush=True)
                _write(record, name)
    print("\n".join(_markdown(record)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
