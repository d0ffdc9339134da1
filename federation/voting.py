"""A client's vote: scores on its own examples, then one record-level noisy top-k per domain.

Reads the round's vote configuration (:mod:`strategies.keys`), never trusts it blindly, and
releases only index arrays. The calibration is the one of DESIGN.md 5.1 and is applied here:

- Scores are means over exactly ``n = min-examples`` examples (a fresh uniform subset of the
  client's partition each round) of per-example contributions bounded to ``[0, C]``
  (``models.scores`` clips or normalises), so one example replaced moves every coordinate by at
  most ``Δ = C / n``. The device computes that Δ itself (:attr:`VoteRequest.own_sensitivity`;
  its policy, :mod:`federation.device_policy`, refuses a server whose Δ differs) and checks that
  the scorer's own sensitivity is at most Δ before it draws any noise.
- Each domain's vote is :func:`privacy.laplace_topk` (or :func:`privacy.gumbel_topk`) with
  ``k = c`` (the domain's max-entries), the domain's ``ε`` and that ``Δ``: noise ``2kΔ/ε``, ε-DP
  under replace-one (Ding et al. 2019; Durfee & Rogers 2019). ``ε = inf`` (non-private
  reference, or the client unit alone) adds no noise.
- Under ``gaussian-topk`` each example's vector is clipped to L2 norm ``C`` (``clip-mode l2``),
  the device's own sensitivity is ``Δ₂ = √2·C / n`` (:func:`privacy.gaussian_record_sensitivity`,
  derived in :mod:`privacy.gaussian`), and each domain's vote is :func:`privacy.gaussian_topk`
  at the domain's ``(ε, δ)``: noise ``N(0, (z(ε, δ)·Δ₂)²)`` on every score, whatever ``k``.
- Data-free scores (magnitude, SynFlow) read no example: their top-k is released without noise
  (an ε = 0 event on the server).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from federation.errors import VoteError
from kernels import enumerate_candidates
from models import apply_masks
from models.scores import ClipMode, Domain, ScoreRequest, get
from privacy import GAUSSIAN_TOPK, GUMBEL_TOPK, LAPLACE_TOPK, gaussian_record_sensitivity, gaussian_topk, gumbel_topk, laplace_topk
from strategies import keys
from strategies.aggregation import plain_topk
from strategies.domains import KERNELS_PREFIX, PATTERNS_DOMAIN
from strategies.settings import SCORE_DATA_FREE, SCORE_RECORD, SCORE_SOURCES

__all__ = ["VoteDomainRequest", "VoteError", "VoteRequest", "build_votes", "ticket_masks"]

# Slack for the client's check that its scores' sensitivity is within the planned Δ (float rounding of C/n).
_SENSITIVITY_RTOL = 1e-9
# The clients' local mechanisms (DESIGN.md 5.1), by the name privacy gives them.
_LOCAL_TOPK = {LAPLACE_TOPK: laplace_topk, GUMBEL_TOPK: gumbel_topk, GAUSSIAN_TOPK: gaussian_topk}


@dataclass(frozen=True, kw_only=True)
class VoteDomainRequest:
    """One domain of the round, as the server configured it."""

    name: str = field(metadata={"help": "domain name"})
    size: int = field(metadata={"help": "number of items"})
    max_entries: int = field(metadata={"help": "c: indices to release"})
    epsilon: float = field(metadata={"help": "record-level ε of this release"})
    delta: float = field(default=0.0, metadata={"help": "record-level δ of this release (gaussian-topk)"})
    layers: tuple[str, ...] = field(metadata={"help": "layers the domain pools"})


@dataclass(frozen=True, kw_only=True)
class VoteRequest:
    """The parsed vote configuration of one round."""

    server_round: int = field(metadata={"help": "round answered"})
    score_source: str = field(metadata={"help": "record or data-free"})
    mechanism: str = field(metadata={"help": "laplace-topk, gumbel-topk or data-free"})
    clip_mode: str = field(metadata={"help": "normalise or clip: how each example's contribution is bounded"})
    clip_bound: float = field(metadata={"help": "C"})
    sensitivity: float = field(metadata={"help": "Δ the noise is calibrated to"})
    min_examples: int = field(metadata={"help": "n: examples scored"})
    density: float = field(metadata={"help": "density of the ticket being built"})
    pattern_entries: int = field(metadata={"help": "m"})
    centre_fixed: bool = field(metadata={"help": "candidates keep the centre"})
    domains: tuple[VoteDomainRequest, ...] = field(metadata={"help": "the round's domains"})

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> VoteRequest:
        """Parse the ``vote-config`` record; a missing or ill-typed field raises :class:`VoteError`."""

        def get_field(name: str, kind: type | tuple[type, ...]) -> Any:
            if name not in record:
                raise VoteError(f"vote-config must have field {name!r}. Found keys {sorted(record)}.")
            value = record[name]
            if isinstance(value, bool) and kind is not bool:
                raise VoteError(f"vote-config field {name!r} must be {kind}. Found {value!r}.")
            if not isinstance(value, kind):
                raise VoteError(f"vote-config field {name!r} must be {kind}. Found {value!r}.")
            return value

        names = get_field(keys.DOMAINS_FIELD, list)
        domains = []
        for name in names:
            if not isinstance(name, str):
                raise VoteError(f"vote-config domains must be strings. Found {name!r}.")
            layers = get_field(keys.domain_field(name, keys.DOMAIN_LAYERS_FIELD), list)
            domains.append(
                VoteDomainRequest(
                    name=name,
                    size=int(get_field(keys.domain_field(name, keys.DOMAIN_SIZE_FIELD), int)),
                    max_entries=int(get_field(keys.domain_field(name, keys.DOMAIN_MAX_ENTRIES_FIELD), int)),
                    epsilon=float(get_field(keys.domain_field(name, keys.DOMAIN_EPSILON_FIELD), (int, float))),
                    delta=float(get_field(keys.domain_field(name, keys.DOMAIN_DELTA_FIELD), (int, float)))
                    if keys.domain_field(name, keys.DOMAIN_DELTA_FIELD) in record else 0.0,
                    layers=tuple(str(layer) for layer in layers),
                )
            )
        request = cls(
            server_round=int(get_field(keys.ROUND_FIELD, int)),
            score_source=str(get_field(keys.SCORE_SOURCE_FIELD, str)),
            mechanism=str(get_field(keys.MECHANISM_FIELD, str)),
            clip_mode=str(get_field(keys.CLIP_MODE_FIELD, str)),
            clip_bound=float(get_field(keys.CLIP_BOUND_FIELD, (int, float))),
            sensitivity=float(get_field(keys.SENSITIVITY_FIELD, (int, float))),
            min_examples=int(get_field(keys.MIN_EXAMPLES_FIELD, int)),
            density=float(get_field(keys.DENSITY_FIELD, (int, float))),
            pattern_entries=int(get_field(keys.PATTERN_ENTRIES_FIELD, int)),
            centre_fixed=bool(get_field(keys.CENTRE_FIXED_FIELD, bool)),
            domains=tuple(domains),
        )
        request.check()
        return request

    @property
    def own_sensitivity(self) -> float:
        """Δ = C / n from the C the scores are bounded by and the n examples scored (DESIGN.md 5.1);
        under ``clip-mode l2`` (the Gaussian vote) the L2 ``Δ₂ = √2·C / n``.

        The device calibrates its noise to this, never to the server's ``sensitivity`` field.
        """
        if self.clip_mode == ClipMode.L2:
            return gaussian_record_sensitivity(clip_bound=self.clip_bound, num_examples=self.min_examples)
        return self.clip_bound / self.min_examples

    def check(self) -> None:
        """Refuse configurations whose release would not be what the server charged."""
        if self.score_source not in SCORE_SOURCES:
            raise VoteError(f"score-source must be one of {list(SCORE_SOURCES)}. Found {self.score_source!r}.")
        if self.score_source == SCORE_RECORD and self.mechanism not in _LOCAL_TOPK:
            raise VoteError(f"mechanism must be one of {list(_LOCAL_TOPK)}. Found {self.mechanism!r}.")
        gaussian = self.mechanism == GAUSSIAN_TOPK
        if self.score_source == SCORE_DATA_FREE:
            modes = [mode.value for mode in ClipMode]
        else:  # L2 bounds the Gaussian vote, and the Gaussian vote only (its Δ₂ is an L2 figure)
            modes = [ClipMode.L2.value] if gaussian else [mode.value for mode in ClipMode if mode is not ClipMode.L2]
        if self.clip_mode not in modes:
            raise VoteError(f"clip-mode must be one of {modes} with mechanism {self.mechanism!r}. Found {self.clip_mode!r}.")
        if self.min_examples < 1:
            raise VoteError(f"min-examples must be >= 1. Found {self.min_examples}.")
        if self.score_source == SCORE_RECORD:
            # The server's Δ is compared with own_sensitivity by the device's policy
            # (federation.device_policy), which refuses a mismatch by its rule's name.
            for domain in self.domains:
                if math.isnan(domain.epsilon) or domain.epsilon <= 0:
                    raise VoteError(f"epsilon of domain {domain.name!r} must be > 0. Found {domain.epsilon}.")
                if not 0.0 <= domain.delta < 1.0:
                    raise VoteError(f"delta of domain {domain.name!r} must be in [0, 1). Found {domain.delta}.")
                if gaussian and math.isfinite(domain.epsilon) and domain.delta == 0.0:
                    raise VoteError(f"delta of domain {domain.name!r} must be > 0 with gaussian-topk. Found 0.")


def ticket_masks(record: Mapping[str, Any] | None) -> dict[str, torch.Tensor]:
    """The masks of the current ticket (``ticket`` record of the message), layer -> bool tensor."""
    if record is None:
        return {}
    masks: dict[str, torch.Tensor] = {}
    for key in record:
        if key.startswith(keys.MASK_PREFIX):
            array = record[key].numpy()
            if array.dtype != np.bool_:
                raise VoteError(f"ticket mask {key!r} must be a bool array. Found {array.dtype}.")
            masks[key[len(keys.MASK_PREFIX):]] = torch.from_numpy(array.copy())
    return masks


def _score_request(request: VoteRequest, *, policies: Mapping[str, Any]) -> ScoreRequest:
    domains = {Domain.PATTERNS}
    if any(d.name.startswith(KERNELS_PREFIX) for d in request.domains):
        domains.add(Domain.KERNELS)
    mode = ClipMode(request.clip_mode)  # the bounding the server planned Δ for, from the same record as C
    bound = None
    if mode in (ClipMode.CLIP, ClipMode.L2):
        bound = {"pooled_patterns": request.clip_bound, "kernels": request.clip_bound}
    elif request.score_source == SCORE_RECORD and request.clip_bound != 1.0:
        raise VoteError(f"clip-bound must be 1 with clip-mode normalise. Found {request.clip_bound}.")
    return ScoreRequest(
        domains=domains,
        policies=policies,
        candidates=enumerate_candidates(request.pattern_entries, centre_fixed=request.centre_fixed),
        clip_mode=mode,
        clip_bound=bound,
        density=request.density,
    )


def build_votes(
    model: nn.Module,
    request: VoteRequest,
    *,
    score: str,
    policies: Mapping[str, Any],
    masks: Mapping[str, torch.Tensor],
    data: tuple[torch.Tensor, torch.Tensor] | None,
    rng: np.random.Generator,
    generator: torch.Generator,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """One vote per domain (int64 indices) and a few plain metrics.

    How the scores are bounded (``clip-mode``, C) is read from ``request``, the record the server
    planned and charged Δ = C / n for, never from a second source.

    Parameters
    ----------
    model
        The model at the public weights (modified: the ticket's masks are applied).
    score
        Scorer name (``models.scores``).
    policies
        Layer policies of the ticket (pattern layers are the scored ones).
    masks
        The current ticket's masks (scores are taken on the masked model).
    data
        The client's examples, or ``None`` for data-free scores.
    rng
        Noise generator (:func:`privacy.make_rng`).
    generator
        Generator of the example subset.
    """
    scorer = get(score)
    if (request.score_source == SCORE_DATA_FREE) == scorer.data_dependent:
        raise VoteError(f"score-source {request.score_source!r} does not match the scorer {score!r}.")
    apply_masks(model, dict(masks))
    metrics: dict[str, float] = {}
    batch = None
    if scorer.data_dependent:
        assert data is not None
        images, labels = data
        available = int(labels.shape[0])
        if available < request.min_examples:
            # NOTE: n is treated as public (DESIGN.md 5.1); abstaining releases nothing and is not charged.
            raise VoteError(
                f"this client has {available} examples, fewer than min-examples = {request.min_examples}:"
                " it abstains (lower score-examples to let it vote)."
            )
        subset = torch.randperm(available, generator=generator)[: request.min_examples]
        batch = (images[subset], labels[subset])
        metrics["scored-examples"] = float(request.min_examples)
    result = scorer.score(model, _score_request(request, policies=policies), batch)
    votes: dict[str, np.ndarray] = {}
    for domain in request.domains:
        if domain.name == PATTERNS_DOMAIN:
            vector, key = result.vector("pooled_patterns"), "pooled_patterns"
        elif domain.name.startswith(KERNELS_PREFIX):
            layer = domain.name[len(KERNELS_PREFIX):]
            vector, key = result.vector("kernels", layer).reshape(-1), "kernels"
        else:
            raise VoteError(f"domain must be 'patterns' or 'kernels:<layer>'. Found {domain.name!r}.")
        scores = vector.detach().double().cpu().numpy()
        if scores.size != domain.size:
            raise VoteError(f"domain {domain.name!r} must have {scores.size} items here. Found size {domain.size}.")
        if request.score_source == SCORE_DATA_FREE:
            votes[domain.name] = plain_topk(scores, domain.max_entries)
            continue
        own = request.own_sensitivity  # DESIGN.md 5.4b: the device's own Δ = C/n, never the server's
        actual = result.sensitivity(key)
        if actual > own * (1 + _SENSITIVITY_RTOL):
            raise VoteError(f"scores of {domain.name!r} have sensitivity {actual} > Δ = C/n = {own}.")
        if request.mechanism == GAUSSIAN_TOPK and math.isinf(domain.epsilon):
            release_indices = plain_topk(scores, domain.max_entries)  # ε = inf: the reference, no noise
            votes[domain.name] = np.sort(np.asarray(release_indices, dtype=np.int64))
            continue
        if request.mechanism == GAUSSIAN_TOPK:
            # DESIGN.md 5.1, Gaussian noisy top-k: N(0, (z(ε, δ)·Δ₂)²), Δ₂ = √2·C/n (the device's own).
            release = gaussian_topk(scores, k=domain.max_entries, epsilon=domain.epsilon, delta=domain.delta,
                                    sensitivity=own, rng=rng)
        else:
            # DESIGN.md 5.1: one-shot noisy top-k, noise 2kΔ/ε with Δ = C/n (which the server charged).
            mechanism = _LOCAL_TOPK[request.mechanism]
            release = mechanism(scores, k=domain.max_entries, epsilon=domain.epsilon, sensitivity=own, rng=rng)
        votes[domain.name] = np.sort(np.asarray(release.indices, dtype=np.int64))
    return votes, metrics
