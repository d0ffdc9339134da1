"""The local loops run in channels-last layout, leave the model as they found it, and bound each step when asked."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from federation.training import evaluate, train_epochs
from models import apply_masks, current_masks


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def _masked() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = _Tiny()
    mask = torch.rand(model.conv.weight.shape, generator=torch.Generator().manual_seed(1)) < 0.3
    apply_masks(model, {"conv": mask})
    return model, mask


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    return torch.randn(40, 1, 6, 6, generator=gen), torch.randint(0, 3, (40,), generator=gen)


@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
def test_train_keeps_pruned_weights_zero_and_returns_default_layout(memory_format: torch.memory_format) -> None:
    model, mask = _masked()
    x, y = _data()
    train_epochs(model, x, y, epochs=2, batch_size=8, lr=0.1, generator=torch.Generator().manual_seed(0),
                 memory_format=memory_format)
    assert torch.equal(current_masks(model)["conv"], mask)
    assert torch.all(model.conv.weight[~mask] == 0)
    assert all(t.is_contiguous() for t in model.state_dict().values())  # what is sent or saved


def test_channels_last_matches_the_default_layout() -> None:
    x, y = _data()
    trained = []
    for memory_format in (torch.contiguous_format, torch.channels_last):
        model, _ = _masked()
        loss = train_epochs(model, x, y, epochs=2, batch_size=8, lr=0.1, generator=torch.Generator().manual_seed(0),
                            memory_format=memory_format)
        trained.append((loss, evaluate(model, x, y, batch_size=16, memory_format=memory_format), model.conv.weight))
    (loss_a, eval_a, w_a), (loss_b, eval_b, w_b) = trained
    assert loss_a == pytest.approx(loss_b, rel=1e-4)
    assert eval_a[0] == pytest.approx(eval_b[0], rel=1e-4) and eval_a[1] == eval_b[1]
    torch.testing.assert_close(w_a, w_b, rtol=1e-4, atol=1e-5)


def test_evaluate_batches_cover_every_example() -> None:
    model, _ = _masked()
    x, y = _data()
    whole = evaluate(model, x, y, batch_size=1000)
    assert evaluate(model, x, y, batch_size=7) == pytest.approx(whole)
    with pytest.raises(ValueError, match="empty dataset"):
        evaluate(model, x[:0], y[:0])


def _one_step(grad_clip_norm: float) -> float:
    """The L2 norm of the change one plain SGD step (lr 1, no momentum, one batch of all 40) makes."""
    model, _ = _masked()
    for p in model.parameters():  # a loud start: the gradient norm is far above the bound below
        p.data.mul_(30)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    x, y = _data()
    train_epochs(model, x, y, epochs=1, batch_size=40, lr=1.0, momentum=0.0, grad_clip_norm=grad_clip_norm,
                 generator=torch.Generator().manual_seed(0))
    return float((torch.cat([p.detach().flatten() for p in model.parameters()]) - before).norm())


def test_grad_clip_norm_bounds_each_step_and_zero_leaves_it_alone() -> None:
    unclipped = _one_step(0.0)
    assert unclipped > 10.0  # the bound below would bind
    assert _one_step(2.0) == pytest.approx(2.0, rel=1e-4)  # lr 1: the step is the clipped gradient
    assert _one_step(1e9) == pytest.approx(unclipped, rel=1e-6)  # a bound that never binds changes nothing
