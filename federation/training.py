"""Local training and evaluation loops over in-memory tensors (no DataLoader overhead on small CPUs)."""

from __future__ import annotations

import torch
from torch import nn


def train_epochs(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    generator: torch.Generator | None = None,
) -> float:
    """Train with SGD for ``epochs`` passes over shuffled mini-batches; return the mean loss of the last epoch."""
    if images.shape[0] == 0:
        raise ValueError("Cannot train on an empty dataset. Found 0 examples.")
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    n = images.shape[0]
    last = 0.0
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        total, seen = 0.0, 0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(images[idx]), labels[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * idx.numel()
            seen += idx.numel()
        last = total / seen
    return last


@torch.no_grad()
def evaluate(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 1000
) -> tuple[float, float]:
    """Return ``(mean cross-entropy loss, accuracy)`` on the given examples."""
    if images.shape[0] == 0:
        raise ValueError("Cannot evaluate on an empty dataset. Found 0 examples.")
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    loss, correct = 0.0, 0
    for start in range(0, images.shape[0], batch_size):
        out = model(images[start : start + batch_size])
        y = labels[start : start + batch_size]
        loss += float(loss_fn(out, y))
        correct += int((out.argmax(1) == y).sum())
    n = images.shape[0]
    return loss / n, correct / n
