"""Forward masks: pruned weights stay exactly zero, idempotence, replacement, plain state dicts."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import kernels
import models
from models import WeightMask


def _conv4(width: float = 0.25) -> nn.Module:
    return models.get("conv4", num_classes=10, in_channels=1, image_size=28, width=width)


def _random_masks(model: nn.Module, density: float, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        name: torch.rand(module.weight.shape, generator=gen) < density
        for name, module in models.prunable_layers(model).items()
    }


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_state(model: nn.Module, snapshot: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert list(state) == list(snapshot)
    for key, value in snapshot.items():
        assert torch.equal(state[key], value), key


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4),
        lambda params: torch.optim.Adam(params, lr=1e-2, weight_decay=1e-4),
        lambda params: torch.optim.AdamW(params, lr=1e-2, weight_decay=1e-2),
    ],
    ids=["sgd-momentum-wd", "adam-wd", "adamw"],
)
def test_pruned_weights_stay_exactly_zero_through_training(make_optimizer: Callable) -> None:
    model = _conv4()
    masks = _random_masks(model, 0.3, seed=1)
    before = {n: m.weight.detach().clone() for n, m in models.prunable_layers(model).items()}
    models.apply_masks(model, masks)
    optimizer = make_optimizer(model.parameters())
    gen = torch.Generator().manual_seed(2)
    for _ in range(20):
        x, y = torch.randn(16, 1, 28, 28, generator=gen), torch.randint(0, 10, (16,), generator=gen)
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    for name, module in models.prunable_layers(model).items():
        raw = module.parametrizations["weight"].original
        assert torch.count_nonzero(raw[~masks[name]]) == 0, name
        assert torch.count_nonzero(module.weight[~masks[name]]) == 0, name
        assert not torch.equal(module.weight[masks[name]], before[name][masks[name]]), f"{name} did not train"


def test_optimizer_built_before_masking_keeps_training_the_same_parameters() -> None:
    model = _conv4()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    masks = _random_masks(model, 0.5, seed=3)
    models.apply_masks(model, masks)
    raw = model.conv2.parametrizations["weight"].original
    assert any(raw is p for group in optimizer.param_groups for p in group["params"])
    nn.functional.cross_entropy(model(torch.randn(4, 1, 28, 28)), torch.tensor([0, 1, 2, 3])).backward()
    before = raw.detach().clone()
    optimizer.step()
    assert not torch.equal(raw, before)
    assert torch.count_nonzero(raw[~masks["conv2"]]) == 0


def test_applying_the_same_masks_twice_changes_nothing() -> None:
    model = _conv4()
    masks = _random_masks(model, 0.2, seed=4)
    models.apply_masks(model, masks)
    snapshot = _snapshot(model)
    replaced = models.apply_masks(model, masks)
    _assert_same_state(model, snapshot)
    for name, weight in replaced.items():
        assert torch.equal(weight, models.prunable_layers(model)[name].weight)


def test_apply_returns_the_dense_weights_it_replaced_and_remove_keeps_masked_values() -> None:
    model = _conv4()
    dense = {n: m.weight.detach().clone() for n, m in models.prunable_layers(model).items()}
    masks = _random_masks(model, 0.4, seed=5)
    replaced = models.apply_masks(model, masks)
    assert all(torch.equal(replaced[n], dense[n]) for n in dense)
    removed = models.remove_masks(model)
    assert all(torch.equal(removed[n], masks[n]) for n in masks)
    for name, module in models.prunable_layers(model).items():
        assert type(module) in (nn.Conv2d, nn.Linear)
        assert isinstance(module.weight, nn.Parameter)
        assert torch.equal(module.weight, dense[name] * masks[name])
    assert models.current_masks(model) == {}
    # The dense weights come back by loading what apply_masks returned.
    state = models.plain_state_dict(model) | {f"{n}.weight": w for n, w in replaced.items()}
    models.load_plain_state_dict(model, state)
    assert all(torch.equal(models.prunable_layers(model)[n].weight, dense[n]) for n in dense)


def test_a_new_mask_replaces_the_old_one() -> None:
    model = _conv4()
    first, second = _random_masks(model, 0.5, seed=6), _random_masks(model, 0.5, seed=7)
    models.apply_masks(model, first)
    models.apply_masks(model, {k: v for k, v in second.items() if k != "fc2"})
    current = models.current_masks(model)
    assert set(current) == set(second) - {"fc2"}
    for name, mask in current.items():
        assert torch.equal(mask, second[name])
        weight = models.prunable_layers(model)[name].weight
        assert torch.count_nonzero(weight[~mask]) == 0
        assert torch.count_nonzero(weight[mask & ~first[name]]) == 0  # revived entries come back at zero
    assert type(model.fc2) is nn.Linear  # unmasked, keeps the values masked by the first mask
    assert torch.count_nonzero(model.fc2.weight[~first["fc2"]]) == 0


def test_an_all_true_mask_leaves_the_layer_plain() -> None:
    model = _conv4()
    models.apply_masks(model, {"conv1": torch.ones(16, 1, 3, 3, dtype=torch.bool)})
    assert type(model.conv1) is nn.Conv2d and models.current_masks(model) == {}


@pytest.mark.parametrize(
    ("masks", "match"),
    [
        ({"conv9": torch.ones(1, dtype=torch.bool)}, r"prunable layers of the model .* Found \['conv9'\]"),
        ({"conv2": torch.ones(16, 16, 3, 3)}, "mask of conv2 must be a bool tensor. Found torch.float32."),
        ({"conv2": torch.ones(16, 16, 3, dtype=torch.bool)}, r"mask shape of conv2 must be \(16, 16, 3, 3\)"),
    ],
)
def test_bad_masks_raise_and_change_nothing(masks: dict, match: str) -> None:
    model = _conv4()
    good = {"conv1": torch.rand(16, 1, 3, 3) < 0.5}
    snapshot = _snapshot(model)
    with pytest.raises(models.MaskError, match=match):
        models.apply_masks(model, good | masks)  # the good mask comes first and must not be applied
    _assert_same_state(model, snapshot)
    assert models.current_masks(model) == {}


def test_ticket_mismatch_raises_before_anything_changes() -> None:
    small, large = _conv4(0.25), _conv4(0.5)
    shapes = {n: tuple(m.weight.shape) for n, m in models.prunable_layers(small).items()}
    ticket = kernels.random_ticket(
        shapes,
        policies=models.default_policies(small),
        density=0.1,
        library=kernels.enumerate_candidates(4)[:8],
        generator=torch.Generator().manual_seed(0),
    )
    models.apply_masks(large, _random_masks(large, 0.5, seed=8))
    snapshot, masks_before = _snapshot(large), models.current_masks(large)
    with pytest.raises(kernels.TicketMismatchError):
        models.apply_ticket(large, ticket)
    _assert_same_state(large, snapshot)
    assert all(torch.equal(masks_before[n], m) for n, m in models.current_masks(large).items())

    models.apply_ticket(small, ticket)
    for name, mask in ticket.masks().items():
        weight = models.prunable_layers(small)[name].weight
        assert torch.count_nonzero(weight[~mask]) == 0
    snapshot = _snapshot(small)
    models.apply_ticket(small, ticket)  # idempotent
    _assert_same_state(small, snapshot)
    counts = models.count_model(small)
    assert counts.weight_density == pytest.approx(ticket.density(), abs=1e-9)


def test_plain_state_dict_has_the_unmasked_keys_and_effective_weights() -> None:
    model = models.get("resnet20", num_classes=10, in_channels=3, image_size=32)
    plain_keys = list(model.state_dict())
    masks = _random_masks(model, 0.3, seed=9)
    models.apply_masks(model, masks)
    assert any("parametrizations" in k for k in model.state_dict())
    state = models.plain_state_dict(model)
    assert list(state) == plain_keys
    for name, mask in masks.items():
        assert torch.equal(state[f"{name}.weight"], models.prunable_layers(model)[name].weight)
        assert torch.count_nonzero(state[f"{name}.weight"][~mask]) == 0
    fresh = models.get("resnet20", num_classes=10, in_channels=3, image_size=32)
    models.load_plain_state_dict(fresh, state)  # an unmasked model
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(fresh(x), model(x))


def test_loading_dense_weights_into_a_masked_model_keeps_the_mask() -> None:
    model, donor = _conv4(), _conv4()
    masks = _random_masks(model, 0.3, seed=10)
    models.apply_masks(model, masks)
    models.load_plain_state_dict(model, donor.state_dict())
    for name, module in models.prunable_layers(model).items():
        expected = models.prunable_layers(donor)[name].weight * masks[name]
        assert torch.equal(module.weight, expected)
        assert torch.equal(module.parametrizations["weight"].original, expected)
    assert torch.equal(model.conv1.bias, donor.conv1.bias)


def test_bad_plain_state_dicts_raise_and_change_nothing() -> None:
    model = _conv4()
    models.apply_masks(model, _random_masks(model, 0.3, seed=11))
    snapshot = _snapshot(model)
    state = models.plain_state_dict(model)
    with pytest.raises(models.StateDictError, match=r"Found missing \['fc2.bias'\], unexpected \[\]"):
        models.load_plain_state_dict(model, {k: v for k, v in state.items() if k != "fc2.bias"})
    state_bad = {k: v.clone() for k, v in state.items()}
    state_bad["conv1.weight"] = torch.zeros(3, 3)
    state_bad["conv2.weight"] = torch.zeros_like(state["conv2.weight"])
    with pytest.raises(models.StateDictError, match=r"state_dict\['conv1.weight'\] shape must be \(16, 1, 3, 3\)"):
        models.load_plain_state_dict(model, state_bad)
    _assert_same_state(model, snapshot)
    with pytest.raises(models.StateDictError):
        models.load_plain_state_dict(model, state | {"extra": torch.zeros(1)})


def test_a_foreign_parametrization_is_refused() -> None:
    model = _conv4()
    nn.utils.parametrizations.weight_norm(model.conv2)
    with pytest.raises(models.MaskError, match="single models.WeightMask"):
        models.apply_masks(model, {"conv2": torch.ones(16, 16, 3, 3, dtype=torch.bool)})


@settings(max_examples=25, deadline=None)
@given(density=st.floats(0.0, 1.0), seed=st.integers(0, 2**16))
def test_masks_round_trip_and_are_idempotent(density: float, seed: int) -> None:
    torch.manual_seed(seed)
    model = models.get("conv4", num_classes=10, in_channels=1, image_size=12, width=0.125)
    masks = _random_masks(model, density, seed)
    models.apply_masks(model, masks)
    current = models.current_masks(model)
    for name, mask in masks.items():
        if bool(mask.all()):
            assert name not in current
        else:
            assert torch.equal(current[name], mask)
            assert isinstance(models.prunable_layers(model)[name].parametrizations["weight"][0], WeightMask)
    snapshot = _snapshot(model)
    models.apply_masks(model, current)
    _assert_same_state(model, snapshot)


def test_removing_masks_from_a_deep_copy_leaves_the_original_intact() -> None:
    import copy

    model = _conv4()
    masks = _random_masks(model, 0.3, seed=12)
    models.apply_masks(model, masks)
    x = torch.randn(2, 1, 28, 28)
    expected = model(x)
    twin = copy.deepcopy(model)
    models.remove_masks(twin)
    torch.testing.assert_close(model(x), expected)
    torch.testing.assert_close(twin(x), expected)
    assert set(models.current_masks(model)) == set(masks)
    models.remove_masks(model)  # and the other way round
    torch.testing.assert_close(model(x), expected)
