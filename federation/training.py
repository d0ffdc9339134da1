"""Local training and evaluation loops over in-memory tensors (no DataLoader overhead on small CPUs).

Both run the model in channels-last memory format by default (``memory_format``): oneDNN's CPU
convolutions are faster on it, and the evaluation batch is small enough for conv4's activations
to stay in cache. ``python -m simulations.benchmarks.bench_local_loops`` measures both against the
former default format and evaluation batch of 1000 (``results/local_loops.json``). The model's
parameters return to the default format afterwards, so what is sent or saved is unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

EVAL_BATCH_SIZE = 128
"""Evaluation batch (``bench_local_loops`` compares it with the former 1000)."""


@contextlib.contextmanager
def in_memory_format(model: nn.Module, memory_format: torch.memory_format) -> Iterator[nn.Module]:
    """Run ``model`` with its 4-d tensors in ``memory_format`` inside the block, in the default format after.

    ``Module.to(memory_format=...)`` converts the 4-d parameters and buffers (weights, masks) in
    place: the parameter objects stay the same, so an optimizer made inside the block, masks and
    parametrizations keep working. Values do not change, only their layout.
    """
    model.to(memory_format=memory_format)
    try:
        yield model
    finally:
        model.to(memory_format=torch.contiguous_format)


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
    grad_clip_norm: float = 0.0,
    generator: torch.Generator | None = None,
    memory_format: torch.memory_format = torch.channels_last,
) -> float:
    """Train with SGD for ``epochs`` passes over shuffled mini-batches; return the mean loss of the last epoch.

    With ``grad_clip_norm > 0`` each step's mini-batch gradient (all parameters together) is scaled
    to L2 norm at most ``grad_clip_norm`` before the step (``torch.nn.utils.clip_grad_norm_``).
    """
    if images.shape[0] == 0:
        raise ValueError("Cannot train on an empty dataset. Found 0 examples.")
    with in_memory_format(model, memory_format):
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
                if grad_clip_norm > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), grad_clip_norm)
                opt.step()
                total += float(loss.detach()) * idx.numel()
                seen += idx.numel()
            last = total / seen
    return last


@torch.no_grad()
def evaluate(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = EVAL_BATCH_SIZE,
    memory_format: torch.memory_format = torch.channels_last,
) -> tuple[float, float]:
    """Return ``(mean cross-entropy loss, accuracy)`` on the given examples."""
    if images.shape[0] == 0:
        raise ValueError("Cannot evaluate on an empty dataset. Found 0 examples.")
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    loss, correct = 0.0, 0
    with in_memory_format(model, memory_format):
        for start in range(0, images.shape[0], batch_size):
            out = model(images[start : start + batch_size])
            y = labels[start : start + batch_size]
            loss += float(loss_fn(out, y))
            correct += int((out.argmax(1) == y).sum())
    n = images.shape[0]
    return loss / n, correct / n
