"""Constructing tickets: the server's post-processing step and the random baseline.

Densities here are weight densities (kept / total) per layer. A pattern layer with patterns of
``m`` entries keeps ``kept_count(density * 9 / m, O * I)`` kernels (see
:mod:`kernels.projection` for the counting rule), so its density is the target up to one
kernel's worth (``m / (9 O I)``); an unstructured layer keeps ``kept_count(density, numel)``
weights.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

import torch

from kernels._checks import check_fraction, check_same_layers, check_shape
from kernels.connectivity import connect_kernels
from kernels.errors import KernelsError
from kernels.layer_ticket import LayerTicket
from kernels.metadata import TicketMetadata
from kernels.patterns import KERNEL_SIZE, pattern_energy, validate_library
from kernels.projection import (
    LayerPolicy,
    Scope,
    kept_count,
    kernel_keep_fraction,
    select_kernels,
    unstructured_mask,
)
from kernels.ticket import Ticket

__all__ = ["build_ticket", "random_ticket", "random_ticket_like"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class _LayerPlan:
    shape: tuple[int, ...]
    policy: LayerPolicy
    density: float


def _plan(
    shapes: Mapping[str, tuple[int, ...] | torch.Size],
    policies: Mapping[str, LayerPolicy | str],
    density: float | Mapping[str, float],
    library: torch.Tensor | None,
) -> tuple[dict[str, _LayerPlan], int | None]:
    """Check the per-layer inputs shared by the builders; return the plan and the pattern size."""
    if not isinstance(shapes, Mapping) or not shapes:
        raise KernelsError(f"shapes must be a non-empty mapping. Found {shapes!r}.")
    check_same_layers("policies", policies, shapes)
    resolved: dict[str, LayerPolicy] = {}
    for name, policy in policies.items():
        try:
            resolved[name] = LayerPolicy(policy)
        except ValueError as err:
            valid = [p.value for p in LayerPolicy]
            raise KernelsError(f"policies[{name!r}] must be one of {valid}. Found {policy!r}.") from err
    sparse = [name for name in shapes if resolved[name] is not LayerPolicy.DENSE]
    if isinstance(density, Mapping):
        # Dense layers may be listed (at 1.0) so that one density table can serve every layer.
        dense_listed = [n for n in density if n in resolved and resolved[n] is LayerPolicy.DENSE]
        wrong_dense = [n for n in dense_listed if density[n] != 1.0]
        if wrong_dense:
            raise KernelsError(
                f"density of dense layers {wrong_dense} must be 1.0 or left out. Found other values."
            )
        listed = {n: d for n, d in density.items() if n not in dense_listed}
        check_same_layers("density", listed, dict.fromkeys(sparse))
        densities = {name: check_fraction(f"density[{name!r}]", density[name]) for name in sparse}
    else:
        densities = dict.fromkeys(sparse, check_fraction("density", density))

    entries = None
    if any(policy is LayerPolicy.PATTERN for policy in resolved.values()):
        if library is None:
            raise KernelsError(
                "library must be a bool (P, 3, 3) tensor when a layer has the pattern policy. Found None."
            )
        entries = validate_library(library)
    plan: dict[str, _LayerPlan] = {}
    for name, raw_shape in shapes.items():
        shape = check_shape(f"shapes[{name!r}]", raw_shape)
        policy = resolved[name]
        if policy is LayerPolicy.PATTERN and (len(shape) != 4 or shape[2:] != (KERNEL_SIZE, KERNEL_SIZE)):
            raise KernelsError(f"shape of pattern layer {name!r} must be (O, I, 3, 3). Found {shape}.")
        plan[name] = _LayerPlan(shape=shape, policy=policy, density=densities.get(name, 1.0))
    return plan, entries


def _keep_fraction(label: str, layer_density: float, entries: int) -> float:
    try:
        return kernel_keep_fraction(layer_density, entries)
    except KernelsError as err:
        raise KernelsError(f"{label}: {err}") from err


def _random_keep(total: int, kept: int, generator: torch.Generator) -> torch.Tensor:
    """Bool vector of length ``total`` with exactly ``kept`` True entries, uniformly at random."""
    keep = torch.zeros(total, dtype=torch.bool)
    keep[torch.randperm(total, generator=generator)[:kept]] = True
    return keep


def _random_layer(
    shape: tuple[int, ...],
    policy: LayerPolicy,
    kept: int,
    library: torch.Tensor | None,
    generator: torch.Generator,
) -> LayerTicket:
    """Random layer ticket: ``kept`` counts kernels for a pattern layer, weights otherwise."""
    if policy is LayerPolicy.DENSE:
        return LayerTicket(policy=policy, shape=shape)
    if policy is LayerPolicy.UNSTRUCTURED:
        mask = _random_keep(math.prod(shape), kept, generator).reshape(shape)
        return LayerTicket(policy=policy, shape=shape, unstructured_mask=mask)
    assert library is not None
    kernels = shape[:2]
    assignment = torch.randint(library.shape[0], kernels, generator=generator, dtype=torch.int64)
    connectivity = _random_keep(math.prod(kernels), kept, generator).reshape(kernels)
    return LayerTicket(policy=policy, shape=shape, library=library, assignment=assignment, connectivity=connectivity)


def _check_generator(generator: object) -> None:
    if not isinstance(generator, torch.Generator):
        raise KernelsError(f"generator must be a torch.Generator. Found {type(generator).__name__}.")


def random_ticket(
    shapes: Mapping[str, tuple[int, ...] | torch.Size],
    *,
    policies: Mapping[str, LayerPolicy | str],
    density: float | Mapping[str, float],
    library: torch.Tensor | None,
    generator: torch.Generator,
    metadata: TicketMetadata | None = None,
) -> Ticket:
    """Random ticket of a given structure and density: the baseline every result is compared to.

    Pattern layers get a uniform random library pattern per kernel and a uniformly random set of
    exactly ``kept_count(density * 9 / m, O * I)`` connected kernels; unstructured layers a
    uniformly random set of exactly ``kept_count(density, numel)`` weights; dense layers stay
    dense. Reads no data, so it costs no privacy.

    Parameters
    ----------
    shapes : Mapping[str, tuple[int, ...]]
        Weight shape per layer; the ticket keeps this order.
    policies : Mapping[str, LayerPolicy]
        Policy per layer (same keys as ``shapes``).
    density : float or Mapping[str, float]
        Weight density, one for every non-dense layer or one per non-dense layer.
    library : torch.Tensor or None
        Bool ``(P, 3, 3)`` library; may be ``None`` only without pattern layers.
    generator : torch.Generator
        Source of randomness (CPU).
    metadata : TicketMetadata, optional
        Defaults to an empty config hash, no ε spent, round 0.

    Returns
    -------
    Ticket
    """
    _check_generator(generator)
    plan, entries = _plan(shapes, policies, density, library)
    layers: dict[str, LayerTicket] = {}
    for name, layer in plan.items():
        if layer.policy is LayerPolicy.PATTERN:
            assert entries is not None
            fraction = _keep_fraction(f"layer {name!r}", layer.density, entries)
            kept = kept_count(fraction, layer.shape[0] * layer.shape[1])
        else:
            kept = kept_count(layer.density, math.prod(layer.shape))
        layers[name] = _random_layer(layer.shape, layer.policy, kept, library, generator)
    return Ticket(layers=layers, metadata=metadata or TicketMetadata(config_hash=""))


def random_ticket_like(
    ticket: Ticket, *, generator: torch.Generator, metadata: TicketMetadata | None = None
) -> Ticket:
    """Random ticket with exactly the per-layer structure and kept counts of ``ticket``.

    Same layers, policies and libraries; the same number of connected kernels per pattern layer
    and of kept weights per unstructured layer, placed uniformly at random, with uniform random
    pattern assignments. ``metadata`` defaults as in :func:`random_ticket`.
    """
    if not isinstance(ticket, Ticket):
        raise KernelsError(f"ticket must be a Ticket. Found {type(ticket).__name__}.")
    _check_generator(generator)
    layers = {
        name: _random_layer(
            layer.shape,
            layer.policy,
            layer.kept_kernels if layer.policy is LayerPolicy.PATTERN else layer.kept,  # type: ignore[arg-type]
            layer.library,
            generator,
        )
        for name, layer in ticket.layers.items()
    }
    return Ticket(layers=layers, metadata=metadata or TicketMetadata(config_hash=""))


def _check_scores_cover(
    name: str,
    scores: Mapping[str, torch.Tensor],
    plan: Mapping[str, _LayerPlan],
    shape_of: Callable[[tuple[int, ...]], tuple[int, ...]],
) -> None:
    check_same_layers(name, scores, plan)
    for layer, value in scores.items():
        expected = shape_of(plan[layer].shape)
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != expected:
            found = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise KernelsError(f"{name}[{layer!r}] shape must be {expected}. Found {found}.")


def build_ticket(
    *,
    shapes: Mapping[str, tuple[int, ...] | torch.Size],
    policies: Mapping[str, LayerPolicy | str],
    library: torch.Tensor | None,
    energy: Mapping[str, torch.Tensor],
    kernel_scores: Mapping[str, torch.Tensor] | None,
    weight_scores: Mapping[str, torch.Tensor],
    density: float | Mapping[str, float],
    scope: Scope,
    metadata: TicketMetadata,
    connected: bool = False,
) -> Ticket:
    """Assignment, connectivity and unstructured masks in one call (the server's post-processing).

    - pattern layers: each kernel gets the library pattern of largest ``energy``
      (:func:`kernels.projection.assign_patterns`); the kernels with the highest
      ``kernel_scores`` stay connected (:func:`kernels.projection.select_kernels` with
      ``keep_fraction = density * 9 / m`` and ``scope``). With ``kernel_scores=None`` a
      kernel's score is the energy its assigned pattern keeps (magnitude connectivity pruning).
    - unstructured layers: exact top-k of ``weight_scores`` at the layer's density (always per
      layer: ``scope`` only concerns kernel connectivity);
    - dense layers: nothing.

    Post-processing only: privacy is spent by whatever produced the scores, not here.

    Parameters
    ----------
    shapes, policies, library, density
        As in :func:`random_ticket`; ``density`` must be a single float with ``scope="global"``.
    energy : Mapping[str, torch.Tensor]
        Non-negative ``(O, I, 3, 3)`` values per pattern layer (exactly those layers).
    kernel_scores : Mapping[str, torch.Tensor] or None
        Real ``(O, I)`` score per pattern layer (for example kernel vote counts), or ``None``.
    weight_scores : Mapping[str, torch.Tensor]
        Real score of the weight's shape per unstructured layer (exactly those layers).
    scope : {"layer", "global"}
        Connectivity pruning per layer or across pattern layers.
    metadata : TicketMetadata
        Stored in the ticket as given.
    connected : bool
        Re-choose each pattern layer's kernels (same count per layer) so that kept kernels lie on
        input->output paths (:func:`kernels.connect_kernels`): the ticket then keeps at least
        one path whenever every pattern layer keeps a kernel.

    Returns
    -------
    Ticket
    """
    if scope not in ("layer", "global"):
        raise KernelsError(f"scope must be one of 'layer', 'global'. Found {scope!r}.")
    if scope == "global" and isinstance(density, Mapping):
        raise KernelsError("density must be a single float with scope='global'. Found a mapping.")
    if not isinstance(metadata, TicketMetadata):
        raise KernelsError(f"metadata must be a TicketMetadata. Found {type(metadata).__name__}.")
    plan, entries = _plan(shapes, policies, density, library)
    patterned = {name: layer for name, layer in plan.items() if layer.policy is LayerPolicy.PATTERN}
    unstructured = {name: layer for name, layer in plan.items() if layer.policy is LayerPolicy.UNSTRUCTURED}
    _check_scores_cover("energy", energy, patterned, lambda shape: shape)
    if kernel_scores is not None:
        _check_scores_cover("kernel_scores", kernel_scores, patterned, lambda shape: shape[:2])
    _check_scores_cover("weight_scores", weight_scores, unstructured, lambda shape: shape)

    assignments: dict[str, torch.Tensor] = {}
    scores: dict[str, torch.Tensor] = {}
    for name in patterned:
        assert library is not None
        pattern_energies = pattern_energy(energy[name], library)
        assignments[name] = pattern_energies.argmax(dim=-1)  # first maximum: ties -> lower index
        if kernel_scores is None:
            scores[name] = pattern_energies.gather(-1, assignments[name].unsqueeze(-1)).squeeze(-1)
        else:
            scores[name] = kernel_scores[name]
    fractions: float | dict[str, float] = 0.0  # stays 0.0 only when there is no pattern layer
    if entries is not None and scope == "global":
        # A single density, so every pattern layer has the same kernel keep fraction.
        fractions = _keep_fraction("pattern layers", next(iter(patterned.values())).density, entries)
    elif entries is not None:
        fractions = {n: _keep_fraction(f"layer {n!r}", layer.density, entries) for n, layer in patterned.items()}
    connectivity = select_kernels(scores, keep_fraction=fractions, scope=scope)
    if connected and connectivity:
        connectivity = connect_kernels(connectivity, scores)  # DESIGN.md 3: no layer collapse

    layers: dict[str, LayerTicket] = {}
    for name, layer in plan.items():
        if layer.policy is LayerPolicy.PATTERN:
            layers[name] = LayerTicket(
                policy=layer.policy,
                shape=layer.shape,
                library=library,
                assignment=assignments[name],
                connectivity=connectivity[name],
            )
        elif layer.policy is LayerPolicy.UNSTRUCTURED:
            mask = unstructured_mask(weight_scores[name], density=layer.density)
            layers[name] = LayerTicket(policy=layer.policy, shape=layer.shape, unstructured_mask=mask)
        else:
            layers[name] = LayerTicket(policy=layer.policy, shape=layer.shape)
    return Ticket(layers=layers, metadata=metadata)
