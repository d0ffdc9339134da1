"""Typed settings of the pattern-ticket search (frozen, keyword-only, validated at construction).

:class:`PrivacySettings` says how each round's votes are privatised and charged (DESIGN.md 5);
:class:`SearchSettings` says what the votes decide (library size, kernel domains) and how a
round runs (sampling, minimum replies).
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from models.scores import ClipMode
from privacy import GAUSSIAN_TOPK, GUMBEL_TOPK, LAPLACE_TOPK, NOISE_KINDS, gaussian_record_sensitivity
from strategies.errors import StrategyError

__all__ = [
    "CENTRAL_NOISE_KINDS",
    "LOCAL_MECHANISMS",
    "NO_CENTRAL_NOISE",
    "SCORE_DATA_FREE",
    "SCORE_RECORD",
    "SCORE_SOURCES",
    "SPLIT_RTOL",
    "PrivacySettings",
    "SearchSettings",
]

SCORE_RECORD: Final = "record"  # scores read private data: record-level noisy top-k on the client
SCORE_DATA_FREE: Final = "data-free"  # scores of public weights only (magnitude, synflow): ε = 0
SCORE_SOURCES: Final = (SCORE_RECORD, SCORE_DATA_FREE)
LOCAL_MECHANISMS: Final = (LAPLACE_TOPK, GUMBEL_TOPK, GAUSSIAN_TOPK)
NO_CENTRAL_NOISE: Final = "none"
CENTRAL_NOISE_KINDS: Final = (NO_CENTRAL_NOISE, *NOISE_KINDS)
# The split must mean what the config says (its fractions sum to 1 up to float rounding, as
# ``(1 - s) / L`` parts do). It is not a budget slack: the domains' ε are rounded down from the
# round's ε in exact arithmetic (strategies.domain_epsilon, DESIGN.md 5.4), whatever the float sum.
SPLIT_RTOL: Final = 1e-9


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise StrategyError(f"{name} must be an int >= {minimum}. Found {value!r}.")
    return value


def _check_epsilon(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value <= 0:
        raise StrategyError(f"{name} must be a number > 0 (inf = no noise). Found {value!r}.")
    return float(value)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise StrategyError(f"{name} must be one of {list(choices)}. Found {value!r}.")


def _check_split(split: object) -> Mapping[str, float]:
    if not isinstance(split, Mapping) or not split:
        raise StrategyError(f"epsilon_split must be a non-empty mapping domain -> fraction. Found {split!r}.")
    clean: dict[str, float] = {}
    for domain, fraction in split.items():
        if not isinstance(domain, str) or not domain:
            raise StrategyError(f"epsilon_split keys must be domain names. Found {domain!r}.")
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, (int, float))
            or not math.isfinite(fraction)
            or not 0.0 < fraction <= 1.0
        ):
            raise StrategyError(f"epsilon_split[{domain!r}] must be a number in (0, 1]. Found {fraction!r}.")
        clean[domain] = float(fraction)
    total = math.fsum(clean.values())
    if abs(total - 1.0) > SPLIT_RTOL:
        raise StrategyError(f"epsilon_split fractions must sum to 1. Found {total!r}.")
    return types.MappingProxyType(clean)


@dataclass(frozen=True, kw_only=True)
class PrivacySettings:
    """How one round's votes are privatised and charged.

    Per round, a client taking part spends ``record_epsilon`` (record unit) in total over the
    domains and the server spends ``client_epsilon`` (client unit, central noise only), each
    split over the domains by ``epsilon_split`` (basic composition within the round, DESIGN.md
    5.4). Record level: a client's scores are means of contributions clipped to ``[0, C]`` over at
    least ``min_examples`` examples, so every score moves by at most ``Δ = C / min_examples``
    (DESIGN.md 5.1); clients calibrate their noise to this Δ, so the charged ε holds for each.
    Under ``gaussian-topk`` each example's vector is clipped to L2 norm ``C`` instead
    (``clip_mode = l2``), the sensitivity is ``Δ₂ = √2·C / min_examples`` and each round also
    spends ``record_delta``, split over the domains as ε is (DESIGN.md 5.1, Gaussian noisy top-k).
    """

    epsilon_split: Mapping[str, float] = field(metadata={"help": "domain -> fraction of the round's ε; sums to 1"})
    score_source: str = field(default=SCORE_RECORD, metadata={"help": "record or data-free"})
    local_mechanism: str = field(default=LAPLACE_TOPK, metadata={"help": "laplace-topk or gumbel-topk"})
    record_epsilon: float = field(default=1.0, metadata={"help": "record-level ε per client per round"})
    record_delta: float = field(default=0.0, metadata={"help": "record-level δ per client per round (gaussian-topk only)"})
    clip_mode: str = field(default=ClipMode.NORMALISE.value, metadata={"help": "per-example bounding: normalise or clip"})
    clip_bound: float = field(default=1.0, metadata={"help": "C: per-example contributions lie in [0, C]"})
    min_examples: int = field(default=1, metadata={"help": "public lower bound n on a voting client's examples"})
    central_noise: str = field(default=NO_CENTRAL_NOISE, metadata={"help": "none, laplace or discrete-laplace"})
    client_epsilon: float = field(default=1.0, metadata={"help": "client-level ε per round (central noise)"})
    noise_seed: int | None = field(default=None, metadata={"help": "seed of the central noise; None = OS entropy"})
    phase: str = field(default="search", metadata={"help": "ledger phase of the search's events"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "epsilon_split", _check_split(self.epsilon_split))
        _check_choice("score_source", self.score_source, SCORE_SOURCES)
        _check_choice("local_mechanism", self.local_mechanism, LOCAL_MECHANISMS)
        _check_choice("central_noise", self.central_noise, CENTRAL_NOISE_KINDS)
        _check_choice("clip_mode", self.clip_mode, tuple(mode.value for mode in ClipMode))
        object.__setattr__(self, "record_epsilon", _check_epsilon("record_epsilon", self.record_epsilon))
        object.__setattr__(self, "client_epsilon", _check_epsilon("client_epsilon", self.client_epsilon))
        delta = self.record_delta
        if isinstance(delta, bool) or not isinstance(delta, (int, float)) or not 0.0 <= delta < 1.0:
            raise StrategyError(f"record_delta must be a number in [0, 1). Found {delta!r}.")
        gaussian = self.score_source == SCORE_RECORD and self.local_mechanism == GAUSSIAN_TOPK
        if gaussian and math.isfinite(self.record_epsilon) and (delta == 0.0 or self.clip_mode != ClipMode.L2):
            raise StrategyError("gaussian-topk needs record_delta > 0 and clip_mode 'l2'."
                                f" Found record_delta={delta!r}, clip_mode={self.clip_mode!r}.")
        if not gaussian and delta != 0.0:
            raise StrategyError(f"record_delta must be 0 unless the local mechanism is gaussian-topk. Found {delta!r}.")
        if self.clip_mode == ClipMode.L2 and self.score_source == SCORE_RECORD and self.local_mechanism != GAUSSIAN_TOPK:
            raise StrategyError(f"clip_mode 'l2' bounds the Gaussian vote only. Found local_mechanism {self.local_mechanism!r}.")
        object.__setattr__(self, "record_delta", float(delta))
        clip = self.clip_bound
        if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not (math.isfinite(clip) and clip > 0):
            raise StrategyError(f"clip_bound must be a finite number > 0. Found {clip!r}.")
        object.__setattr__(self, "clip_bound", float(clip))
        _check_int("min_examples", self.min_examples, 1)
        if self.noise_seed is not None:
            _check_int("noise_seed", self.noise_seed, 0)
        if not isinstance(self.phase, str) or not self.phase:
            raise StrategyError(f"phase must be a non-empty string. Found {self.phase!r}.")

    @property
    def sensitivity(self) -> float:
        """Record-level sensitivity of a client's scores (DESIGN.md 5.1): L∞ ``Δ = C / min_examples``,
        or under ``clip_mode = l2`` (the Gaussian vote) L2 ``Δ₂ = √2·C / min_examples``."""
        if self.clip_mode == ClipMode.L2:
            return gaussian_record_sensitivity(clip_bound=self.clip_bound, num_examples=self.min_examples)
        return self.clip_bound / self.min_examples

    @property
    def central(self) -> bool:
        """Whether the server adds central (client-level) noise."""
        return self.central_noise != NO_CENTRAL_NOISE


# Per-layer density rules of the pattern layers (strategies.domains.layer_densities).
ALLOCATIONS: Final = ("uniform", "erk")


@dataclass(frozen=True, kw_only=True)
class SearchSettings:
    """What the votes decide and how a round runs."""

    library_size: int = field(default=8, metadata={"help": "P: patterns in the library"})
    pattern_entries: int = field(default=4, metadata={"help": "m: kept entries per pattern"})
    centre_fixed: bool = field(default=True, metadata={"help": "candidate patterns keep the centre"})
    kernel_vote_layers: tuple[str, ...] = field(
        default=(), metadata={"help": "pattern layers whose connectivity is voted (kernels:<layer> domains)"}
    )
    scope: str = field(default="layer", metadata={"help": "magnitude connectivity per layer or global"})
    allocation: str = field(
        default="uniform",
        metadata={"help": "per-layer density of the pattern layers: uniform, or erk (Erdős–Rényi-Kernel, kernels.erk_densities)"},
    )
    connected: bool = field(
        default=True, metadata={"help": "re-choose kernels so the ticket keeps input->output paths (kernels.connect_kernels)"}
    )
    clients_per_round: int = field(default=0, metadata={"help": "clients sampled per round (at most those connected); 0 = all"})
    min_replies: int = field(default=1, metadata={"help": "replies needed to update the ticket"})
    sampling_seed: int = field(default=0, metadata={"help": "seed of the client sampling (not of noise)"})
    config_hash: str = field(default="", metadata={"help": "run config hash stored in each ticket"})
    identify_clients: bool = field(
        default=False,
        metadata={"help": "ask each new node for its stable client id (query.identity) and charge under it"},
    )
    identity_timeout: float = field(default=60.0, metadata={"help": "seconds to wait for identity replies"})

    def __post_init__(self) -> None:
        _check_int("library_size", self.library_size, 1)
        _check_int("pattern_entries", self.pattern_entries, 1)
        if self.pattern_entries > 9:
            raise StrategyError(f"pattern_entries must be an int in [1, 9]. Found {self.pattern_entries}.")
        if not isinstance(self.centre_fixed, bool):
            raise StrategyError(f"centre_fixed must be a bool. Found {self.centre_fixed!r}.")
        layers = self.kernel_vote_layers
        if isinstance(layers, str) or not all(isinstance(n, str) and n for n in layers):
            raise StrategyError(f"kernel_vote_layers must be a tuple of layer names. Found {layers!r}.")
        if len(set(layers)) != len(layers):
            raise StrategyError(f"kernel_vote_layers must be distinct. Found {layers!r}.")
        object.__setattr__(self, "kernel_vote_layers", tuple(layers))
        _check_choice("scope", self.scope, ("layer", "global"))
        if layers and self.scope != "layer":
            raise StrategyError(f"scope must be 'layer' when kernel_vote_layers are set. Found {self.scope!r}.")
        _check_choice("allocation", self.allocation, ALLOCATIONS)
        if self.allocation != "uniform" and self.scope != "layer":
            raise StrategyError(f"scope must be 'layer' with allocation {self.allocation!r}. Found {self.scope!r}.")
        if not isinstance(self.connected, bool):
            raise StrategyError(f"connected must be a bool. Found {self.connected!r}.")
        _check_int("clients_per_round", self.clients_per_round, 0)
        _check_int("min_replies", self.min_replies, 1)
        _check_int("sampling_seed", self.sampling_seed, 0)
        if not isinstance(self.identify_clients, bool):
            raise StrategyError(f"identify_clients must be a bool. Found {self.identify_clients!r}.")
        timeout = self.identity_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (math.isfinite(timeout) and timeout > 0):
            raise StrategyError(f"identity_timeout must be a finite number > 0. Found {timeout!r}.")
        if not isinstance(self.config_hash, str):
            raise StrategyError(f"config_hash must be a str. Found {self.config_hash!r}.")
