"""Benchmark: inference latency of a ticket's model, dense against its compact edge export (issue 16).

For each model (Conv4 at dppt's default width 0.25 and at Frankle & Carbin's width 1, 28x28x1;
ResNet-20 at 32x32x3, GroupNorm), conv sparsity (90, 95, 98%), batch size (1, 64) and thread
count (1, 2), in one process, with the variants interleaved (in a new random order every round) so
that load changes and cache effects hit them alike:

- ``dense``: the model with all its weights (``F.conv2d``);
- ``masked``: the same model holding the ticket's masked weights (the zeros of
  ``weights.safetensors``; what dppt handed over before this issue);
- ``compacted``: the exported graph with channels removed where exact, every conv dense
  (``nn.Conv2d`` on the compacted weight): channel compaction alone;
- ``pattern``: the exported graph with :class:`kernels.PatternConv2d` on its compiled loop;
- ``pattern-torch``: the same on its pure-torch fallback (``F.conv2d`` over the channels used).

Tickets are data-free: :func:`kernels.random_ticket` on a seeded θ0 with an 8-pattern library of
4-entry patterns (centre kept), 3x3 convs at ``1 - sparsity`` density, linear layers dense (the
default ``other-layers``); biases are drawn N(0, 0.05²) so that empty channels are not all
zero (a trained model's are not). Latency does not depend on the weights' values.

Figures: the median wall time of ``--repeats``-scaled runs per variant (after a warm-up), the
ratio ``dense / variant``, the MACs per example each variant executes (pattern: kept entries x
output pixels), the file sizes (dense ``safetensors`` of the state dict, ``dppt-edge`` export)
and the largest difference between the pattern model's and the masked model's outputs.

Run from the repository root::

    python -m simulations.benchmarks.bench_edge [--quick]

It prints a table and writes ``simulations/benchmarks/results/edge.json`` and ``edge.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import safetensors.torch
import torch
from torch import nn

import models
from federation.model_io import ticket_policies
from kernels import (
    LayerPolicy,
    PatternConv2d,
    compiled_pattern_conv,
    enumerate_candidates,
    random_ticket,
    read_export_file,
    write_export_file,
)
from models.compaction import lower_to_edge_graph
from simulations.benchmarks.bench_projection import _cpu_name

RESULTS = Path(__file__).resolve().parent / "results"
BLOCK = 4  # timed calls per variant per round, after one untimed call
VARIANTS = ("dense", "masked", "compacted", "pattern", "pattern-torch")
MODELS = {  # label -> (registry name, options, (channels, side))
    "conv4-w0.25": ("conv4", {}, (1, 28)),
    "conv4-w1": ("conv4", {"width": 1.0}, (1, 28)),
    "resnet20": ("resnet20", {}, (3, 32)),
}


def _macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs per example that the model's conv, pattern-conv and linear modules execute."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, PatternConv2d):  # its output may be pooled already (fused epilogue)
            total += module.executed_macs(inputs[0].shape[2], inputs[0].shape[3])
        elif isinstance(module, nn.Conv2d):
            total += module.weight.numel() * output.shape[2] * output.shape[3]
        elif isinstance(module, nn.Linear):
            total += module.weight.numel()

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, PatternConv2d))
    ]
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for handle in handles:
        handle.remove()
    return total


def _build(label: str, sparsity: float, folder: Path) -> dict[str, object]:
    name, options, (channels, side) = MODELS[label]
    torch.manual_seed(0)
    dense = models.get(name, num_classes=10, in_channels=channels, image_size=side, **options).eval()
    with torch.no_grad():
        for module in dense.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
                module.bias.normal_(std=0.05)
    policies = ticket_policies(dense)  # dppt's default other-layers = dense: linear layers stay dense
    shapes = {n: tuple(m.weight.shape) for n, m in models.prunable_layers(dense).items()}
    density = {n: 1.0 - sparsity for n, p in policies.items() if p is not LayerPolicy.DENSE}
    ticket = random_ticket(
        shapes,
        policies=policies,
        density=density,
        library=enumerate_candidates(4)[:8],
        generator=torch.Generator().manual_seed(1),
    )
    patterned = [layer for layer in ticket.layers.values() if layer.policy is LayerPolicy.PATTERN]
    masked = models.get(name, num_classes=10, in_channels=channels, image_size=side, **options).eval()
    masked.load_state_dict(dense.state_dict())
    models.apply_ticket(masked, ticket)
    models.remove_masks(masked)  # plain layers holding zeros: the handed-over weights.safetensors
    graph = lower_to_edge_graph(masked, ticket)
    path = folder / f"{label}-{sparsity}.edge"
    edge_bytes = write_export_file(
        path,
        nodes=graph.nodes,
        tensors=graph.tensors,
        input_shape=graph.input_shape,
        source={},
    )
    variants = {
        "dense": dense,
        "masked": masked,
        "compacted": read_export_file(path, backend="dense"),
        "pattern": read_export_file(path, backend="compiled"),
        "pattern-torch": read_export_file(path, backend="torch"),
    }
    return {
        "variants": variants,
        "input_shape": dense.input_shape,
        "conv_sparsity": 1.0 - sum(layer.kept for layer in patterned) / sum(layer.total for layer in patterned),
        "dense_bytes": len(safetensors.torch.save({k: v.contiguous() for k, v in dense.state_dict().items()})),
        "edge_bytes": edge_bytes,
        "macs": {v: _macs(m, dense.input_shape) for v, m in variants.items()}
        | {"kept": models.count_model(dense, masks=ticket.masks()).kept_macs},
        "channels": graph.channels,
    }


def _measure(variants: dict[str, nn.Module], x: torch.Tensor, budget_s: float) -> dict[str, float]:
    """Median seconds per forward of each variant: rounds of short blocks per variant, in a shuffled order."""
    with torch.no_grad():
        for model in variants.values():  # warm-up
            model(x)
            model(x)
        start = time.perf_counter()
        variants["dense"](x)
        once = max(time.perf_counter() - start, 1e-5)
        rounds = int(min(101, max(5, budget_s / (len(variants) * BLOCK * once))))
        samples: dict[str, list[float]] = {v: [] for v in variants}
        order = random.Random(0)
        names = list(variants)
        for _ in range(rounds):
            order.shuffle(names)  # no variant always runs right after the same other one
            for variant in names:
                # A block of calls, the first one discarded: a deployed model runs alone, with its
                # weights in cache, not right after another model evicted them.
                for call in range(BLOCK + 1):
                    start = time.perf_counter()
                    variants[variant](x)
                    if call:
                        samples[variant].append(time.perf_counter() - start)
    return {v: statistics.median(s) for v, s in samples.items()} | {"rounds": rounds}


def _table(rows: list[dict[str, object]]) -> list[str]:
    head = (
        "| model | conv sparsity | batch | threads | dense ms | masked | compacted | pattern | pattern-torch "
        "| MACs dense / pattern | file dense / edge (KiB) | max diff |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        t = r["latency_s"]
        ratio = {v: f"{t['dense'] / t[v]:.2f}x" for v in VARIANTS}
        lines.append(
            f"| {r['model']} | {r['conv_sparsity']:.2f} | {r['batch']} | {r['threads']} | {t['dense'] * 1e3:.3f} "
            f"| {ratio['masked']} | {ratio['compacted']} | {ratio['pattern']} | {ratio['pattern-torch']} "
            f"| {r['macs']['dense'] / 1e6:.2f}M / {r['macs']['pattern'] / 1e6:.3f}M "
            f"| {r['dense_bytes'] / 1024:.0f} / {r['edge_bytes'] / 1024:.0f} | {r['max_difference']:.1e} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one model, 98%% only, 1 thread (a smoke run)",
    )
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timing per configuration")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write results/")
    args = parser.parse_args(argv)
    if compiled_pattern_conv() is None:
        print(
            "bench_edge: the compiled loop did not build; pattern runs the torch path",
            file=sys.stderr,
        )
    labels = ["conv4-w0.25"] if args.quick else list(MODELS)
    sparsities = [0.98] if args.quick else [0.90, 0.95, 0.98]
    threads = [1] if args.quick else [1, 2]
    load_before = os.getloadavg()
    started = time.perf_counter()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as folder:
        for label in labels:
            for sparsity in sparsities:
                built = _build(label, sparsity, Path(folder))
                variants = built["variants"]
                for batch in (1, 64):
                    x = torch.randn(
                        batch,
                        *built["input_shape"],
                        generator=torch.Generator().manual_seed(2),
                    )
                    with torch.no_grad():
                        difference = float((variants["pattern"](x) - variants["masked"](x)).abs().max())
                    for count in threads:
                        torch.set_num_threads(count)
                        latency = _measure(variants, x, args.budget)
                        row = {
                            "model": label,
                            "sparsity_target": sparsity,
                            "conv_sparsity": built["conv_sparsity"],
                            "batch": batch,
                            "threads": count,
                            "latency_s": latency,
                            "speedup": {v: latency["dense"] / latency[v] for v in VARIANTS},
                            "macs": built["macs"],
                            "dense_bytes": built["dense_bytes"],
                            "edge_bytes": built["edge_bytes"],
                            "max_difference": difference,
                            "channels": built["channels"],
                        }
                        rows.append(row)
                        print(_table([row])[-1], flush=True)
    load_after = os.getloadavg()
    lines = _table(rows)
    print("\n".join(lines))
    elapsed = time.perf_counter() - started
    meta = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_before": load_before,
        "load_after": load_after,
        "elapsed_s": elapsed,
        "command": "python -m simulations.benchmarks.bench_edge" + (" --quick" if args.quick else ""),
    }
    print(f"load average before {load_before}, after {load_after}; {elapsed:.0f} s")
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "edge.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
        md = [
            "# Edge inference: dense against the compact export (issue 16)",
            "",
            (
                f"Command: `{meta['command']}`; {meta['date']}; {meta['cpu']}, {meta['cores']} cores shared with "
                f"other jobs (load average {load_before[0]:.1f} before, {load_after[0]:.1f} after); torch "
                f"{meta['torch']}."
            ),
            "",
            (
                "Latency ratios are `dense / variant` (above 1 = faster than dense), medians of interleaved runs in "
                "one process. MACs per example executed; files: the dense state dict as safetensors, the dppt-edge "
                "export. `masked` executes exactly the dense MACs: its spread around 1.0x is the measurement's."
            ),
            "",
            *lines,
            "",
        ]
        (RESULTS / "edge.md").write_text("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
