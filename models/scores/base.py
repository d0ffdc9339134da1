"""The scorer plug-in contract: a scorer only computes scores (thresholding is elsewhere)."""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar

import torch
from torch import nn

from kernels import LayerPolicy
from models.errors import ScoreError
from models.layers import default_policies, is_pattern_layer, prunable_layers
from models.masking import remove_masks
from models.scores.result import VECTOR_KEYS, ClipMode, Domain, ScoreResult, check_clip_bound

__all__ = ["DEFAULT_CLIP_BOUND", "Batch", "ScoreRequest", "Scorer", "plain_copy", "scored_layers"]

Batch = tuple[torch.Tensor, torch.Tensor]
"""``(inputs (n, C, H, W), integer labels (n,))``: one client's examples."""

# Default per-coordinate clip bounds C for ``clip_mode="clip"`` (``normalise``, the default mode,
# always uses C = 1 and needs no calibration). They are fixed constants, never derived from a
# client's data (that would leak). Calibration: SNIP saliencies |g_e * w| of the default MNIST
# Conv4 at Kaiming initialisation, 512 training examples, two seeds: each bound is about the
# median over examples of the example's largest coordinate in that vector (per-layer medians:
# weights 0.22-1.1, kernels 0.8-2.8, patterns 8-51 (growing with the layer's kernel count),
# pooled 95-115). So a typical example is clipped only at its peak coordinates while no example
# moves a coordinate of the mean by more than C/n. The vectors sum over growing sets (one weight;
# the 9 entries of a kernel; m entries of every kernel of a layer; every pattern layer), hence the
# growing bounds. Other models, data or trained weights need their own bounds (or ``normalise``).
DEFAULT_CLIP_BOUND: Mapping[str, float] = MappingProxyType(
    {"weights": 0.5, "kernels": 1.5, "patterns": 30.0, "pooled_patterns": 100.0}
)


def _coerce_domains(domains: object) -> frozenset[Domain]:
    if isinstance(domains, (str, Domain)) or not isinstance(domains, Collection) or not domains:
        valid = [d.value for d in Domain]
        raise ScoreError(f"domains must be a non-empty collection of {valid}. Found {domains!r}.")
    try:
        return frozenset(Domain(d) for d in domains)
    except ValueError as err:
        valid = [d.value for d in Domain]
        raise ScoreError(f"domains must be a subset of {valid}. Found {sorted(map(str, domains))}.") from err


@dataclass(frozen=True, kw_only=True)
class ScoreRequest:
    """What to score and how to bound each example's contribution. Validated at construction."""

    domains: frozenset[Domain] = field(
        default=frozenset({Domain.WEIGHTS}), metadata={"help": "domains to compute; others are skipped"}
    )
    policies: Mapping[str, LayerPolicy] | None = field(
        default=None,
        metadata={"help": "layer -> policy; 'dense' layers are not scored; None = models.default_policies"},
    )
    candidates: torch.Tensor | None = field(
        default=None, metadata={"help": "bool (N, 3, 3) candidate patterns; required for 'patterns'"}
    )
    clip_mode: ClipMode = field(default=ClipMode.NORMALISE, metadata={"help": "'clip', 'normalise' or 'l2'"})
    clip_bound: Mapping[str, float] | None = field(
        default=None, metadata={"help": "'clip' or 'l2' mode: vector key -> C (clip: overriding DEFAULT_CLIP_BOUND; l2: default 1)"}
    )
    density: float = field(
        default=1.0, metadata={"help": "density the caller will threshold to (iterative scorers prune towards it)"}
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "domains", _coerce_domains(self.domains))
        try:
            object.__setattr__(self, "clip_mode", ClipMode(self.clip_mode))
        except ValueError as err:
            valid = [m.value for m in ClipMode]
            raise ScoreError(f"clip_mode must be one of {valid}. Found {self.clip_mode!r}.") from err
        if self.policies is not None:
            try:
                object.__setattr__(self, "policies", {str(k): LayerPolicy(v) for k, v in self.policies.items()})
            except (ValueError, AttributeError) as err:
                valid = [p.value for p in LayerPolicy]
                raise ScoreError(f"policies must map layer names to {valid}. Found {self.policies!r}.") from err
        if Domain.PATTERNS in self.domains:
            c = self.candidates
            ok = isinstance(c, torch.Tensor) and c.dtype == torch.bool and c.dim() == 3 and c.shape[1:] == (3, 3)
            if not ok or not len(c):
                found = (str(c.dtype), tuple(c.shape)) if isinstance(c, torch.Tensor) else type(c).__name__
                raise ScoreError(
                    f"candidates must be a bool tensor (N, 3, 3), N >= 1, for domain 'patterns'. Found {found}."
                )
        if self.clip_bound is not None:
            if self.clip_mode is ClipMode.NORMALISE:
                raise ScoreError(
                    f"clip_bound must be None unless clip_mode is 'clip' or 'l2'. Found {dict(self.clip_bound)}."
                )
            unknown = sorted(set(self.clip_bound) - set(VECTOR_KEYS))
            if unknown:
                raise ScoreError(f"clip_bound keys must be in {list(VECTOR_KEYS)}. Found {unknown}.")
            object.__setattr__(self, "clip_bound", {k: check_clip_bound(k, v) for k, v in self.clip_bound.items()})
        d = self.density
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 < float(d) <= 1.0 or math.isnan(d):
            raise ScoreError(f"density must be a number in (0, 1]. Found {d!r}.")

    def bounds(self) -> dict[str, float]:
        """The C of every vector key under this request's clip mode."""
        if self.clip_mode is ClipMode.NORMALISE:
            return dict.fromkeys(VECTOR_KEYS, 1.0)
        if self.clip_mode is ClipMode.L2:
            # NOTE: no calibrated L2 defaults yet: C = 1 scales every example's vector to at most
            # unit norm (a direction); DEFAULT_CLIP_BOUND is per coordinate, not an L2 figure.
            return {**dict.fromkeys(VECTOR_KEYS, 1.0), **(self.clip_bound or {})}
        return {**DEFAULT_CLIP_BOUND, **(self.clip_bound or {})}


