"""The contract every registered scorer honours (run for each name in the registry)."""

from __future__ import annotations

import pytest
import torch

import kernels
import models
from models import scores
from models.scores import Domain, ScoreRequest, ScoreResult


@pytest.fixture(params=scores.names())
def scorer(request: pytest.FixtureRequest) -> scores.Scorer:
    options = {"iterations": 3} if request.param == "synflow" else {}
    return scores.get(request.param, **options)


def _setup() -> tuple[torch.nn.Module, dict[str, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    model = models.get("conv4", num_classes=10, in_channels=1, image_size=12, width=0.125)
    masks = {"conv2": torch.rand(8, 8, 3, 3) < 0.4, "fc1": torch.rand(32, 144) < 0.5}
    models.apply_masks(model, masks)
    gen = torch.Generator().manual_seed(1)
    return model, masks, (torch.randn(6, 1, 12, 12, generator=gen), torch.randint(0, 10, (6,), generator=gen))


def test_scorer_contract(scorer: scores.Scorer) -> None:
    model, masks, data = _setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    candidates = kernels.enumerate_candidates(4)
    request = ScoreRequest(domains=frozenset(Domain), candidates=candidates, density=0.3)
    result = scorer.score(model, request, data if scorer.data_dependent else None)

    assert isinstance(result, ScoreResult)
    assert result.scorer == scorer.name and result.data_dependent == scorer.data_dependent
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "the model must not change"
    layers = models.prunable_layers(model)
    pattern_layers = {"conv1", "conv2", "conv3", "conv4"}
    assert set(result.weights) == set(layers)
    assert set(result.kernels) == set(result.patterns) == pattern_layers
    for name, values in result.weights.items():
        assert values.shape == layers[name].weight.shape
        assert bool(torch.isfinite(values).all()) and float(values.min()) >= 0.0
    for name in pattern_layers:
        assert result.kernels[name].shape == layers[name].weight.shape[:2]
        assert result.patterns[name].shape == (len(candidates),)
    assert result.pooled_patterns is not None and result.pooled_patterns.shape == (len(candidates),)
    for name, mask in masks.items():  # pruned weights carry no score
        assert torch.count_nonzero(result.weights[name][~mask]) == 0
    if scorer.data_dependent:
        assert result.num_examples == 6 and result.clip_bound is not None
        assert all(result.sensitivity(k) > 0 for k in result.clip_bound)
    else:
        assert result.num_examples == 0 and result.clip_bound is None and result.clip_mode is None
        with pytest.raises(models.ScoreError):
            scorer.score(model, request, data)
