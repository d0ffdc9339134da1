"""Benchmark: project every layer of a ResNet-18-sized model onto an 8-pattern library.

Weights are random (the cost does not depend on their values). The 3x3 convolutions of
torchvision's ``resnet18`` (16 layers, 10,985,472 weights) get the pattern policy with a library
of 8 of the 56 centre-fixed 4-entry candidates; the 7x7 stem, the three 1x1 downsample convs and
the 512x1000 classifier (693,440 weights) get unstructured top-k masks; 11,678,912 weights in all.

Figures (wall-clock median, min and max of ``--repeats`` runs after one warm-up, and the median
process CPU time summed over threads; once per ``--threads`` value, 2 then 1 by default, through
``torch.set_num_threads``):

- ``projection``: energy (``w ** 2`` and pattern energy), assignment, per-layer connectivity and
  mask materialisation for the pattern layers, plus unstructured top-k masks for the others,
  with the functions of :mod:`kernels.projection`. Target: under 1 second.
- ``build_ticket_layer`` / ``build_ticket_global``: the same through :func:`kernels.build_ticket`
  (validation and Ticket construction included) followed by ``Ticket.masks()``, per-layer and
  global connectivity scope.
- ``save_load``: writing the ticket file and reading it back (with its checksum).

Run from the repository root::

    python -m simulations.benchmarks.bench_projection [--repeats 7] [--threads 2 1]

It prints a table and writes ``simulations/benchmarks/results/projection.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from kernels import (
    LayerPolicy,
    Ticket,
    TicketMetadata,
    build_ticket,
    enumerate_candidates,
    kernel_keep_fraction,
    pattern_mask,
    project_onto_library,
    select_library,
    unstructured_mask,
)

RESULTS = Path(__file__).resolve().parent / "results" / "projection.json"


def resnet18_weight_shapes() -> dict[str, tuple[int, ...]]:
    """Weight shapes of torchvision's ``resnet18`` (conv and linear layers, no biases or BN)."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}
    in_channels = 64
    for stage, channels in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            prefix = f"layer{stage}.{block}"
            block_in = in_channels if block == 0 else channels
            shapes[f"{prefix}.conv1.weight"] = (channels, block_in, 3, 3)
            shapes[f"{prefix}.conv2.weight"] = (channels, channels, 3, 3)
            if block == 0 and stage > 1:
                shapes[f"{prefix}.downsample.0.weight"] = (channels, block_in, 1, 1)
        in_channels = channels
    shapes["fc.weight"] = (1000, 512)
    return shapes


def _cpu_name() -> str:
    """CPU model from /proc/cpuinfo where there is one, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _policies(shapes: dict[str, tuple[int, ...]]) -> dict[str, LayerPolicy]:
    return {
        name: LayerPolicy.PATTERN if len(shape) == 4 and shape[2:] == (3, 3) else LayerPolicy.UNSTRUCTURED
        for name, shape in shapes.items()
    }


def _time(run: Callable[[], object], repeats: int) -> dict[str, float | list[float]]:
    run()  # warm-up: allocator, thread pool, lazy initialisation
    samples, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        samples.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {
        "median_s": statistics.median(samples),
        "min_s": min(samples),
        "max_s": max(samples),
        "cpu_median_s": statistics.median(cpu),
        "samples_s": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per figure (after one warm-up)")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[2, 1],
        help="torch.set_num_threads values to run, in order (the first is the headline figure)",
    )
    parser.add_argument("--density", type=float, default=0.2, help="weight density of every sparse layer")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and vote")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON file to write")
    args = parser.parse_args(argv)

    generator = torch.Generator().manual_seed(args.seed)
    shapes = resnet18_weight_shapes()
    policies = _policies(shapes)
    weights = {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}
    candidates = enumerate_candidates(4)
    library = candidates[select_library(torch.randint(0, 1000, (candidates.shape[0],), generator=generator), 8)]
    fraction = kernel_keep_fraction(args.density, 4)
    pattern_layers = [n for n, p in policies.items() if p is LayerPolicy.PATTERN]
    other_layers = [n for n, p in policies.items() if p is LayerPolicy.UNSTRUCTURED]

    def projection() -> dict[str, torch.Tensor]:
        masks = {}
        for name in pattern_layers:
            assignment, connectivity = project_onto_library(weights[name], library, keep_fraction=fraction)
            masks[name] = pattern_mask(library, assignment, connectivity)
        for name in other_layers:
            masks[name] = unstructured_mask(weights[name].abs(), density=args.density)
        return masks

    metadata = TicketMetadata(config_hash="bench-projection")

    def build(scope: str) -> Callable[[], Ticket]:
        def run() -> Ticket:
            ticket = build_ticket(
                shapes=shapes,
                policies=policies,
                library=library,
                energy={n: weights[n].square() for n in pattern_layers},
                kernel_scores=None,
                weight_scores={n: weights[n].abs() for n in other_layers},
                density=args.density,
                scope=scope,  # type: ignore[arg-type]
                metadata=metadata,
            )
            ticket.masks()
            return ticket

        return run

    ticket = build("layer")()
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ticket.safetensors"

        def save_load() -> None:
            ticket.save(path)
            Ticket.load(path)

        for threads in args.threads:
            torch.set_num_threads(threads)
            figures = {
                "projection": _time(projection, args.repeats),
                "build_ticket_layer": _time(build("layer"), args.repeats),
                "build_ticket_global": _time(build("global"), args.repeats),
                "save_load": _time(save_load, args.repeats),
            }
            runs.append({"threads": threads, "figures": figures})
        file_bytes = path.stat().st_size

    total = sum(int(np.prod(s)) for s in shapes.values())
    pattern_weights = sum(int(np.prod(shapes[n])) for n in pattern_layers)
    result = {
        "benchmark": "projection",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "model": "resnet18 weight shapes (torchvision), random N(0, 1) weights",
        "weights_total": total,
        "weights_pattern_layers": pattern_weights,
        "pattern_layers": len(pattern_layers),
        "unstructured_layers": len(other_layers),
        "library": {"size": 8, "entries": 4, "centre_fixed": True, "candidates": int(candidates.shape[0])},
        "density": args.density,
        "achieved_density": ticket.density(),
        "ticket_file_bytes": file_bytes,
        "target_projection_s": 1.0,
        "repeats": args.repeats,
        "threads": args.threads,
        "headline_projection_median_s": runs[0]["figures"]["projection"]["median_s"],
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "note": (
            "shared, noisy machine (2 cores, other jobs running): compare medians, not single runs; "
            "with 2 threads a parallel op likely waits for a descheduled worker thread, so the 1-thread run is "
            "the steadier figure"
        ),
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")

    print(
        f"resnet18-sized: {total:,} weights ({pattern_weights:,} in {len(pattern_layers)} pattern layers), "
        f"library 8 x 4 entries, density {args.density}, torch {torch.__version__}"
    )
    print(f"{'threads':>7} {'figure':<22} {'median s':>9} {'min s':>9} {'max s':>9} {'cpu s':>9}")
    for run in runs:
        for name, figure in run["figures"].items():
            print(
                f"{run['threads']:>7} {name:<22} {figure['median_s']:>9.3f} {figure['min_s']:>9.3f} "
                f"{figure['max_s']:>9.3f} {figure['cpu_median_s']:>9.3f}"
            )
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
