"""Where a run's time goes: search-round efficiency and per-message overheads at 10, 100 and 1000 clients.

Runs ``dppt simulate`` once per scale with ``DPPT_PROFILE_DIR`` set (:mod:`federation.profiling`):
every ClientApp process writes one line per handled message (wall and CPU time, and the time in
each span: ``data`` = finding the node's examples, ``model`` = rebuilding the model and loading
the message's weights and ticket, ``compute`` = scoring and voting, or training, ``log`` = the
device's fsynced privacy log), and the server one line per ``send_and_receive`` (messages, wall).
A client line belongs to the server call whose window holds its start (one machine, one clock).

For each round kind it reports

- efficiency = Σ client handler wall / (cores x round wall): 1.0 means the cores did nothing but
  the handlers' work while the server waited;
- per message: the mean of each span, and the engine's share, (cores x round wall - Σ handler
  wall) / messages: Ray scheduling, (de)serialisation, the server's pull interval, idle cores;
- the pipeline's wall split into the server's waits (votes, identity, training), its own test-set
  evaluations, and the rest (Ray start, the server's aggregation, the data-free prior, the report).

Peak memory is the RSS summed over the process tree (driver + Ray workers, sampled every 0.5 s).
The scales (``SCALES``) are the README's main job at 10 clients, and at 100 and 1000 clients short
runs (2 search rounds, 1 training round, no reference search or baselines) whose rounds sample
100 clients, with ``score-examples`` below the smaller partitions (256 of about 600, 32 of about
60) so that every sampled client votes. Run from the repository root::

    python -m simulations.benchmarks.bench_rounds --data-dir DIR [--scales 10,100,1000] [--set K=V ...]

It prints a table per scale and writes ``simulations/benchmarks/results/rounds.json`` (``--results``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from federation.layout import SUMMARY_FILE
from federation.profiling import PROFILE_ENV
from simulations.benchmarks.process_memory import run_measured

RESULTS = Path(__file__).resolve().parent / "results"
_SHORT = ("search-rounds=2", "hold-rounds=0", "train-rounds=1", "reference-search=false", "baselines=false")
SCALES: dict[int, tuple[str, ...]] = {
    10: (),  # the README's main job, every phase
    100: ("num-clients=100", "score-examples=256", *_SHORT),
    1000: ("num-clients=1000", "fraction-train=0.1", "score-examples=32", *_SHORT),
}
SPANS = ("data", "model", "compute", "log")


def _read(folder: Path, side: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob(f"{side}-*.jsonl")):
        rows.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return sorted(rows, key=lambda row: row["start"])


def _kind(server_kind: str) -> str:
    """``train.vote round 3`` -> ``vote``; ``train round 2`` -> ``train``; ``query.identity`` -> ``identity``."""
    head = server_kind.split(" round ")[0]
    return {"train.vote": "vote", "train": "train", "query.identity": "identity"}.get(head, head)


def analyse(folder: Path, *, cores: int, wall_s: float, pipeline_s: float) -> dict[str, Any]:
    """Efficiency, per-message spans and the pipeline's split, from one run's profile folder."""
    server, clients = _read(folder, "server"), _read(folder, "client")
    by_kind: dict[str, dict[str, Any]] = defaultdict(lambda: {"calls": 0, "messages": 0, "wall-s": 0.0,
                                                              "handler-s": 0.0, "cpu-s": 0.0,
                                                              "spans": defaultdict(float), "round-walls": []})
    waits = 0.0
    for call in server:
        if call["kind"] == "evaluate" or not call["sent"]:
            continue
        kind = _kind(call["kind"])
        begin, end = call["start"], call["start"] + call["wall-s"]
        inside = [row for row in clients if begin <= row["start"] <= end]
        entry = by_kind[kind]
        entry["calls"] += 1
        entry["messages"] += call["sent"]
        entry["wall-s"] += call["wall-s"]
        entry["round-walls"].append(round(call["wall-s"], 2))
        entry["handler-s"] += sum(row["wall-s"] for row in inside)
        entry["cpu-s"] += sum(row["cpu-s"] for row in inside)
        for row in inside:
            for name, seconds in row["spans"].items():
                entry["spans"][name] += seconds
        waits += call["wall-s"]
    evaluate_s = sum(call["wall-s"] for call in server if call["kind"] == "evaluate")
    kinds: dict[str, Any] = {}
    for kind, entry in by_kind.items():
        n = max(1, entry["messages"])
        spans = {name: round(entry["spans"].get(name, 0.0) / n, 4) for name in SPANS}
        spans["other-in-handler"] = round((entry["handler-s"] - sum(entry["spans"].values())) / n, 4)
        kinds[kind] = {
            "rounds": entry["calls"],
            "messages": entry["messages"],
            "round-wall-s (each)": entry["round-walls"],
            "efficiency": round(entry["handler-s"] / (cores * entry["wall-s"]), 3) if entry["wall-s"] else None,
            "handler-s per message": round(entry["handler-s"] / n, 4),
            "handler-cpu-s per message": round(entry["cpu-s"] / n, 4),
            "spans-s per message": spans,
            "engine-s per message": round((cores * entry["wall-s"] - entry["handler-s"]) / n, 4),
        }
    return {
        "kinds": kinds,
        "pipeline-split-s": {
            "waiting for replies": round(waits, 1),
            "server test-set evaluation": round(evaluate_s, 1),
            "rest of the pipeline (aggregation, prior, files)": round(pipeline_s - waits - evaluate_s, 1),
            "outside the pipeline (imports, Ray start and stop, report)": round(wall_s - pipeline_s, 1),
        },
    }


def run_scale(clients: int, data_dir: str, overrides: list[str]) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix=f"dppt-rounds-{clients}-"))
    out, profile = work / "run", work / "profile"
    settings = [*SCALES[clients], *overrides]
    command = [sys.executable, "-m", "simulations.cli", "simulate", "--out", str(out), "--data-dir", data_dir,
               *[arg for setting in settings for arg in ("--set", setting)]]
    os.environ[PROFILE_ENV] = str(profile)
    try:
        measured = run_measured(command)
    finally:
        os.environ.pop(PROFILE_ENV, None)
    if measured.returncode != 0:
        raise SystemExit(f"dppt simulate at {clients} clients failed with exit code {measured.returncode}")
    summary = json.loads((out / SUMMARY_FILE).read_text())
    cores = os.cpu_count() or 1
    figures = analyse(profile, cores=cores, wall_s=measured.wall_s, pipeline_s=float(summary["wall-time-s"]))
    return {
        "clients": clients,
        "settings": settings,
        "wall-time-s (whole command)": round(measured.wall_s, 1),
        "wall-time-s (pipeline)": summary["wall-time-s"],
        "peak-rss-gib (process tree)": measured.peak_rss_gib,
        "accuracy": summary["accuracy"],
        **figures,
        "run-dir": str(out),
    }


def _print(result: dict[str, Any]) -> None:
    print(f"\n== {result['clients']} clients: {result['wall-time-s (whole command)']} s whole command,"
          f" {result['wall-time-s (pipeline)']} s pipeline, peak {result['peak-rss-gib (process tree)']} GiB")
    for kind, entry in result["kinds"].items():
        spans = "  ".join(f"{name} {seconds:.3f}" for name, seconds in entry["spans-s per message"].items())
        print(f"  {kind:<9} {entry['rounds']:>3} rounds {entry['messages']:>5} msgs  efficiency {entry['efficiency']}"
              f"  handler {entry['handler-s per message']:.3f} s/msg ({spans})  engine {entry['engine-s per message']:.3f}")
    for part, seconds in result["pipeline-split-s"].items():
        print(f"  {part:<58} {seconds:>8.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="dataset root holding MNIST/raw/*.gz (read-only is fine)")
    parser.add_argument("--scales", default="10,100,1000", help="comma-separated client counts (of 10, 100, 1000)")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                        help="extra config settings for every scale")
    parser.add_argument("--results", default="rounds", help="results file name (without .json)")
    args = parser.parse_args(argv)
    scales = [int(part) for part in args.scales.split(",") if part.strip()]
    unknown = [scale for scale in scales if scale not in SCALES]
    if unknown:
        parser.error(f"--scales must be among {sorted(SCALES)}. Found {unknown}.")
    results = []
    for clients in scales:
        result = run_scale(clients, args.data_dir, args.overrides)
        _print(result)
        results.append(result)
    record = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), "python": platform.python_version(),
              "load-average-at-end": os.getloadavg(), "scales": results}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.results}.json").write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
