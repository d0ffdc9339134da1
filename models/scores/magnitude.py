"""Magnitude scores: |w| of the public (effective) weights. Data-free."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from models.layers import prunable_layers
from models.scores.base import Batch, Scorer, ScoreRequest, scored_layers
from models.scores.domains import data_free_result
from models.scores.result import ScoreResult

__all__ = ["Magnitude"]


class Magnitude(Scorer):
    """``score(w) = |w|`` of the effective (masked) weights; pruned weights score 0.

    Data-free: reads only the public weights, so it costs no privacy (an epsilon = 0 event).
    """

    name: ClassVar[str] = "magnitude"
    data_dependent: ClassVar[bool] = False

    def score(self, model: nn.Module, request: ScoreRequest, data: Batch | None = None) -> ScoreResult:
        self._check_data(data)
        policies = scored_layers(model, request)
        layers = prunable_layers(model)
        weights = {name: layers[name].weight.detach().abs() for name in policies}
        return data_free_result(
            self.name, weights, domains=request.domains, policies=policies, candidates=request.candidates
        )
