"""Iterative Synaptic Flow (Tanaka et al. 2020, "Pruning neural networks without any data by
iteratively conserving synaptic flow", NeurIPS; Algorithm 1). Data-free."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from kernels import LayerPolicy
from models.errors import ScoreError
from models.layers import input_shape_of, prunable_layers
from models.scores.base import Batch, Scorer, ScoreRequest, plain_copy, scored_layers
from models.scores.domains import data_free_result
from models.scores.result import ScoreResult
from models.scores.thresholding import global_topk_masks

__all__ = ["SynFlow"]

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm, nn.InstanceNorm2d)


def _linearise(work: nn.Module) -> None:
    """Absolute weights, zero biases, normalisation layers replaced by the identity (in place).

    NOTE: Tanaka et al.'s reference code takes ``abs`` of every state-dict entry (biases too) and
    keeps BatchNorm in eval mode. We zero the biases, so the objective is exactly the l1 path norm
    R_SF = 1^T (prod_l |theta_l|) 1 of their eq. (6) (at Kaiming initialisation biases are zero,
    so the two agree there); and we replace every normalisation layer by the identity, because
    GroupNorm has no linear eval form (it would normalise the all-ones input by its own, degenerate
    statistics); BatchNorm at initialisation (mean 0, var 1, gamma 1, beta 0) is the identity too.
    """
    for parent in list(work.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, _NORMS):
                setattr(parent, child_name, nn.Identity())
    with torch.no_grad():
        for module in work.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.abs_()
                if module.bias is not None:
                    module.bias.zero_()
            else:
                for param in module.parameters(recurse=False):
                    param.abs_()


class SynFlow(Scorer):
    """Iterative SynFlow scores of the scored layers, computed in float64.

    Each of ``iterations`` rounds computes ``S = (dR/dtheta) * theta`` at the currently kept
    absolute weights on an all-ones input, with ``R`` the sum of the outputs of the linearised
    network (see ``_linearise``), then keeps the globally largest scores at density
    ``request.density ** (k / iterations)`` (the exponential schedule of Algorithm 1). The result
    is the last round's ``S`` (computed before its final re-prune): thresholding it globally at
    ``request.density`` gives Algorithm 1's mask. With ``request.density == 1`` a single round is
    computed. Weights already pruned in ``model`` score 0.

    Scores are divided by ``R`` of that round: the order is unchanged, and values stay in
    ``[0, 1]`` (by Tanaka et al.'s conservation theorem, the scores of a layer that separates
    input from output sum to ``R``), which avoids float overflow in deep networks.

    Data-free: reads no private data (an epsilon = 0 event).

    Parameters
    ----------
    iterations
        Rounds of score-and-prune (100 in the paper).
    """

    name: ClassVar[str] = "synflow"
    data_dependent: ClassVar[bool] = False

    def __init__(self, *, iterations: int = 100) -> None:
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ScoreError(f"iterations must be a positive int. Found {iterations!r}.")
        self.iterations = iterations

    def score(self, model: nn.Module, request: ScoreRequest, data: Batch | None = None) -> ScoreResult:
        self._check_data(data)
        policies: dict[str, LayerPolicy] = scored_layers(model, request)
        work = plain_copy(model).to(torch.float64).eval()
        _linearise(work)
        layers = prunable_layers(work)
        params = {name: layers[name].weight for name in policies}
        theta0 = {name: p.detach().clone() for name, p in params.items()}
        for p in params.values():
            p.requires_grad_(True)
        ones = torch.ones((1, *input_shape_of(model)), dtype=torch.float64, device=next(iter(theta0.values())).device)
        rounds = self.iterations if request.density < 1.0 else 1
        keep = {name: torch.ones_like(t, dtype=torch.bool) for name, t in theta0.items()}
        scores: dict[str, torch.Tensor] = {}
        for k in range(1, rounds + 1):
            with torch.no_grad():
                for name, p in params.items():
                    p.copy_(theta0[name] * keep[name])
            flow = work(ones).sum()
            grads = torch.autograd.grad(flow, list(params.values()))
            total = float(flow.detach())
            scale = total if total > 0 else 1.0
            scores = {name: (g * p.detach()).abs() / scale for (name, p), g in zip(params.items(), grads, strict=True)}
            if request.density < 1.0:
                keep = global_topk_masks(scores, density=request.density ** (k / rounds))
        return data_free_result(
            self.name, scores, domains=request.domains, policies=policies, candidates=request.candidates
        )
