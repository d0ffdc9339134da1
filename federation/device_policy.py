"""A device's own privacy policy: what it releases is bounded by its node config, not by the server.

DESIGN.md 5.4b: the record unit promises each device a guarantee that holds even if the server
is hostile, so the device decides. Its policy comes from its ``--node-config`` (a real SuperNode),
or, in a simulation, from the run config (:func:`simulation_node_config`, one per virtual node):

- ``max-vote-epsilon`` (default 1): the largest ε of one vote, summed over its domains
  (sequential composition within a round). A vote without noise (ε = inf: the client unit, whose
  noise is central, or a non-private reference search) exceeds any finite cap: a device that
  trusts the server with its plain top-k says so with ``max-vote-epsilon=inf``.
- ``max-vote-delta`` (default 1e-5): the largest δ of one vote, summed over its domains (only
  the Gaussian noisy top-k has δ > 0).
- ``max-train-delta`` (default 1e-5): the largest ``train-delta`` of a DP-SGD training it runs
  (its ε is priced by the device at the δ the run asks; a large δ would make that ε meaningless).
- ``mechanisms`` (default ``laplace-topk,gumbel-topk,gaussian-topk``): the local noisy top-k it runs.
- ``min-examples`` (default 1): the smallest n it scores a vote on. ε-DP holds for any n (the
  noise is calibrated to Δ = C/n); a device may want no vote to reflect only a few examples.
- ``privacy-log`` / ``max-epsilon`` (:mod:`federation.device_log`): its own record of every
  release and its lifetime Σε budget over that record.
- ``noise-seed`` (simulation only): reproducible noise. Never taken from a message: a seed the
  server knows would let it remove the noise (DESIGN.md 5.5).

The device computes Δ = C/n (Gaussian: Δ₂ = √2·C/n) from the n it scores and the C its scores
are bounded by, and the noise scale from the ε (and δ) its policy admits; the server's Δ is only compared with it. A request
outside the policy raises :class:`PolicyRefusal` naming the rule: the reply is an error, which
releases nothing and which the server counts as refused and never charges.

What a vote costs is decided here too: ε = 0 only for a read of nothing private (a data-free
score at the public weights, no local training); local training before scoring makes even a
data-free score depend on the examples, an unnoised release (ε = inf). A ``train`` reply (plain
weights after local SGD) is an ε = inf release: refused under ``max-epsilon``, logged otherwise.
Under ``train-privacy = dp-sgd`` it costs its round's ε (:mod:`federation.dp_training`), which the
device computes itself and which must fit its ``max-epsilon``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from federation.config import MECHANISMS, Config
from federation.device_log import DeviceLog, DeviceLogError, device_log_of
from federation.errors import ConfigError, PolicyRefusal
from federation.messages import (
    NODE_MAX_VOTE_DELTA,
    NODE_MAX_TRAIN_DELTA,
    NODE_MAX_VOTE_EPSILON,
    NODE_MECHANISMS,
    NODE_MIN_EXAMPLES,
    NODE_NOISE_SEED,
)
from privacy import UNIT_CLIENT
from storage import encode_float

if TYPE_CHECKING:
    from federation.voting import VoteRequest

__all__ = [
    "DEFAULT_MAX_VOTE_DELTA",
    "DEFAULT_MAX_VOTE_EPSILON",
    "DevicePolicy",
    "PolicyRefusal",
    "device_policy_of",
    "simulation_node_config",
]

DEFAULT_MAX_VOTE_EPSILON: Final = 1.0  # the main job's whole budget: one vote never costs more
DEFAULT_MAX_VOTE_DELTA: Final = 1e-5  # the config's default δ budget (delta): likewise for δ
# Slack for comparing the server's Δ with the device's C/n (both are one float division).
_SENSITIVITY_RTOL: Final = 1e-12


@dataclass(frozen=True, kw_only=True)
class DevicePolicy:
    """What this device agrees to release (see the module docstring)."""

    max_vote_epsilon: float = field(default=DEFAULT_MAX_VOTE_EPSILON, metadata={"help": "largest ε of one vote"})
    max_vote_delta: float = field(default=DEFAULT_MAX_VOTE_DELTA, metadata={"help": "largest δ of one vote"})
    max_train_delta: float = field(default=DEFAULT_MAX_VOTE_DELTA, metadata={"help": "largest train-delta of DP-SGD"})
    mechanisms: tuple[str, ...] = field(default=MECHANISMS, metadata={"help": "local noisy top-k it runs"})
    min_examples: int = field(default=1, metadata={"help": "smallest n a vote is scored on"})
    log: DeviceLog | None = field(default=None, metadata={"help": "its own release log and Σε budget"})
    noise_seed: int | None = field(default=None, metadata={"help": "simulation only: reproducible noise"})

    def __post_init__(self) -> None:
        if math.isnan(self.max_vote_epsilon) or self.max_vote_epsilon < 0:
            raise ConfigError(f"{NODE_MAX_VOTE_EPSILON} must be a number >= 0 (inf = any). Found {self.max_vote_epsilon!r}.")
        if not 0.0 <= self.max_vote_delta < 1.0:
            raise ConfigError(f"{NODE_MAX_VOTE_DELTA} must be a number in [0, 1). Found {self.max_vote_delta!r}.")
        if not 0.0 <= self.max_train_delta < 1.0:
            raise ConfigError(f"{NODE_MAX_TRAIN_DELTA} must be a number in [0, 1). Found {self.max_train_delta!r}.")
        unknown = [name for name in self.mechanisms if name not in MECHANISMS]
        if unknown or not self.mechanisms:
            raise ConfigError(f"{NODE_MECHANISMS} must be a comma-separated list of {', '.join(MECHANISMS)}."
                              f" Found {','.join(self.mechanisms)!r}.")
        if self.min_examples < 1:
            raise ConfigError(f"{NODE_MIN_EXAMPLES} must be an int >= 1. Found {self.min_examples!r}.")
        if self.noise_seed is not None and self.noise_seed < 0:
            raise ConfigError(f"{NODE_NOISE_SEED} must be an int >= 0 (or absent: OS entropy). Found {self.noise_seed!r}.")

    # -- votes -------------------------------------------------------------------------------

    def vote_charge(self, request: VoteRequest, config: Config, *, reads_data: bool) -> dict[str, float]:
        """The ε of each domain of this vote as the device counts it, once the request is admitted.

        Parameters
        ----------
        request
            The round's vote configuration (parsed, :class:`federation.voting.VoteRequest`).
        config
            The run config of the message (the score, ``score-train-epochs``).
        reads_data
            Whether the scorer reads examples (``models.scores``: the device's own registry).

        Raises
        ------
        PolicyRefusal
            If the request is outside this policy; the rule is named.
        """
        if config.noise_seed >= 0:  # DESIGN.md 5.5: a seed never comes from the server
            raise PolicyRefusal(NODE_NOISE_SEED, f"the server sent noise-seed {config.noise_seed}: noise it can"
                                " predict is no noise")
        trained = config.score_train_epochs > 0
        if not reads_data and not trained:
            return {domain.name: 0.0 for domain in request.domains}  # nothing private is read (ε = 0)
        noisy = [d.name for d in request.domains if math.isfinite(d.epsilon)] if reads_data else []
        if trained and noisy:
            # DESIGN.md 4: local training makes every score depend on every example: Δ = C/n is void.
            raise PolicyRefusal("score-train-epochs", f"training {config.score_train_epochs} epochs before a"
                                " record-level noisy vote voids its sensitivity C/n")
        charge = {d.name: (d.epsilon if reads_data and not trained else math.inf) for d in request.domains}
        if noisy and request.mechanism not in self.mechanisms:
            raise PolicyRefusal(NODE_MECHANISMS, f"mechanism {request.mechanism!r} is not one this device runs"
                                f" ({','.join(self.mechanisms)})")
        if reads_data and request.min_examples < self.min_examples:
            raise PolicyRefusal(NODE_MIN_EXAMPLES, f"the vote scores {request.min_examples} examples, fewer than this"
                                f" device's {NODE_MIN_EXAMPLES} {self.min_examples}")
        if reads_data and noisy:
            own = request.own_sensitivity
            if not math.isclose(request.sensitivity, own, rel_tol=_SENSITIVITY_RTOL):
                raise PolicyRefusal("sensitivity", f"the server's Δ {request.sensitivity:g} is not C/n ="
                                    f" {request.clip_bound:g}/{request.min_examples} = {own:g}, the Δ this"
                                    " device calibrates to (it would charge a release it did not make)")
        total = math.fsum(charge.values())
        if total > self.max_vote_epsilon:
            raise PolicyRefusal(NODE_MAX_VOTE_EPSILON, f"the vote asks ε {total:g} > this device's"
                                f" {NODE_MAX_VOTE_EPSILON} {self.max_vote_epsilon:g}")
        delta = math.fsum(d.delta for d in request.domains) if reads_data and noisy else 0.0
        if delta > self.max_vote_delta:
            raise PolicyRefusal(NODE_MAX_VOTE_DELTA, f"the vote asks δ {delta:g} > this device's"
                                f" {NODE_MAX_VOTE_DELTA} {self.max_vote_delta:g}")
        self.check_budget(total)
        return charge

    def check_budget(self, epsilon: float) -> None:
        """Refuse a release of ``epsilon`` that would take the device's log over ``max-epsilon``."""
        if self.log is None:
            return
        try:
            self.log.check(epsilon)
        except DeviceLogError as err:
            raise PolicyRefusal("max-epsilon", str(err)) from None

    def record(self, *, run: str, server_round: int, attempt: int, domains: dict[str, float], kind: str) -> None:
        """Append the release to the device's own log (fsynced) before its reply leaves."""
        if self.log is None:
            return
        try:
            self.log.record(run=run, server_round=server_round, attempt=attempt, domains=domains, kind=kind)
        except DeviceLogError as err:
            raise PolicyRefusal("max-epsilon", str(err)) from None

    def note_refusal(self, refusal: PolicyRefusal, *, run: str, server_round: int, attempt: int, kind: str) -> None:
        """Put a refused request on the device's own log (ε = 0), when it keeps one."""
        if self.log is not None:
            self.log.note_refusal(run=run, server_round=server_round, attempt=attempt, kind=kind, rule=refusal.rule,
                                  reason=str(refusal))

    # -- training ----------------------------------------------------------------------------

    def admit_train(self, *, dp_sgd: bool, train_delta: float) -> None:
        """A plain ``train`` reply (weights after plain SGD) is an ε = inf release, refused under
        ``max-epsilon``; a DP-SGD one is priced by its round's ε (:meth:`check_budget`, before training),
        at a ``train-delta`` of at most ``max-train-delta``."""
        if dp_sgd and train_delta > self.max_train_delta:
            raise PolicyRefusal(NODE_MAX_TRAIN_DELTA, f"the run asks DP-SGD at train-delta {train_delta:g} > this"
                                f" device's {NODE_MAX_TRAIN_DELTA} {self.max_train_delta:g}")
        if not dp_sgd and self.log is not None and self.log.max_epsilon is not None:
            raise PolicyRefusal("train", "plain trained weights are an ε = inf release, and this device has"
                                f" max-epsilon {self.log.max_epsilon:g} (run with train-privacy=dp-sgd)")

    # -- people ------------------------------------------------------------------------------

    def describe(self) -> list[str]:
        """The policy in a few lines, as ``dppt check-node`` prints it."""
        cap = "any (inf)" if math.isinf(self.max_vote_epsilon) else f"{self.max_vote_epsilon:g}"
        lines = [
            f"policy     max ε per vote {cap}, max δ per vote {self.max_vote_delta:g}; mechanisms"
            f" {', '.join(self.mechanisms)}; scores >= {self.min_examples} examples; DP-SGD at δ <="
            f" {self.max_train_delta:g}",
        ]
        if self.log is None:
            lines.append("policy     no privacy-log: releases are not recorded on this device; train is answered (ε = inf)")
        elif self.log.max_epsilon is None:
            lines.append(f"policy     log {self.log.path}, no max-epsilon: train is answered and logged as ε = inf")
        else:
            lines.append(f"policy     log {self.log.path}, max-epsilon {self.log.max_epsilon:g}: train is refused (ε = inf)"
                         " unless train-privacy=dp-sgd")
        if self.noise_seed is not None:
            lines.append(f"policy     noise-seed {self.noise_seed}: reproducible noise, NOT PRIVATE (simulation only)")
        return lines


def _number(node_config: Mapping[str, Any], key: str, default: float) -> float:
    raw = node_config.get(key)
    if raw is None or str(raw).strip() == "":
        return default
    try:
        return float(str(raw).strip()) if not isinstance(raw, (int, float)) or isinstance(raw, bool) else float(raw)
    except ValueError:
        raise ConfigError(f"{key} in the node config must be a number. Found {raw!r}.") from None


def _integer(node_config: Mapping[str, Any], key: str) -> int | None:
    raw = node_config.get(key)
    if raw is None or str(raw).strip() == "":
        return None
    if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
        raise ConfigError(f"{key} in the node config must be an int. Found {raw!r}.")
    try:
        return int(raw) if isinstance(raw, (int, float)) else int(str(raw).strip())
    except ValueError:
        raise ConfigError(f"{key} in the node config must be an int. Found {raw!r}.") from None


def device_policy_of(node_config: Mapping[str, Any]) -> DevicePolicy:
    """The :class:`DevicePolicy` a node config sets (defaults for every key it leaves out).

    Raises
    ------
    ConfigError
        If a policy value is malformed.
    DeviceLogError
        If ``max-epsilon`` comes without ``privacy-log`` or is not a number.
    """
    raw_mechanisms = node_config.get(NODE_MECHANISMS)
    mechanisms = MECHANISMS if raw_mechanisms is None else tuple(
        part.strip() for part in str(raw_mechanisms).split(",") if part.strip()
    )
    min_examples = _integer(node_config, NODE_MIN_EXAMPLES)
    return DevicePolicy(
        max_vote_epsilon=_number(node_config, NODE_MAX_VOTE_EPSILON, DEFAULT_MAX_VOTE_EPSILON),
        max_vote_delta=_number(node_config, NODE_MAX_VOTE_DELTA, DEFAULT_MAX_VOTE_DELTA),
        max_train_delta=_number(node_config, NODE_MAX_TRAIN_DELTA, DEFAULT_MAX_VOTE_DELTA),
        mechanisms=mechanisms,
        min_examples=1 if min_examples is None else min_examples,
        log=device_log_of(node_config),
        noise_seed=_integer(node_config, NODE_NOISE_SEED),
    )


def simulation_node_config(config: Config) -> dict[str, str | int | float]:
    """The policy of every virtual node of a simulation, derived from the run config.

    In a simulation one person runs the server and every client, so each node agrees to what the
    run config asks: DP-SGD at its ``train-delta``, votes up to the whole record budget ``epsilon`` and ``delta`` (``inf`` when the client unit
    or the non-private reference search sends plain top-k), the configured ``mechanism``, the
    configured ``score-examples``, and the user's ``noise-seed`` (reproducible, not private): the
    one place a seed reaches a client, through the node config and never through a message.
    """
    plain = config.unit == UNIT_CLIENT or config.reference_search or math.isinf(config.epsilon)
    values: dict[str, str | int | float] = {
        NODE_MAX_VOTE_EPSILON: encode_float(math.inf if plain else config.epsilon),
        NODE_MAX_VOTE_DELTA: encode_float(config.delta),
        NODE_MAX_TRAIN_DELTA: encode_float(config.train_delta),
        NODE_MECHANISMS: config.mechanism,
        NODE_MIN_EXAMPLES: config.score_examples,
    }
    if config.noise_seed >= 0:
        values[NODE_NOISE_SEED] = config.noise_seed
    return values