def scored_layers(model: nn.Module, request: ScoreRequest) -> dict[str, LayerPolicy]:
    """The layers a request scores (policy ``pattern`` or ``unstructured``), checked against the model."""
    layers = prunable_layers(model)
    policies = default_policies(model) if request.policies is None else request.policies
    unknown = sorted(set(policies) - set(layers))
    if unknown:
        raise ScoreError(
            f"policies layer names must be prunable layers of the model {list(layers)}. Found {unknown}."
        )
    scored = {name: policies[name] for name in layers if name in policies and policies[name] is not LayerPolicy.DENSE}
    for name, policy in scored.items():
        if policy is LayerPolicy.PATTERN and not is_pattern_layer(layers[name]):
            raise ScoreError(f"a pattern layer must be a 3x3 Conv2d. Found {name}: {layers[name]}.")
    if not scored:
        raise ScoreError(f"policies must leave at least one layer not dense. Found {dict(policies)}.")
    if Domain.KERNELS in request.domains or Domain.PATTERNS in request.domains:
        if not any(p is LayerPolicy.PATTERN for p in scored.values()):
            raise ScoreError(f"domains 'kernels' and 'patterns' need a pattern layer. Found {dict(scored)}.")
    return scored


def plain_copy(model: nn.Module) -> nn.Module:
    """A deep copy without forward masks (masked values kept): scorers never touch the caller's model."""
    work = copy.deepcopy(model)
    remove_masks(work)
    for param in work.parameters():
        param.requires_grad_(False)
    return work


class Scorer(ABC):
    """Base of every scorer. A scorer only implements :meth:`score`; thresholding is separate.

    Subclasses set ``name`` (registry key) and ``data_dependent`` (whether :meth:`score` reads
    the examples; a data-dependent scorer must bound each example's contribution, see
    :class:`models.scores.ClipMode`).
    """

    name: ClassVar[str]
    data_dependent: ClassVar[bool]

    @abstractmethod
    def score(self, model: nn.Module, request: ScoreRequest, data: Batch | None = None) -> ScoreResult:
        """Score ``model`` (its effective, masked weights) for ``request``.

        Parameters
        ----------
        model
            The model; never modified.
        request
            Domains, layers, candidates, clipping.
        data
            ``(inputs, labels)`` for data-dependent scorers; must be ``None`` for data-free ones.
        """

    def _check_data(self, data: Batch | None) -> None:
        if not self.data_dependent:
            if data is not None:
                raise ScoreError(
                    f"data must be None for the data-free scorer {self.name!r}. Found {type(data).__name__}."
                )
            return
        if not isinstance(data, tuple) or len(data) != 2 or not all(isinstance(t, torch.Tensor) for t in data):
            raise ScoreError(
                f"data must be a tuple (inputs, labels) of tensors for {self.name!r}. Found {type(data).__name__}."
            )
        inputs, labels = data
        if inputs.shape[0] < 1 or labels.shape != (inputs.shape[0],):
            raise ScoreError(
                f"data must hold n >= 1 inputs and n labels of shape (n,). "
                f"Found {tuple(inputs.shape)} and {tuple(labels.shape)}."
            )
