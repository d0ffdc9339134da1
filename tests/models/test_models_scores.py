"""Scorers: domain vectors, SynFlow against layer collapse, SNIP per-example gradients and chunking."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import kernels
import models
from kernels import LayerPolicy
from models import scores
from models.scores import ClipMode, Domain, ScoreRequest

ALL_DOMAINS = frozenset(Domain)
CANDIDATES = kernels.enumerate_candidates(4)


def _small_conv4(image_size: int = 12) -> nn.Module:
    return models.get("conv4", num_classes=10, in_channels=1, image_size=image_size, width=0.125)


def _data(n: int, image_size: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, image_size, image_size, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def test_registry_lists_and_builds_scorers() -> None:
    assert scores.names() == ("magnitude", "snip", "synflow")
    assert scores.get("synflow", iterations=3).iterations == 3
    with pytest.raises(models.UnknownNameError, match=r"scorer must be one of \['magnitude', 'snip', 'synflow'\]. Found 'grasp'."):
        scores.get("grasp")
    with pytest.raises(models.RegistrationError, match="force=True"):
        scores.register("snip", scores.Magnitude)
    with pytest.raises(TypeError):
        scores.get("magnitude", iterations=3)


def test_magnitude_domains_are_consistent() -> None:
    model = _small_conv4()
    masks = {"conv2": torch.rand(8, 8, 3, 3) < 0.5}
    models.apply_masks(model, masks)
    result = scores.get("magnitude").score(model, ScoreRequest(domains=ALL_DOMAINS, candidates=CANDIDATES))
    assert not result.data_dependent and result.num_examples == 0 and result.clip_bound is None
    assert result.sensitivity("pooled_patterns") == 0.0
    layers = models.prunable_layers(model)
    assert set(result.weights) == set(layers)  # fc layers are unstructured by default
    assert set(result.kernels) == set(result.patterns) == {"conv1", "conv2", "conv3", "conv4"}
    for name, values in result.weights.items():
        assert torch.equal(values, layers[name].weight.detach().abs())
    assert torch.count_nonzero(result.weights["conv2"][~masks["conv2"]]) == 0
    for name, kernel_scores in result.kernels.items():
        torch.testing.assert_close(kernel_scores, result.weights[name].sum(dim=(2, 3)))
        expected = kernels.pattern_energy(result.weights[name], CANDIDATES).sum(dim=(0, 1))
        torch.testing.assert_close(result.patterns[name], expected)
    assert result.patterns["conv1"].shape == (56,)
    torch.testing.assert_close(result.pooled_patterns, sum(result.patterns.values()))


def test_only_requested_domains_and_layers_are_computed() -> None:
    model = _small_conv4()
    policies = {"conv1": "dense", "conv2": "pattern", "conv3": "unstructured", "fc2": "unstructured"}
    result = scores.get("magnitude").score(model, ScoreRequest(domains={"kernels"}, policies=policies))
    assert dict(result.weights) == {} and dict(result.patterns) == {} and result.pooled_patterns is None
    assert list(result.kernels) == ["conv2"]
    with pytest.raises(models.ScoreError, match="must be a computed vector"):
        scores.get("snip").score(model, ScoreRequest(domains={"kernels"}, policies=policies), _data(2)).sensitivity(
            "weights"
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"domains": "weights"}, "domains must be a non-empty collection"),
        ({"domains": {"filters"}}, r"domains must be a subset of \['weights', 'kernels', 'patterns'\]"),
        ({"domains": {"patterns"}}, r"candidates must be a bool tensor \(N, 3, 3\)"),
        ({"clip_mode": "scale"}, r"clip_mode must be one of \['clip', 'normalise', 'l2'\]. Found 'scale'."),
        ({"clip_bound": {"weights": 1.0}}, "clip_bound must be None unless clip_mode is 'clip' or 'l2'"),
        ({"clip_mode": "clip", "clip_bound": {"weights": 0.0}}, r"clip_bound\['weights'\] must be a finite positive"),
        ({"clip_mode": "clip", "clip_bound": {"filters": 1.0}}, "clip_bound keys must be in"),
        ({"density": 0.0}, r"density must be a number in \(0, 1\]. Found 0.0."),
    ],
)
def test_bad_requests_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(models.ScoreError, match=match):
        ScoreRequest(**kwargs)


def test_bad_layers_and_data_raise() -> None:
    model = _small_conv4()
    with pytest.raises(models.ScoreError, match="a pattern layer must be a 3x3 Conv2d"):
        scores.get("magnitude").score(model, ScoreRequest(policies={"fc1": "pattern"}))
    with pytest.raises(models.ScoreError, match=r"prunable layers of the model .* Found \['conv9'\]"):
        scores.get("magnitude").score(model, ScoreRequest(policies={"conv9": "unstructured"}))
    with pytest.raises(models.ScoreError, match="need a pattern layer"):
        scores.get("magnitude").score(model, ScoreRequest(domains={"kernels"}, policies={"fc1": "unstructured"}))
    with pytest.raises(models.ScoreError, match="data must be None for the data-free scorer 'magnitude'"):
        scores.get("magnitude").score(model, ScoreRequest(), _data(2))
    with pytest.raises(models.ScoreError, match=r"data must be a tuple \(inputs, labels\)"):
        scores.get("snip").score(model, ScoreRequest())
    with pytest.raises(models.ScoreError, match="labels dtype must be an integer type"):
        scores.get("snip").score(model, ScoreRequest(), (torch.randn(2, 1, 12, 12), torch.zeros(2)))


def _layer_density(masks: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: float(mask.float().mean()) for name, mask in masks.items()}


def test_synflow_avoids_the_layer_collapse_of_magnitude() -> None:
    # conv3 starts 100x smaller than the rest: global magnitude pruning removes it entirely
    # (layer collapse, Tanaka et al. 2020), SynFlow's conserved flow keeps every layer alive.
    model = models.get("conv4", num_classes=10, in_channels=1, image_size=16, width=0.25)
    with torch.no_grad():
        model.conv3.weight.mul_(0.01)
    request = ScoreRequest(domains={"weights"}, density=0.02)
    magnitude = scores.global_topk_masks(scores.get("magnitude").score(model, request).weights, density=0.02)
    synflow = scores.global_topk_masks(scores.get("synflow", iterations=100).score(model, request).weights, density=0.02)
    assert _layer_density(magnitude)["conv3"] == 0.0
    assert all(density > 0 for density in _layer_density(synflow).values()), _layer_density(synflow)
    total = sum(m.numel() for m in synflow.values())
    assert sum(int(m.sum()) for m in synflow.values()) == round(0.02 * total)


def test_synflow_single_shot_conserves_flow_per_layer() -> None:
    # Each layer of a chain separates input from output: its scores sum to R (normalised to 1).
    model = _small_conv4()
    result = scores.get("synflow").score(model, ScoreRequest(domains={"weights"}))
    assert all(values.dtype == torch.float64 for values in result.weights.values())
    for name, values in result.weights.items():
        assert float(values.sum()) == pytest.approx(1.0, rel=1e-9), name


def test_synflow_respects_existing_masks_and_does_not_touch_the_model() -> None:
    model = _small_conv4()
    mask = torch.rand(8, 8, 3, 3) < 0.3
    models.apply_masks(model, {"conv2": mask})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = scores.get("synflow", iterations=5).score(model, ScoreRequest(domains={"weights"}, density=0.5))
    assert torch.count_nonzero(result.weights["conv2"][~mask]) == 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_snip_matches_autograd_per_example_and_respects_masks() -> None:
    model = _small_conv4()
    mask = torch.rand(8, 8, 3, 3) < 0.5
    models.apply_masks(model, {"conv2": mask})
    x, y = _data(3)
    request = ScoreRequest(domains={"weights"}, clip_mode="clip", clip_bound={"weights": 1e9})
    result = scores.get("snip").score(model, request, (x, y))
    plain = scores.plain_copy(model)
    for p in plain.parameters():
        p.requires_grad_(True)
    expected = {name: torch.zeros_like(m.weight) for name, m in models.prunable_layers(plain).items()}
    for i in range(3):
        loss = nn.functional.cross_entropy(plain(x[i : i + 1]), y[i : i + 1])
        layers = models.prunable_layers(plain)
        grads = torch.autograd.grad(loss, [m.weight for m in layers.values()])
        for (name, module), g in zip(layers.items(), grads, strict=True):
            expected[name] += (g * module.weight).abs().detach() / 3
    for name, values in result.weights.items():
        torch.testing.assert_close(values, expected[name].double(), rtol=1e-4, atol=1e-7)
    assert torch.count_nonzero(result.weights["conv2"][~mask]) == 0
    assert result.num_examples == 3 and result.data_dependent


@pytest.mark.parametrize("mode", ["clip", "normalise"])
def test_snip_chunking_equals_unchunked(mode: str) -> None:
    # float64, so that the comparison is not blurred by float32 reductions in batched kernels.
    model = _small_conv4().to(torch.float64)
    x, y = _data(11)
    data = (x.double(), y)
    request = ScoreRequest(domains=ALL_DOMAINS, candidates=CANDIDATES, clip_mode=mode)
    whole = scores.get("snip", chunk_size=None).score(model, request, data)
    chunked = scores.get("snip", chunk_size=3).score(model, request, data)
    for key in ("weights", "kernels", "patterns"):
        for layer, values in getattr(whole, key).items():
            torch.testing.assert_close(getattr(chunked, key)[layer], values, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(chunked.pooled_patterns, whole.pooled_patterns, rtol=1e-9, atol=1e-12)
    assert whole.clip_bound == chunked.clip_bound


def test_snip_result_bounds_follow_the_request() -> None:
    model = _small_conv4()
    data = _data(5)
    normalised = scores.get("snip").score(model, ScoreRequest(domains=ALL_DOMAINS, candidates=CANDIDATES), data)
    assert normalised.clip_mode is ClipMode.NORMALISE
    assert normalised.clip_bound == dict.fromkeys(("weights", "kernels", "patterns", "pooled_patterns"), 1.0)
    assert normalised.sensitivity("kernels") == pytest.approx(1 / 5)
    for table in (normalised.weights, normalised.kernels, normalised.patterns):
        assert all(float(v.max()) <= 1.0 and float(v.min()) >= 0.0 for v in table.values())
    clipped = scores.get("snip").score(
        model, ScoreRequest(domains={"weights"}, clip_mode="clip", clip_bound={"weights": 0.25}), data
    )
    assert clipped.clip_bound == {"weights": 0.25}
    assert clipped.sensitivity("weights") == pytest.approx(0.05)
    assert all(float(v.max()) <= 0.25 for v in clipped.weights.values())
    defaults = scores.get("snip").score(model, ScoreRequest(domains={"weights"}, clip_mode="clip"), data)
    assert defaults.clip_bound == {"weights": scores.DEFAULT_CLIP_BOUND["weights"]}


def test_scores_apply_to_dense_policy_free_models() -> None:
    lenet = models.get("lenet5", num_classes=10, in_channels=1, image_size=28)
    result = scores.get("magnitude").score(lenet, ScoreRequest(domains={"weights"}))
    assert set(result.weights) == set(models.prunable_layers(lenet))
    policies = {name: LayerPolicy.DENSE for name in models.prunable_layers(lenet)}
    with pytest.raises(models.ScoreError, match="at least one layer not dense"):
        scores.get("magnitude").score(lenet, ScoreRequest(policies=policies))
