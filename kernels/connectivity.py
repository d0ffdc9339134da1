"""Connected tickets: per-layer kernel budgets that avoid layer collapse, and kept input->output paths.

At high sparsity, a ticket whose pattern layers each keep their own top kernels can keep no path
from the input to the output at all: every kernel of a layer may read a channel that the layer
before keeps nothing for (Tanaka et al. 2020, "Pruning neural networks without any data by
iteratively conserving synaptic flow": layer collapse). Three tools, all post-processing of
public scores (no privacy cost):

- :func:`erk_densities`: per-layer densities proportional to ``(O + I + kh + kw) / (O I kh kw)``
  (Erdős–Rényi-Kernel, Evci et al. 2020, "Rigging the lottery"), scaled so the pattern layers
  keep the target share of their weights, each capped at what an ``m``-entry pattern can keep
  (``m / 9``). Small layers (the first convolution) keep far more than a uniform density gives.
- :func:`connect_kernels`: re-chooses each layer's kernels, with the same count per layer, so
  that kept kernels read channels the layer before keeps (a forward pass) and feed channels the
  layer after reads (a backward pass). The result keeps at least one input->output path whenever
  every layer keeps at least one kernel.
- :func:`count_paths`: the number of input->output paths through kept kernels.

Layers are taken in mapping order (the model's order). Layer ``j`` reads layer ``j - 1``'s
output when its input channels equal the previous layer's output channels (a chain, as in conv4
and LeNet-5); otherwise its inputs count as all reachable, so for models with skip connections
(ResNet-20) the path count is a proxy, not an exact count.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from kernels.errors import KernelsError

__all__ = ["connect_kernels", "count_paths", "erk_densities"]


def erk_densities(shapes: Mapping[str, tuple[int, ...]], *, density: float, cap: float) -> dict[str, float]:
    """Per-layer weight densities of the Erdős–Rényi-Kernel rule, their weighted mean ``density``.

    Parameters
    ----------
    shapes
        ``(O, I, kh, kw)`` per layer.
    density
        The target share of the layers' weights kept, in ``(0, cap]``.
    cap
        The largest density of one layer (``m / 9`` for ``m``-entry patterns).

    Raises
    ------
    KernelsError
        If ``density`` is outside ``(0, cap]`` or a shape is not 4-D.
    """
    if not 0 < density <= cap <= 1:
        raise KernelsError(f"density must be in (0, cap = {cap}]. Found {density}.")
    sizes: dict[str, int] = {}
    raw: dict[str, float] = {}
    for name, shape in shapes.items():
        if len(shape) != 4:
            raise KernelsError(f"shapes[{name!r}] must be (O, I, kh, kw). Found {tuple(shape)}.")
        sizes[name] = int(np.prod(shape))
        raw[name] = float(sum(shape)) / sizes[name]
    total = sum(sizes.values())
    capped: set[str] = set()
    while True:
        free = [name for name in shapes if name not in capped]
        budget = density * total - cap * sum(sizes[name] for name in capped)
        denominator = sum(raw[name] * sizes[name] for name in free)
        if not free or denominator <= 0:
            return dict.fromkeys(shapes, cap)
        scale = budget / denominator
        newly = {name for name in free if scale * raw[name] > cap}
        if not newly:
            return {name: cap if name in capped else scale * raw[name] for name in shapes}
        capped |= newly


def _links(kept: Mapping[str, torch.Tensor]) -> list[bool]:
    """Whether each layer reads the previous layer's output channels (a chain link)."""
    names = list(kept)
    return [j > 0 and kept[names[j]].shape[1] == kept[names[j - 1]].shape[0] for j in range(len(names))]


def _reselect(scores: torch.Tensor, eligible: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` kernels of highest score, eligible ones first (ties: lower flat index)."""
    flat_scores = scores.reshape(-1).double().numpy()
    flat_eligible = eligible.reshape(-1).numpy()
    order = np.lexsort((np.arange(flat_scores.size), -flat_scores, ~flat_eligible))  # last key sorts first
    keep = np.zeros(flat_scores.size, dtype=bool)
    keep[order[:count]] = True
    return torch.from_numpy(keep.reshape(tuple(scores.shape)))


def connect_kernels(
    connectivity: Mapping[str, torch.Tensor], scores: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The same number of kernels per layer, re-chosen so that kept kernels lie on paths.

    Forward: a layer's kernels that read an input channel nothing upstream reaches give way to
    the best kernels that read a reached one. Backward: kernels whose output channel the next
    layer never reads give way to the best kernels on channels it reads (the last layer's outputs
    all feed the dense head). Within each preference the scores decide, so a ticket that is
    already connected is returned unchanged.

    Parameters
    ----------
    connectivity
        Bool ``(O, I)`` kept kernels per pattern layer, in the model's order.
    scores
        Real ``(O, I)`` score per kernel (what chose ``connectivity``), same layers.
    """
    if list(connectivity) != list(scores):
        raise KernelsError(f"scores must name the layers of connectivity, in order. Found {list(scores)}.")
    kept = {name: mask.clone().bool() for name, mask in connectivity.items()}
    names, links = list(kept), _links(kept)
    counts = {name: int(mask.sum()) for name, mask in kept.items()}
    reached: dict[str, torch.Tensor] = {}
    for j, name in enumerate(names):  # forward: read only what is reached
        inputs = kept[name].shape[1]
        reach = (kept[names[j - 1]] & reached[names[j - 1]][None, :]).any(dim=1) if links[j] else None
        reached[name] = torch.ones(inputs, dtype=torch.bool) if reach is None else reach
        eligible = reached[name][None, :].expand_as(kept[name])
        if (kept[name] & ~eligible).any():
            kept[name] = _reselect(scores[name], eligible, counts[name])
    used = torch.ones(kept[names[-1]].shape[0], dtype=torch.bool) if names else None
    for j in range(len(names) - 1, -1, -1):  # backward: feed only what is read
        name = names[j]
        assert used is not None
        eligible = used[:, None] & reached[name][None, :]
        if (kept[name] & ~eligible).any():
            kept[name] = _reselect(scores[name], eligible, counts[name])
        carried = (kept[name] & eligible).any(dim=0)
        used = carried if j > 0 and links[j] else (
            torch.ones(kept[names[j - 1]].shape[0], dtype=torch.bool) if j > 0 else None)
    return kept


def count_paths(connectivity: Mapping[str, torch.Tensor]) -> float:
    """Input->output paths through kept kernels (a float: the count can exceed 2**63).

    ``0.0`` means the ticket is disconnected: no input reaches the output. Layers that do not
    chain (see the module docstring) pass every path they receive to every input channel.
    """
    paths: np.ndarray | None = None
    for (_name, mask), linked in zip(connectivity.items(), _links(connectivity), strict=True):
        adjacency = mask.numpy().astype(np.float64)
        if paths is None:
            incoming = np.ones(adjacency.shape[1])
        elif linked:
            incoming = paths
        else:
            incoming = np.full(adjacency.shape[1], paths.sum())
        paths = adjacency @ incoming
    return 0.0 if paths is None else float(paths.sum())
