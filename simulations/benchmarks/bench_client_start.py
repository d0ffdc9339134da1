"""Benchmark: what one ClientApp message costs a real SuperNode before any work, with and without ``cache-dir``.

A SuperNode of Flower 1.41 starts a fresh ``flwr-clientapp`` process for every message, so every
vote, training and evaluation message imports the ClientApp and loads the node's examples from
scratch. This measures exactly that in fresh Python processes: ``import federation.client_app``
then :func:`federation.client_data.load_client_data` for partition 1 of ``--clients`` (MNIST,
Dirichlet 0.5, ``max-examples-per-client`` 2000: the main job's settings), three ways:

- ``no-cache``: no ``cache-dir`` (reads the dataset and rebuilds the partition every message);
- ``first-message``: ``cache-dir`` set, empty cache (the first message builds and writes it);
- ``cached``: ``cache-dir`` set, cache present (every later message).

Each is run ``--repeats`` times (medians, min, max of wall-clock seconds per process, and of the
part spent in ``load_client_data``); the examples returned are checked equal across the three.
Run from the repository root with the offline data::

    python -m simulations.benchmarks.bench_client_start --data-dir DIR [--repeats 5] [--clients 10]

It prints a table and writes ``simulations/benchmarks/results/client_start.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "client_start.json"

_CHILD = """
import hashlib, json, sys, time
start = time.perf_counter()
import federation.client_app  # what flwr-clientapp imports before the handler runs
from federation.client_data import load_client_data
from federation.config import Config
imported = time.perf_counter()
node = json.loads(sys.argv[1])
config = Config(num_clients=int(sys.argv[2]), data_dir=node["data-dir"])
data = load_client_data(node, config)
done = time.perf_counter()
digest = hashlib.sha256(data.images.numpy().tobytes() + data.labels.numpy().tobytes()).hexdigest()[:16]
print(json.dumps({"import-s": imported - start, "load-s": done - imported, "n": data.num_examples, "digest": digest}))
"""


def _one(node: dict[str, object], clients: int) -> dict[str, float]:
    begin = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(node), str(clients)], capture_output=True,
                         text=True, check=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["process-s"] = time.perf_counter() - begin
    return row


def _stats(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="dataset root holding MNIST/raw/*.gz (read-only is fine)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--clients", type=int, default=10)
    args = parser.parse_args(argv)
    base = {"partition-id": 1, "num-partitions": args.clients, "data-dir": str(Path(args.data_dir).resolve())}
    results: dict[str, dict[str, object]] = {}
    digests: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="dppt-client-cache-") as cache:
        kinds = {"no-cache": [], "first-message": [], "cached": []}
        for _ in range(args.repeats):  # interleaved, so that machine noise spreads over the three
            kinds["no-cache"].append(_one(base, args.clients))
            for old in Path(cache).glob("*"):
                old.unlink()
            kinds["first-message"].append(_one({**base, "cache-dir": cache}, args.clients))
            kinds["cached"].append(_one({**base, "cache-dir": cache}, args.clients))
        for kind, rows in kinds.items():
            digests.update(str(row["digest"]) for row in rows)
            results[kind] = {
                "process-s": _stats([float(r["process-s"]) for r in rows]),
                "load-s": _stats([float(r["load-s"]) for r in rows]),
                "examples": int(rows[0]["n"]),
            }
    if len(digests) != 1:
        raise SystemExit(f"the three ways returned different examples: {sorted(digests)}")
    speedup = results["no-cache"]["process-s"]["median"] / results["cached"]["process-s"]["median"]  # type: ignore[index]
    print(f"{'':15} {'process s (median, min-max)':>30} {'load_client_data s':>22}")
    for kind, row in results.items():
        p, load = row["process-s"], row["load-s"]
        print(f"{kind:15} {p['median']:>10.2f} ({p['min']:.2f}-{p['max']:.2f}) {load['median']:>20.2f}")  # type: ignore[index]
    print(f"per-message start with the cache is {speedup:.1f}x faster (same examples, digest {digests.pop()})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "benchmark": "client_start", "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "settings": {"dataset": "mnist", "partition": "dirichlet", "alpha": 0.5, "clients": args.clients,
                     "max-examples-per-client": 2000, "repeats": args.repeats},
        "results": results, "speedup-median": round(speedup, 2),
    }, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
