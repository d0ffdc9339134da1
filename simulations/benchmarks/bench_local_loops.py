"""Benchmark: the evaluation and local-training loops of ``federation.training``, old layout against new.

A run's own compute is these two loops: every client's ``train`` message is one call of
:func:`~federation.training.train_epochs`, and the server evaluates every trained variant on the
whole test set after every round with :func:`~federation.training.evaluate`. This times, at the
main job's defaults (conv4, MNIST), on a ticket-shaped masked model (random masks of ``--density``
on every conv weight; the cost of a masked model does not depend on which weights are kept):

- ``evaluate``: the 10,000 test images, at the former batch of 1000 in the default (contiguous)
  layout, and at :data:`~federation.training.EVAL_BATCH_SIZE` in contiguous and channels-last
  layout; on ``--eval-threads`` threads (the server's, 2 by default).
- ``train``: one local epoch of ``--train-examples`` examples at batch 32, contiguous and
  channels-last, on one thread (a simulated client's ``client-cpus`` = 1).

Variants are interleaved in every repeat (after one warm-up each), so load shifts them alike;
figures are medians. Run from the repository root::

    python -m simulations.benchmarks.bench_local_loops --data-dir DIR [--repeats 5]

It prints a table and writes ``simulations/benchmarks/results/local_loops.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from federation.config import Config
from federation.data import load_tensors
from federation.model_io import build_model
from federation.training import EVAL_BATCH_SIZE, evaluate, train_epochs
from models import apply_masks

RESULTS = Path(__file__).resolve().parent / "results" / "local_loops.json"
FORMER_EVAL_BATCH = 1000


def _masked_model(config: Config, density: float) -> nn.Module:
    model = build_model(config, seed=0)
    gen = torch.Generator().manual_seed(1)
    apply_masks(model, {name: torch.rand(module.weight.shape, generator=gen) < density
                        for name, module in model.named_modules() if isinstance(module, nn.Conv2d)})
    return model


def _interleaved(cases: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict[str, float]]:
    for run in cases.values():
        run()  # warm-up: allocator, thread pool, oneDNN primitives
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - start)
    return {name: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "samples_s": v}
            for name, v in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data-dir", default=None, help="folder holding MNIST (default: the data-dir default)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--density", type=float, default=0.05, help="kept fraction of every conv weight")
    parser.add_argument("--eval-threads", type=int, default=2)
    parser.add_argument("--train-examples", type=int, default=2000)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    config = Config()
    test_x, test_y = load_tensors(config.dataset, data_dir=args.data_dir, train=False)
    train_x, train_y = load_tensors(config.dataset, data_dir=args.data_dir, train=True)
    train_x, train_y = train_x[: args.train_examples], train_y[: args.train_examples]
    model = _masked_model(config, args.density)
    contiguous, last = torch.contiguous_format, torch.channels_last

    torch.set_num_threads(args.eval_threads)
    eval_figures = _interleaved({
        f"contiguous, batch {FORMER_EVAL_BATCH} (former)": lambda: evaluate(
            model, test_x, test_y, batch_size=FORMER_EVAL_BATCH, memory_format=contiguous),
        f"contiguous, batch {EVAL_BATCH_SIZE}": lambda: evaluate(
            model, test_x, test_y, batch_size=EVAL_BATCH_SIZE, memory_format=contiguous),
        f"channels-last, batch {EVAL_BATCH_SIZE} (now)": lambda: evaluate(
            model, test_x, test_y, batch_size=EVAL_BATCH_SIZE, memory_format=last),
    }, args.repeats)

    torch.set_num_threads(1)

    def train(memory_format: torch.memory_format) -> Callable[[], object]:
        def run() -> float:
            fresh = _masked_model(config, args.density)
            return train_epochs(fresh, train_x, train_y, epochs=1, batch_size=config.batch_size, lr=config.lr,
                                generator=torch.Generator().manual_seed(0), memory_format=memory_format)
        return run

    train_figures = _interleaved({"contiguous (former)": train(contiguous), "channels-last (now)": train(last)},
                                 args.repeats)

    def speedup(figures: dict[str, dict[str, float]]) -> float:
        medians = [f["median_s"] for f in figures.values()]
        return round(medians[0] / medians[-1], 3)

    result = {
        "benchmark": "local_loops",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": config.model, "dataset": config.dataset, "density": args.density, "repeats": args.repeats,
        "eval_threads": args.eval_threads, "eval_examples": int(test_x.shape[0]),
        "train_examples": int(train_x.shape[0]), "train_batch": config.batch_size, "train_threads": 1,
        "evaluate": eval_figures, "train": train_figures,
        "evaluate_speedup_former_over_now": speedup(eval_figures),
        "train_speedup_former_over_now": speedup(train_figures),
        "load_average": list(os.getloadavg()), "torch_version": torch.__version__,
        "python_version": platform.python_version(), "cpu_count": os.cpu_count(),
        "note": "medians of interleaved repeats in one process; a shared machine: compare the ratios",
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")

    print(f"{config.model} on {config.dataset}, masked at density {args.density}, torch {torch.__version__},"
          f" load average {os.getloadavg()[0]:.2f}")
    for label, figures in (("evaluate", eval_figures), ("train", train_figures)):
        for name, figure in figures.items():
            print(f"{label:<9} {name:<32} median {figure['median_s']:7.3f} s  (min {figure['min_s']:.3f},"
                  f" max {figure['max_s']:.3f})")
    print(f"former / now: evaluate {result['evaluate_speedup_former_over_now']}x,"
          f" train {result['train_speedup_former_over_now']}x; written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
