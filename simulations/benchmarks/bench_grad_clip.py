"""Does bounding each local SGD step (config ``grad-clip-norm``) keep a ticket's training from collapsing?

It retrains the tickets of finished runs, same ticket, same θ0, same client sampling and local
data order, changing only ``grad-clip-norm``: each run directory is copied, its training (summary,
weights, report, the training rows of ``metrics.jsonl``) is dropped, ``grad-clip-norm`` is written
into the copy's ``config.json`` and ``dppt simulate --resume`` trains every variant the run trained.
The search is not rerun, so no ε is spent and the ticket is the recorded one. The original run is
the ``recorded`` arm (it trained without a bound: ``grad-clip-norm`` did not exist); ``--clips 0``
reruns that arm to show the retraining reproduces it.

    python -m simulations.benchmarks.bench_grad_clip --data-dir DIR --runs ROOT [--clips 20]

``ROOT`` is a folder of finished runs, e.g. the work folder of ``bench_ticket_quality`` (its
``<cell>/sweep/epsilon-*`` and ``<cell>/<column>`` run directories). It writes
``results/grad_clip.json`` and ``results/grad_clip.md`` after every run, so a stopped benchmark
keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from federation.layout import CONFIG_FILE, DENSE_WEIGHTS_FILE, METRICS_FILE, SUMMARY_FILE, WEIGHTS_FILE
from simulations.benchmarks.process_memory import run_measured
from simulations.benchmarks.tables import mean_sd
from simulations.report.outputs import HTML_FILE, MARKDOWN_FILE, PLOTS_DIR

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "grad_clip"
TRAINING_OUTPUTS = (SUMMARY_FILE, WEIGHTS_FILE, DENSE_WEIGHTS_FILE, MARKDOWN_FILE, HTML_FILE, PLOTS_DIR)
COLUMN_OF = {  # (run folder, variant) -> bench_ticket_quality's column
    ("epsilon-inf", "dense"): "dense", ("epsilon-inf", "dp_ticket"): "nonprivate",
    ("epsilon-inf", "random_ticket"): "random",
}


def _column(run: Path, variant: str) -> str:
    if (run.name, variant) in COLUMN_OF:
        return COLUMN_OF[(run.name, variant)]
    if run.name.startswith("epsilon-"):
        return f"dp-{run.name.removeprefix('epsilon-')}"
    return run.name


def finished_runs(root: Path) -> list[Path]:
    """Every run directory under ``root`` whose run finished (it has ``summary.json``), in path order."""
    return sorted(path.parent for path in root.rglob(SUMMARY_FILE) if (path.parent / CONFIG_FILE).exists())


def retraining_copy(run: Path, dest: Path, *, grad_clip_norm: float) -> None:
    """Copy ``run`` to ``dest`` without its training, ready for ``dppt simulate --resume`` at ``grad_clip_norm``."""
    shutil.copytree(run, dest)
    for name in TRAINING_OUTPUTS:
        path = dest / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    metrics = dest / METRICS_FILE
    rows = [line for line in metrics.read_text().splitlines(keepends=True) if json.loads(line).get("phase") != "train"]
    metrics.write_text("".join(rows))
    config = json.loads((dest / CONFIG_FILE).read_text())
    config["grad-clip-norm"] = grad_clip_norm
    (dest / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")


def first_round_accuracy(run: Path) -> dict[str, float]:
    """Each variant's test accuracy after its first training round (a collapsed training stays near 0.1)."""
    out: dict[str, float] = {}
    for line in (run / METRICS_FILE).read_text().splitlines():
        row = json.loads(line)
        if row.get("phase") == "train" and row.get("kind") == "server-eval" and row.get("round") == 1:
            out[row["variant"]] = row["accuracy"]
    return out


