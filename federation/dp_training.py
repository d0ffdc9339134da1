"""Record-level DP-SGD of ticket training on the device, with Opacus (DESIGN.md 5.8).

``train-privacy = dp-sgd``: each device trains the ticket with DP-SGD (Abadi et al. 2016) and
decides its own noise. Every step samples each local example independently with probability
q = 1 / ceil(n / batch-size) (Poisson sampling, Opacus' rate for a loader of that many batches),
clips each example's gradient to L2 norm C = ``train-clip`` (Opacus' ``GradSampleModule`` and
``DPOptimizer``), sums and adds N(0, (σC)²) to every coordinate, then divides by the expected
batch size. σ comes from Opacus' ``get_noise_multiplier`` (RDP accountant, on the ledger's orders
:data:`privacy.dp_sgd.RDP_ORDERS`), computed here so that
every step the run can ask of this device stays within (``train-epsilon``, ``train-delta``): up
to :func:`models_trained` models x ``train-rounds`` rounds x ``local-epochs`` epochs x 1/q steps.

The ticket's masks: Opacus computes per-example gradients of plain ``nn.Conv2d``/``nn.Linear``
weights and does not take torch parametrizations, so the masks are removed (the weights keep
their masked values, zeros where pruned) and enforced by hand: the per-example gradients of pruned
coordinates are zeroed before clipping (the clip then bounds what is used), the noisy gradient is
zeroed there too (a step hook, after the noise), and the pruned weights are set to exactly zero
after every step. All of it is post-processing of the clipped, noised sum, so it costs nothing.

The device's accountant carries across rounds in its Flower ``Context.state`` (one run): the
``(σ, q, steps)`` of every DP-SGD round it answered, so its figures are exact
(:func:`privacy.dp_sgd_epsilon` of the whole history). What it logs per round is the increase of
that total, so the log's Σε over a run is the run's RDP ε of the training, not Σ of each round's own.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import torch
from flwr.app import ConfigRecord, RecordDict
from torch import nn

from federation.config import Config, reads_client_data, trained_variants
from federation.errors import PolicyRefusal
from models import prunable_layers
from privacy import dp_sgd_epsilon
from privacy.dp_sgd import RDP_ORDERS

__all__ = ["DpSgdRound", "dp_train_epochs", "models_trained", "plan_round", "record_round", "state_history"]

STATE_KEY: Final = "dppt.dp-sgd"
"""The ``Context.state`` ConfigRecord of the device's DP-SGD history in this run."""
_HISTORY_FIELD: Final = "history"
_EPSILON_SLACK: Final = 1e-9  # Opacus' σ and dp_accounting's ε are two float evaluations of one series
RULE: Final = "train-epsilon"


def models_trained(config: Config) -> int:
    """The most models ticket training trains on a device: its DP-SGD budget is shared by them.

    :func:`federation.config.trained_variants`, less the non-private ticket where the run has none
    of its own: a private search without ``reference-search``, or a non-private search, whose one
    ticket is trained once (:func:`federation.pipeline.run_pipeline`).
    """
    from federation.statement import noised_units

    variants = set(trained_variants(config))
    private = not reads_client_data(config) or bool(noised_units(config))
    if "nonprivate_ticket" in variants and (
        (private and not config.reference_search) or (not private and "dp_ticket" in variants)
    ):
        variants.discard("nonprivate_ticket")
    return max(1, len(variants))


@dataclass(frozen=True, kw_only=True)
class DpSgdRound:
    """One round of DP-SGD as the device plans, runs and accounts it."""

    noise_multiplier: float = field(metadata={"help": "σ: noise std / C"})
    sample_rate: float = field(metadata={"help": "q: Poisson sampling rate of each step"})
    steps: int = field(metadata={"help": "steps of this round"})
    clip: float = field(metadata={"help": "C: per-example gradient L2 bound"})
    delta: float = field(metadata={"help": "δ of the accounting"})
    epsilon: float = field(metadata={"help": "the increase of the device's RDP ε of this run's training"})
    total_epsilon: float = field(metadata={"help": "the device's RDP ε of this run's training after this round"})


def state_history(state: RecordDict) -> list[tuple[float, float, int]]:
    """The ``(σ, q, steps)`` of every DP-SGD round this device answered in this run."""
    record = state.get(STATE_KEY)
    if record is None:
        return []
    return [(float(s), float(q), int(k)) for s, q, k in json.loads(str(record[_HISTORY_FIELD]))]


def record_round(state: RecordDict, planned: DpSgdRound) -> None:
    """Add a round to the device's history (before its reply leaves)."""
    history = state_history(state) + [(planned.noise_multiplier, planned.sample_rate, planned.steps)]
    state[STATE_KEY] = ConfigRecord({_HISTORY_FIELD: json.dumps(history)})


