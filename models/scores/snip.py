"""Per-example SNIP saliencies |g_e * w| (Lee et al. 2019, "SNIP: single-shot network pruning
based on connection sensitivity", ICLR), bounded per example for differential privacy."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from models.errors import ScoreError
from models.layers import prunable_layers
from models.scores.base import Batch, Scorer, ScoreRequest, plain_copy, scored_layers
from models.scores.domains import BoundedMean, domain_vectors, freeze
from models.scores.result import ScoreResult

__all__ = ["Snip"]


class Snip(Scorer):
    """Mean over the client's examples of bounded per-example saliencies ``|g_e * w|``.

    ``g_e`` is the gradient of example e's cross-entropy loss with respect to the effective
    (masked) weights ``w``, from ``torch.func`` (``vmap(grad(...))`` over ``functional_call``),
    with the model in eval mode. Examples are processed ``chunk_size`` at a time, which bounds
    memory by ``chunk_size`` copies of the scored weights; the result does not depend on it.

    NOTE: Lee et al. (2019) take ``|g * w|`` of the *batch* gradient and normalise by the total.
    We take the absolute value per example and bound every example's contribution to each domain
    vector (``ScoreRequest.clip_mode``) before the mean: that is what gives every coordinate a
    replace-one sensitivity of ``C / n`` (DESIGN 5.1). Normalising the total would make every
    coordinate depend on all examples and break the bound.

    Parameters
    ----------
    chunk_size
        Examples per vectorised chunk, or ``None`` for all at once.
    """

    name: ClassVar[str] = "snip"
    data_dependent: ClassVar[bool] = True

    def __init__(self, *, chunk_size: int | None = 64) -> None:
        bad = isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        if chunk_size is not None and bad:
            raise ScoreError(f"chunk_size must be a positive int or None. Found {chunk_size!r}.")
        self.chunk_size = chunk_size

    def score(self, model: nn.Module, request: ScoreRequest, data: Batch | None = None) -> ScoreResult:
        self._check_data(data)
        assert data is not None
        inputs, labels = data
        if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ScoreError(f"labels dtype must be an integer type. Found {labels.dtype}.")
        policies = scored_layers(model, request)
        work = plain_copy(model).eval()
        layers = prunable_layers(work)
        weights = {f"{name}.weight": layers[name].weight.detach() for name in policies}
        reference = next(iter(weights.values()))
        inputs = inputs.to(device=reference.device, dtype=reference.dtype)
        labels = labels.to(device=reference.device, dtype=torch.int64)

        def example_loss(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            logits = functional_call(work, params, (x.unsqueeze(0),))
            return F.cross_entropy(logits, y.unsqueeze(0))

        per_example_grad = vmap(grad(example_loss), in_dims=(None, 0, 0))
        bounds = request.bounds()
        accumulator = BoundedMean(mode=request.clip_mode, bounds=bounds)
        n = inputs.shape[0]
        step = n if self.chunk_size is None else self.chunk_size
        for start in range(0, n, step):
            grads = per_example_grad(weights, inputs[start : start + step], labels[start : start + step])
            saliency = {name: (grads[f"{name}.weight"] * weights[f"{name}.weight"]).abs() for name in policies}
            accumulator.add(
                domain_vectors(saliency, domains=request.domains, policies=policies, candidates=request.candidates)
            )
        means = accumulator.means()
        computed = {key for key, table in means.items() if table}
        return ScoreResult(
            scorer=self.name,
            data_dependent=True,
            num_examples=n,
            clip_mode=request.clip_mode,
            clip_bound={key: bounds[key] for key in computed},
            **freeze(means),
        )
