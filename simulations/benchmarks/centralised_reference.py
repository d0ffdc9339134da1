"""Centralised, non-private reference: pattern tickets found at initialisation by each score.

For every seed, the default MNIST Conv4 is initialised (theta0) and, for each scorer
(``magnitude``, ``synflow``, ``snip`` on a batch of training examples) and each target sparsity of
the 3x3 convolution weights, a pattern ticket is built the way the federated server builds one
(DESIGN section 3), but from exact, non-noisy scores:

- library: the top-8 of the 56 candidates with m = 4 entries (centre kept) by the scorer's pooled
  ``patterns`` score;
- connectivity: the kernels with the highest ``kernels`` score, global over the four conv layers
  (``scope="global"``, so a score's layer allocation matters, as in SNIP/SynFlow);
- assignment (post-processing): each kept kernel gets the library pattern with the largest energy
  ``w ** 2`` of the public weights theta0;
- linear layers (fc1, fc2) stay **dense**: the sparsity figures are those of the conv weights, and
  the comparison isolates the conv pattern ticket.

The ticket is applied to theta0 (pruning at initialisation) and trained with SGD; it is compared
with a random ticket of exactly the same structure (same library, same kept kernels per layer,
random kernels and assignments: ``kernels.random_ticket_like``) and with the dense model.
SNIP uses the client pipeline's default per-example bounding (``normalise``), no noise.

    python -m simulations.benchmarks.centralised_reference --data-dir /tmp/dppt-data [--quick]

Writes ``results/centralised_reference.json`` (every run) and ``.md`` (the table). The default
(3 seeds x 19 trainings of 3 epochs over 15000 images) took 17.4 min under ``nice -n 10`` on
the shared 2-core machine (about 12 s per training when the machine is quiet); ``--quick`` is a
30-second smoke run that writes to a temporary folder.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

import kernels
import models
from federation.data import load_tensors
from federation.training import evaluate, train_epochs
from kernels import LayerPolicy
from models import scores

RESULTS = Path(__file__).resolve().parent / "results"
LIBRARY_SIZE = 8
PATTERN_ENTRIES = 4


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """Everything that determines the results (recorded in the JSON)."""

    data_dir: str = field(metadata={"help": "folder holding MNIST/raw"})
    seeds: tuple[int, ...] = field(default=(0, 1, 2), metadata={"help": "model-init / data-order seeds"})
    sparsities: tuple[float, ...] = field(default=(0.9, 0.95, 0.98), metadata={"help": "conv weight sparsities"})
    scorers: tuple[str, ...] = field(default=("magnitude", "synflow", "snip"), metadata={"help": "scorers"})
    epochs: int = field(default=3, metadata={"help": "training epochs per model"})
    train_examples: int = field(default=15_000, metadata={"help": "training subset size (0 = all 60000)"})
    batch_size: int = field(default=64, metadata={"help": "SGD mini-batch"})
    lr: float = field(default=0.01, metadata={"help": "SGD learning rate (momentum 0.9)"})
    snip_examples: int = field(default=256, metadata={"help": "training examples SNIP scores on"})
    synflow_iterations: int = field(default=100, metadata={"help": "SynFlow prune-and-rescore rounds"})
    threads: int = field(default=2, metadata={"help": "torch CPU threads"})


def _parse(argv: Sequence[str]) -> tuple[BenchConfig, Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder holding MNIST/raw/*.gz (read-only is fine)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 3; quick: 1)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--sparsities", default=None, help="comma-separated conv sparsities (default 0.9,0.95,0.98)")
    parser.add_argument("--train-examples", type=int, default=None, help="training subset size, 0 = all (default 15000)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2000 examples, 1 epoch, 90%% only")
    parser.add_argument(
        "--out-dir", default=None, help=f"where the .json and .md go (default {RESULTS}; quick: a temp folder)"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    sparsities = args.sparsities or ("0.9" if quick else "0.9,0.95,0.98")
    config = BenchConfig(
        data_dir=args.data_dir,
        seeds=tuple(int(s) for s in args.seeds.split(",")),
        sparsities=tuple(float(s) for s in sparsities.split(",")),
        epochs=args.epochs if args.epochs is not None else (1 if quick else 3),
        train_examples=args.train_examples if args.train_examples is not None else (2000 if quick else 15_000),
        snip_examples=64 if quick else 256,
        synflow_iterations=10 if quick else 100,
        threads=args.threads,
    )
    for s in config.sparsities:
        if not 1 - PATTERN_ENTRIES / 9 <= s < 1:
            parser.error(f"--sparsities must be in [{1 - PATTERN_ENTRIES / 9:.3f}, 1) for patterns of 4 entries. Found {s}.")
    out_dir = Path(args.out_dir) if args.out_dir else (Path(tempfile.gettempdir()) / "dppt-centralised-quick" if quick else RESULTS)
    return config, out_dir


def _conv4(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return models.get("conv4", num_classes=10, in_channels=1, image_size=28)


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(module.weight.shape) for name, module in models.prunable_layers(model).items()}


def _train_and_test(model: nn.Module, data: dict[str, torch.Tensor], config: BenchConfig, seed: int) -> dict:
    start = time.perf_counter()
    loss = train_epochs(
        model,
        data["x"],
        data["y"],
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        generator=torch.Generator().manual_seed(seed + 1),
    )
    train_s = time.perf_counter() - start
    test_loss, accuracy = evaluate(model, data["x_test"], data["y_test"])
    return {"train_loss": loss, "test_loss": test_loss, "accuracy": accuracy, "train_s": train_s}


def _structure(model: nn.Module, ticket: kernels.Ticket | None) -> dict:
    counts = models.count_model(model)
    conv = [c for c in counts.layers.values() if c.kind == "conv2d"]
    conv_total = sum(c.weight_params for c in conv)
    out = {
        "conv_sparsity": 1 - sum(c.kept_weight_params for c in conv) / conv_total,
        "model_sparsity": 1 - counts.kept_params / counts.total_params,
        "kept_mac_fraction": counts.kept_macs / counts.total_macs,
        "layer_density": {c.name: round(c.density, 5) for c in conv},
    }
    if ticket is not None:
        out["kept_kernels"] = {n: layer.kept_kernels for n, layer in ticket.layers.items() if layer.kept_kernels is not None}
    return out


def _ticket_for(
    scorer_name: str, theta0: nn.Module, sparsity: float, data: dict[str, torch.Tensor], config: BenchConfig, seed: int
) -> tuple[kernels.Ticket, torch.Tensor, float]:
    policies = models.default_policies(theta0, linear="dense")
    candidates = kernels.enumerate_candidates(PATTERN_ENTRIES)
    density = 1.0 - sparsity
    request = scores.ScoreRequest(
        domains={"kernels", "patterns"}, policies=policies, candidates=candidates, density=density
    )
    options = {"iterations": config.synflow_iterations} if scorer_name == "synflow" else {}
    scorer = scores.get(scorer_name, **options)
    batch = None
    if scorer.data_dependent:
        gen = torch.Generator().manual_seed(10_000 + seed)
        idx = torch.randperm(data["x"].shape[0], generator=gen)[: config.snip_examples]
        batch = (data["x"][idx], data["y"][idx])
    start = time.perf_counter()
    result = scorer.score(theta0, request, batch)
    score_s = time.perf_counter() - start
    assert result.pooled_patterns is not None
    chosen = kernels.select_library(result.pooled_patterns, LIBRARY_SIZE)
    library = candidates[chosen]
    layers = models.prunable_layers(theta0)
    pattern_layers = [n for n, p in policies.items() if p is LayerPolicy.PATTERN]
    ticket = kernels.build_ticket(
        shapes=_shapes(theta0),
        policies=policies,
        library=library,
        energy={n: layers[n].weight.detach() ** 2 for n in pattern_layers},
        kernel_scores={n: result.kernels[n].to(torch.float64) for n in pattern_layers},
        weight_scores={},
        density=density,
        scope="global",
        metadata=kernels.TicketMetadata(
            config_hash=_config_hash(config),
            epsilon_spent={"record": math.inf} if scorer.data_dependent else {},
        ),
    )
    return ticket, chosen, score_s


def _config_hash(config: BenchConfig) -> str:
    payload = {k: v for k, v in asdict(config).items() if k not in ("data_dir", "threads")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]


def _load(config: BenchConfig) -> dict[str, torch.Tensor]:
    x, y = load_tensors("mnist", data_dir=config.data_dir, train=True)
    x_test, y_test = load_tensors("mnist", data_dir=config.data_dir, train=False)
    if config.train_examples:
        idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(12345))[: config.train_examples]
        x, y = x[idx], y[idx]
    return {"x": x, "y": y, "x_test": x_test, "y_test": y_test}


def run(config: BenchConfig) -> list[dict]:
    """Every (seed, method, sparsity) run as one row."""
    torch.set_num_threads(config.threads)
    data = _load(config)
    rows: list[dict] = []

    def record(row: dict) -> None:
        rows.append(row)
        print(
            f"seed {row['seed']} {row['method']:<18} sparsity {row['target_sparsity']:.2f} "
            f"acc {row['accuracy']:.4f} ({row['wall_s']:.0f} s)",
            flush=True,
        )

    for seed in config.seeds:
        theta0 = _conv4(seed)
        start = time.perf_counter()
        dense = copy.deepcopy(theta0)
        trained = _train_and_test(dense, data, config, seed)
        record({"seed": seed, "method": "dense", "scorer": None, "target_sparsity": 0.0, **trained,
                **_structure(dense, None), "score_s": 0.0, "wall_s": time.perf_counter() - start})
        for scorer_name in config.scorers:
            for sparsity in config.sparsities:
                start = time.perf_counter()
                ticket, library, score_s = _ticket_for(scorer_name, theta0, sparsity, data, config, seed)
                model = copy.deepcopy(theta0)
                models.apply_ticket(model, ticket)
                trained = _train_and_test(model, data, config, seed)
                record({"seed": seed, "method": scorer_name, "scorer": scorer_name, "target_sparsity": sparsity,
                        **trained, **_structure(model, ticket), "library": library.tolist(), "score_s": score_s,
                        "wall_s": time.perf_counter() - start})
                start = time.perf_counter()
                random_ticket = kernels.random_ticket_like(ticket, generator=torch.Generator().manual_seed(seed + 7))
                model = copy.deepcopy(theta0)
                models.apply_ticket(model, random_ticket)
                trained = _train_and_test(model, data, config, seed)
                record({"seed": seed, "method": f"random-like-{scorer_name}", "scorer": scorer_name,
                        "target_sparsity": sparsity, **trained, **_structure(model, random_ticket),
                        "library": library.tolist(), "score_s": 0.0, "wall_s": time.perf_counter() - start})
    return rows


def _fmt(values: list[float], digits: int = 4) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _markdown(config: BenchConfig, rows: list[dict], total_s: float) -> str:
    groups: dict[tuple[str, float], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["method"], row["target_sparsity"]), []).append(row)
    lines = [
        "# Centralised reference: pattern tickets at initialisation (MNIST, Conv4)",
        "",
        f"Conv4 width {models.CONV4_DEFAULT_WIDTH} ({sum(p.numel() for p in _conv4(0).parameters())} parameters), "
        f"{config.train_examples or 60000} training examples, {config.epochs} epochs SGD "
        f"(lr {config.lr}, momentum 0.9, batch {config.batch_size}), test accuracy on the 10000 test images. "
        f"Tickets: library = top-{LIBRARY_SIZE} of the {kernels.candidate_count(PATTERN_ENTRIES)} m={PATTERN_ENTRIES} "
        "candidates by the pooled pattern score; global kernel connectivity by the kernel score; "
        "assignment by public-weight energy; fc layers dense. "
        "`random-like-X`: random kernels and assignments with X's library and per-layer kernel counts. "
        f"SNIP on {config.snip_examples} training examples (per-example normalised, no noise); "
        f"SynFlow {config.synflow_iterations} iterations.",
        "",
        f"Seeds {list(config.seeds)}; {config.threads} torch threads; total wall time {total_s / 60:.1f} min.",
        "",
        "| method | target conv sparsity | conv sparsity | model sparsity | kept MACs | min layer density "
        "| test accuracy | score s | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for (method, target), group in groups.items():
        lines.append(
            f"| {method} | {target:.2f} | {_fmt([r['conv_sparsity'] for r in group])} "
            f"| {_fmt([r['model_sparsity'] for r in group])} | {_fmt([r['kept_mac_fraction'] for r in group], 3)} "
            f"| {_fmt([min(r['layer_density'].values()) for r in group])} "
            f"| {_fmt([r['accuracy'] for r in group])} | {_fmt([r['score_s'] for r in group], 1)} "
            f"| {_fmt([r['wall_s'] for r in group], 0)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    config, out_dir = _parse(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    rows = run(config)
    total = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "config": asdict(config),
        "config_hash": _config_hash(config),
        "environment": {"python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine()},
        "total_wall_s": total,
        "rows": rows,
    }
    (out_dir / "centralised_reference.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out_dir / "centralised_reference.md").write_text(_markdown(config, rows, total))
    print(_markdown(config, rows, total))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