def _markdown(record: dict) -> list[str]:
    arms = ["recorded", *[f"clip-{c:g}" for c in record["clips"]]]
    lines = [
        "# Local gradient bound against collapsed training (`grad-clip-norm`)", "",
        f"`{record['command']}` ({record['date']}, {record['machine']}). Each ticket of a finished run is retrained",
        "from the same θ0 with the same client sampling and data order; only `grad-clip-norm` changes. `recorded` is",
        "the original run (no bound). Test accuracy after the last round; in brackets, after the first.", "",
        "| run | column | " + " | ".join(arms) + " |",
        "|---|---|" + "---|" * len(arms),
    ]
    for row in record["rows"]:
        cells = [f"{row[a]:.4f} ({row[f'{a}-round-1']:.4f})" if a in row else "" for a in arms]
        lines.append(f"| {row['run']} | {row['column']} | " + " | ".join(cells) + " |")
    lines += ["", "Mean ± sd over the runs of each column:", "", "| column | " + " | ".join(arms) + " |",
              "|---|" + "---|" * len(arms)]
    for column in dict.fromkeys(row["column"] for row in record["rows"]):
        rows = [row for row in record["rows"] if row["column"] == column]
        lines.append(f"| {column} | " + " | ".join(mean_sd([r[a] for r in rows if a in r]) for a in arms) + " |")
    return lines


def _write(record: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{NAME}.json").write_text(json.dumps(record, indent=2) + "\n")
    (RESULTS / f"{NAME}.md").write_text("\n".join(_markdown(record)) + "\n")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_grad_clip", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="dataset root (the runs' own data)")
    parser.add_argument("--runs", required=True, type=Path, help="folder of finished run directories")
    parser.add_argument("--clips", default="20", help="comma-separated grad-clip-norm values (0 = off), default 20")
    args = parser.parse_args(argv)
    try:
        clips = [float(c) for c in args.clips.split(",")]
    except ValueError:
        parser.error(f"--clips must be comma-separated numbers. Found {args.clips!r}.")
    if any(c < 0 for c in clips):
        parser.error(f"--clips must be numbers >= 0 (0 = off). Found {args.clips!r}.")
    runs = finished_runs(args.runs)
    if not runs:
        parser.error(f"--runs: no finished run directory (one with {SUMMARY_FILE}) under '{args.runs}'.")
    record = {"command": "python -m simulations.benchmarks.bench_grad_clip --data-dir DIR --runs ROOT --clips "
                         + args.clips,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": f"{platform.machine()}, {platform.system()}, Python {platform.python_version()}",
              "clips": clips, "rows": []}
    work = Path(tempfile.mkdtemp(prefix="dppt-bench-grad-clip-"))
    for index, run in enumerate(runs, 1):
        name = str(run.relative_to(args.runs))
        summary = json.loads((run / SUMMARY_FILE).read_text())
        first = first_round_accuracy(run)
        rows = {variant: {"run": name, "column": _column(run, variant), "recorded": accuracy,
                          "recorded-round-1": first.get(variant, float("nan"))}
                for variant, accuracy in summary["accuracy"].items() if accuracy is not None}
        if (run.name, "dp_ticket") in COLUMN_OF and "nonprivate_ticket" in rows:
            rows.pop("nonprivate_ticket")  # a non-private search's one ticket, trained once
        for clip in clips:
            dest = work / f"{name.replace('/', '--')}--clip-{clip:g}"
            retraining_copy(run, dest, grad_clip_norm=clip)
            print(f"[{index}/{len(runs)}] {name}: retraining at grad-clip-norm {clip:g}", flush=True)
            measured = run_measured([sys.executable, "-m", "simulations.cli", "simulate", "--resume", str(dest),
                                     "--data-dir", args.data_dir])
            if measured.returncode != 0:
                raise RuntimeError(f"retraining {name} at grad-clip-norm {clip:g} failed (exit"
                                   f" {measured.returncode}); see {dest}")
            again = json.loads((dest / SUMMARY_FILE).read_text())["accuracy"]
            again_first = first_round_accuracy(dest)
            for variant, row in rows.items():
                row[f"clip-{clip:g}"] = again[variant]
                row[f"clip-{clip:g}-round-1"] = again_first.get(variant, float("nan"))
        record["rows"].extend(rows.values())
        _write(record)
    print("\n".join(_markdown(record)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
