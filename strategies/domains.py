"""The vote domains of a round and the privacy events they plan.

- ``patterns``: pooled over every pattern layer, the ``N = candidate_count(m)`` candidate
  patterns; the library is the ``k = P`` winners, and a vote holds at most ``c = k`` entries.
- ``kernels:<layer>``: optional, per pattern layer listed in
  :attr:`SearchSettings.kernel_vote_layers`; domain ``O * I`` kernels, ``k = c`` = the kernels
  the layer keeps at the round's density.

:func:`plan_round_events` lists the round's releases (DESIGN.md 5.4): per domain one
record-unit event charged to every participant (``ε = 0`` data-free events for data-free
scores), and, with central noise, one client-unit (server) event. Domains compose
sequentially within the round; their ε are the round's ε times the configured split,
rounded down (:func:`domain_epsilon`) so that they sum to at most the round's ε exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Final

from kernels import LayerPolicy, candidate_count, erk_densities, kept_count, kernel_keep_fraction
from privacy import (
    GAUSSIAN_TOPK,
    UNIT_CLIENT,
    UNIT_RECORD,
    MechanismSpec,
    PrivacyEvent,
    data_free_spec,
    gaussian_topk_spec,
    histogram_calibration,
    share,
    topk_spec,
)
from strategies.errors import StrategyError
from strategies.settings import SCORE_DATA_FREE, PrivacySettings, SearchSettings

__all__ = [
    "INT64_BYTES",
    "KERNELS_PREFIX",
    "PATTERNS_DOMAIN",
    "VoteDomain",
    "build_domains",
    "check_split",
    "domain_delta",
    "domain_epsilon",
    "domain_names",
    "kernel_domain_name",
    "layer_densities",
    "plan_round_events",
]

PATTERNS_DOMAIN: Final = "patterns"
KERNELS_PREFIX: Final = "kernels:"
INT64_BYTES: Final = 8


def kernel_domain_name(layer: str) -> str:
    """Name of the kernel-connectivity domain of ``layer``: ``"kernels:<layer>"``."""
    return f"{KERNELS_PREFIX}{layer}"


@dataclass(frozen=True, kw_only=True)
class VoteDomain:
    """One vote domain of a round.

    Parameters
    ----------
    name
        ``"patterns"`` or ``"kernels:<layer>"``.
    size
        Number of items; a vote's indices lie in ``[0, size)``.
    top_k
        ``K``: winners the server selects.
    max_entries
        ``c``: most indices a vote may hold (the histogram's L1 sensitivity per client).
    layer
        The layer of a kernel domain, ``None`` for the pooled patterns domain.
    layers
        Layers whose scores the domain pools.
    """

    name: str = field(metadata={"help": "domain name"})
    size: int = field(metadata={"help": "number of items"})
    top_k: int = field(metadata={"help": "K, winners"})
    max_entries: int = field(metadata={"help": "c, most entries per vote"})
    layer: str | None = field(metadata={"help": "layer of a kernel domain"})
    layers: tuple[str, ...] = field(metadata={"help": "layers pooled by the domain"})

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise StrategyError(f"name must be a non-empty string. Found {self.name!r}.")
        for name, value, low, high in (
            ("size", self.size, 1, None),
            ("top_k", self.top_k, 1, self.size),
            ("max_entries", self.max_entries, 1, self.size),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
                bound = f"[{low}, {high}]" if high else f">= {low}"
                raise StrategyError(f"{name} of domain {self.name!r} must be an int {bound}. Found {value!r}.")
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise StrategyError(f"layers of domain {self.name!r} must be non-empty. Found ().")

    @property
    def max_payload_bytes(self) -> int:
        """Largest accepted vote payload: ``c`` int64 entries."""
        return INT64_BYTES * self.max_entries


def _pattern_layers(policies: Mapping[str, LayerPolicy | str]) -> list[str]:
    return [name for name, policy in policies.items() if LayerPolicy(policy) is LayerPolicy.PATTERN]


def domain_names(policies: Mapping[str, LayerPolicy | str], settings: SearchSettings) -> tuple[str, ...]:
    """Names of the domains of every round (they do not depend on the density)."""
    patterned = _pattern_layers(policies)
    if not patterned:
        raise StrategyError(f"policies must name at least one pattern layer. Found {dict(policies)!r}.")
    unknown = [layer for layer in settings.kernel_vote_layers if layer not in patterned]
    if unknown:
        raise StrategyError(f"kernel_vote_layers must be pattern layers {patterned}. Found {unknown}.")
    return (PATTERNS_DOMAIN, *(kernel_domain_name(layer) for layer in settings.kernel_vote_layers))


def layer_densities(
    *,
    shapes: Mapping[str, tuple[int, ...]],
    policies: Mapping[str, LayerPolicy | str],
    settings: SearchSettings,
    density: float,
) -> float | dict[str, float]:
    """The weight density of each sparse layer for a round of weight ``density``.

    ``uniform``: every sparse layer at ``density`` (one float). ``erk``: the pattern layers at
    :func:`kernels.erk_densities` (their weighted mean is ``density``, each at most ``m / 9``),
    so that a small first convolution is not cut to one kernel (layer collapse); unstructured
    layers stay at ``density``. Public arithmetic on shapes: no privacy cost.
    """
    if settings.allocation == "uniform":
        return density
    patterned = _pattern_layers(policies)
    cap = settings.pattern_entries / 9
    densities: dict[str, float] = {
        name: density for name, policy in policies.items() if LayerPolicy(policy) is LayerPolicy.UNSTRUCTURED
    }
    densities.update(erk_densities({name: tuple(shapes[name]) for name in patterned}, density=min(density, cap), cap=cap))
    return densities


def build_domains(
    *,
    shapes: Mapping[str, tuple[int, ...]],
    policies: Mapping[str, LayerPolicy | str],
    settings: SearchSettings,
    density: float,
) -> tuple[VoteDomain, ...]:
    """The domains of a round building a ticket of weight ``density``.

    Raises
    ------
    StrategyError
        If there is no pattern layer, a kernel-vote layer is not a pattern layer, the library is
        larger than the candidates, or pattern layers cannot reach ``density`` (``> m / 9``).
    """
    names = domain_names(policies, settings)
    entries = settings.pattern_entries
    candidates = candidate_count(entries, centre_fixed=settings.centre_fixed)
    if settings.library_size > candidates:
        raise StrategyError(
            f"library_size must be <= {candidates} candidates of {entries} entries. Found {settings.library_size}."
        )
    per_layer = layer_densities(shapes=shapes, policies=policies, settings=settings, density=density)
    try:
        kernel_keep_fraction(density, entries)  # the round's density is reachable with m-entry patterns
        fractions = {layer: kernel_keep_fraction(per_layer[layer] if isinstance(per_layer, dict) else density, entries)
                     for layer in settings.kernel_vote_layers}
    except ValueError as err:
        raise StrategyError(f"density of round: {err}") from err
    size = settings.library_size
    domains = [
        VoteDomain(
            name=PATTERNS_DOMAIN, size=candidates, top_k=size, max_entries=size, layer=None,
            layers=tuple(_pattern_layers(policies)),
        )
    ]
    for name, layer in zip(names[1:], settings.kernel_vote_layers, strict=True):
        out_channels, in_channels = shapes[layer][:2]
        total = out_channels * in_channels
        kept = kept_count(fractions[layer], total)
        if kept == 0:
            raise StrategyError(f"density must keep at least one kernel of layer {layer!r}. Found {density}.")
        domains.append(VoteDomain(name=name, size=total, top_k=kept, max_entries=kept, layer=layer, layers=(layer,)))
    return tuple(domains)


def check_split(domains: Sequence[VoteDomain] | Sequence[str], privacy: PrivacySettings) -> None:
    """Check that ``privacy.epsilon_split`` names exactly the round's domains."""
    names = [d.name if isinstance(d, VoteDomain) else d for d in domains]
    if sorted(privacy.epsilon_split) != sorted(names):
        raise StrategyError(
            f"epsilon_split keys must be exactly the domains {names}. Found {sorted(privacy.epsilon_split)}."
        )


def domain_epsilon(privacy: PrivacySettings, domain_name: str, unit: str) -> float:
    """The ε of domain ``domain_name`` in one round under ``unit`` (DESIGN.md 5.4).

    ``f_d`` times the round's ε of the unit (``record_epsilon`` for the record unit,
    ``client_epsilon`` for the client unit), rounded down to a float (:func:`privacy.share`), so
    that the domains of a round sum to at most the round's ε exactly and the accountant, which
    compares exactly, never finds a round above its share. Should the float split sum to a little
    more than 1 in exact arithmetic (``0.2 + 0.8`` does), every ``f_d`` is divided by that
    exact sum first. The planned events, the clients' vote configuration and the central release
    all take their ε from here, so the ε used is the ε charged.

    Raises
    ------
    StrategyError
        If ``domain_name`` is not in the split or ``unit`` is not a privacy unit.
    """
    round_epsilon = {UNIT_RECORD: privacy.record_epsilon, UNIT_CLIENT: privacy.client_epsilon}
    if unit not in round_epsilon:
        raise StrategyError(f"unit must be one of {list(round_epsilon)}. Found {unit!r}.")
    return _domain_share(privacy, domain_name, round_epsilon[unit])


def _domain_share(privacy: PrivacySettings, domain_name: str, round_value: float) -> float:
    """``f_d`` times ``round_value``, rounded down; fractions divided by their exact sum when above 1."""
    split = privacy.epsilon_split
    if domain_name not in split:
        raise StrategyError(f"domain_name must be one of the split's domains {sorted(split)}. Found {domain_name!r}.")
    whole = sum((Fraction(fraction) for fraction in split.values()), Fraction(0))
    return share(round_value, Fraction(split[domain_name]) / max(whole, Fraction(1)))


def domain_delta(privacy: PrivacySettings, domain_name: str) -> float:
    """The record-level δ of domain ``domain_name`` in one round: ``f_d`` times ``record_delta``,
    rounded down exactly as :func:`domain_epsilon` rounds ε (0 unless the vote is Gaussian)."""
    return _domain_share(privacy, domain_name, privacy.record_delta)


def plan_round_events(
    domains: Sequence[VoteDomain],
    privacy: PrivacySettings,
    *,
    participants: Sequence[str],
    server_round: int,
    attempt: int = 0,
    include_central: bool = True,
) -> tuple[PrivacyEvent, ...]:
    """The privacy events of one round for ``participants`` (DESIGN.md 5.4).

    Per domain ``d`` with fraction ``f_d`` of the split:

    - record unit, charged to each participant: data-read scores,
      :func:`privacy.topk_spec` of ``privacy.local_mechanism`` with ``k = c_d``, ``ε = f_d *
      record_epsilon`` and ``Δ = C / min_examples``; data-free scores, an ``ε = 0`` event.
    - client unit (only with central noise and ``include_central``): the server's noisy top-K,
      :func:`privacy.histogram_calibration` with ``K_d``, ``c_d`` and ``ε = f_d * client_epsilon``.

    Each ``f_d * ε`` is :func:`domain_epsilon` (rounded down, exact sums at most the round's ε).

    An empty ``participants`` plans nothing (no vote is read, nothing is released).
    """
    check_split(domains, privacy)
    participants = tuple(participants)
    if not participants:
        return ()
    events: list[PrivacyEvent] = []
    for domain in domains:
        if privacy.score_source == SCORE_DATA_FREE:
            record = data_free_spec(UNIT_RECORD)
        elif privacy.local_mechanism == GAUSSIAN_TOPK and math.isinf(privacy.record_epsilon):
            record = MechanismSpec(unit=UNIT_RECORD, mechanism=GAUSSIAN_TOPK, sensitivity=privacy.sensitivity,
                                   sensitivity_norm="l2", noise_scale=0.0, epsilon=math.inf, delta=0.0)
        elif privacy.local_mechanism == GAUSSIAN_TOPK:
            # DESIGN.md 5.1, Gaussian noisy top-k: σ = z(ε_d, δ_d)·Δ₂ with Δ₂ = √2·C/n, whatever k.
            record = gaussian_topk_spec(
                epsilon=domain_epsilon(privacy, domain.name, UNIT_RECORD),
                delta=domain_delta(privacy, domain.name), sensitivity=privacy.sensitivity,
            )
        else:
            record = topk_spec(
                mechanism=privacy.local_mechanism, k=domain.max_entries,
                epsilon=domain_epsilon(privacy, domain.name, UNIT_RECORD), sensitivity=privacy.sensitivity,
            )
        specs = [record]
        if privacy.central and include_central:
            specs.append(
                histogram_calibration(
                    top_k=domain.top_k, max_entries=domain.max_entries,
                    epsilon=domain_epsilon(privacy, domain.name, UNIT_CLIENT), noise=privacy.central_noise,
                ).spec
            )
        events.extend(
            PrivacyEvent.from_spec(
                spec, round=server_round, phase=privacy.phase, domain=domain.name, layer=domain.layer,
                participants=participants, attempt=attempt,
            )
            for spec in specs
        )
    return tuple(events)