def plan_round(config: Config, *, num_examples: int, history: list[tuple[float, float, int]]) -> DpSgdRound:
    """σ, q and the steps of this round, and its ε, before any example is read.

    Raises
    ------
    PolicyRefusal
        (rule ``train-epsilon``) if no σ reaches ``train-epsilon`` for the run's steps (Opacus: the
        budget is too low), or if this round would take the device's training over ``train-epsilon``
        (a server asking more rounds than its config says).
    """
    from opacus.accountants.utils import get_noise_multiplier

    if num_examples < 1:
        raise PolicyRefusal(RULE, "DP-SGD needs at least one example on the device")
    steps_per_epoch = math.ceil(num_examples / config.batch_size)
    rate = 1.0 / steps_per_epoch
    steps = config.local_epochs * steps_per_epoch
    total_steps = models_trained(config) * config.train_rounds * steps
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Opacus: "optimal order is the largest alpha", a note on tightness
            sigma = float(get_noise_multiplier(target_epsilon=config.train_epsilon, target_delta=config.train_delta,
                                               sample_rate=rate, steps=total_steps, accountant="rdp",
                                               alphas=list(RDP_ORDERS)))
    except ValueError as err:
        raise PolicyRefusal(RULE, f"no noise multiplier reaches train-epsilon {config.train_epsilon:g} at"
                            f" train-delta {config.train_delta:g} for {total_steps} steps at q = {rate:.4g}"
                            f" (Opacus: {err}); raise train-epsilon") from None
    before = dp_sgd_epsilon(history, delta=config.train_delta)
    after = dp_sgd_epsilon([*history, (sigma, rate, steps)], delta=config.train_delta)
    if after > config.train_epsilon * (1.0 + _EPSILON_SLACK):
        raise PolicyRefusal(RULE, f"this DP-SGD round would take this device's training to ε {after:.6g} >"
                            f" train-epsilon {config.train_epsilon:g} ({len(history)} rounds answered already)")
    return DpSgdRound(noise_multiplier=sigma, sample_rate=rate, steps=steps, clip=config.train_clip,
                      delta=config.train_delta, epsilon=max(0.0, after - before), total_epsilon=after)


def _pruned(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """(weight, pruned coordinates) of every masked layer, found by the layer's name (models.prunable_layers)."""
    layers = prunable_layers(model)
    return [(layers[name].weight, ~mask.to(torch.bool)) for name, mask in masks.items()]


def dp_train_epochs(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    planned: DpSgdRound,
    masks: Mapping[str, torch.Tensor],
    lr: float,
    momentum: float,
    weight_decay: float,
    generator: torch.Generator,
) -> float:
    """Run ``planned.steps`` DP-SGD steps on a plain (unparametrized) model; pruned weights stay 0.

    ``masks`` (layer -> bool, True = kept) are the ticket's; the model must carry no mask
    parametrization (:func:`models.remove_masks`). ``generator`` draws both the Poisson samples
    and the noise (Opacus' ``generator``): the caller seeds it from OS entropy (DESIGN.md 5.5),
    never from the run config, since the amplification by sampling needs the samples secret too,
    and torch's default generator is seeded from the config by ``build_model``. Returns the mean
    loss over the steps that sampled any example.
    """
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    pruned = _pruned(model, masks)
    with torch.no_grad():
        for weight, off in pruned:
            weight[off] = 0.0
    n = images.shape[0]
    expected = max(1, round(planned.sample_rate * n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus' notes on secure_mode and full backward hooks
        module = GradSampleModule(model)
        optimizer = DPOptimizer(
            torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay),
            noise_multiplier=planned.noise_multiplier, max_grad_norm=planned.clip, expected_batch_size=expected,
            generator=generator,
        )

    def _zero_pruned_gradients(opt: Any) -> None:
        for weight, off in pruned:
            if weight.grad is not None:
                weight.grad[off] = 0.0

    optimizer.attach_step_hook(_zero_pruned_gradients)
    loss_fn = nn.CrossEntropyLoss()
    module.train()
    total, count = 0.0, 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch: full backward hooks on a first layer whose input needs no grad
        for _ in range(planned.steps):
            loss = _dp_step(module, model, optimizer, loss_fn, images, labels, planned.sample_rate, pruned, generator)
            if loss is not None:
                total, count = total + loss, count + 1
    module.to_standard_module()  # Opacus removes its hooks and per-example gradients from the model
    return total / count if count else math.nan


def _dp_step(module: nn.Module, model: nn.Module, optimizer: Any, loss_fn: nn.Module, images: torch.Tensor,
             labels: torch.Tensor, rate: float, pruned: list[tuple[nn.Parameter, torch.Tensor]],
             generator: torch.Generator) -> float | None:
    """One Poisson-sampled DP-SGD step; the pruned coordinates are zero before clipping and after the step."""
    chosen = torch.rand(images.shape[0], generator=generator) < rate
    optimizer.zero_grad(set_to_none=True)
    loss = None
    if bool(chosen.any()):
        value = loss_fn(module(images[chosen]), labels[chosen])
        value.backward()
        loss = float(value.detach())
    else:  # an empty Poisson batch: the step still adds noise (Opacus' convention: no skip)
        for p in model.parameters():
            p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype)
    for weight, off in pruned:
        if weight.grad_sample is not None and weight.grad_sample.shape[0]:
            weight.grad_sample[:, off] = 0.0
    optimizer.step()
    with torch.no_grad():
        for weight, off in pruned:
            weight[off] = 0.0
    return loss
