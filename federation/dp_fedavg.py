"""Client-level DP-FedAvg of ticket training, with Flower's own wrapper (DESIGN.md 5.9).

``train-privacy = dp-fedavg``: the devices train plainly (their updates reach the server exactly,
so the server must be trusted, as under the client unit of the search), and Flower's
:class:`~flwr.serverapp.strategy.DifferentialPrivacyServerSideFixedClipping` makes the *published*
model client-level DP (McMahan et al. 2018; Andrew et al. 2021): each round it clips every
client's update Δᵢ = θᵢ - θ to L2 norm C = ``train-clip``, averages the m clipped updates of the
round with equal weights, and adds N(0, (zC/m)²) to every coordinate (``compute_stdv``).

Neighbouring relation: *zero-out* (Kairouz et al. 2021): one client's data replaced by none, so
that it still takes part with a zero update. Its clipped update changes the sum by at most C in
L2, the average over the fixed m by at most C/m; the noise std is z times that. Not add-or-remove:
the wrapper's accounted mode averages exactly the m sampled replies (strict: a round with an error
or a missing reply is not aggregated and releases nothing), so a client absent from a round is not
a smaller sum. One client replaced by another (any change) is two zero-outs: (2ε, (1 + e^ε)δ) by
group privacy. The weights must be equal (:data:`UNIFORM_WEIGHT`: the server weighs every client
1, not by its number of examples, which would give a large client more than 1/m of the average),
and every update finite and non-zero (:meth:`DpFedAvgTraining._usable`: Flower's
``min(1, C / norm)`` would let a NaN update through unclipped).

Accounting: each aggregated round is one Gaussian mechanism of multiplier z, without sampling
amplification (every round samples the same fixed number of clients, counted as if all were
sampled), composed by Flower's :class:`~flwr.serverapp.RdpAccountant` (dp-accounting underneath; its
``ADD_OR_REMOVE_ONE`` relation, the only one it takes without amplification, gives a plain
Gaussian's RDP, which is the zero-out figure for sensitivity C/m) at ``train-delta``; its ``max_epsilon = train-epsilon`` makes the wrapper refuse a round that
would exceed the budget (``PrivacyBudgetExhausted``). z is calibrated here so that every release
the run can ask (:func:`federation.dp_training.models_trained` models x ``train-rounds``) fits.
Every release is also an event of the training's ledger (``ledger-train.jsonl``, unit client,
mechanism ``gaussian``, sensitivity C/m, noise scale zC/m), recorded before the noised model is
used; the Flower accountant of a resumed run is rebuilt from those events, so the ledger is the
one record and ε carries across restarts.

The ticket's masks: the noise is added to every coordinate, pruned ones included; the pruned
coordinates are then set back to zero. That is post-processing of the noised average (the
masks are public), so it costs nothing, and the pruned weights stay exactly zero.
"""

from __future__ import annotations

import math
from logging import WARNING
from collections.abc import Iterable, Mapping
from typing import Any, Final

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common import log
from flwr.serverapp import GaussianPrivacyEvent, Grid, NeighboringRelation, PrivacyConfig, SamplingMethod
from flwr.serverapp.exception import PrivacyBudgetExhausted
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping, FedAvg, Strategy

from federation.config import Config
from federation.errors import TrainingStopped
from federation.layout import KIND_CLIENT_TRAIN, PHASE_TRAIN
from federation.rundir import RunDirectory
from privacy import GAUSSIAN, UNIT_CLIENT, Accountant, PrivacyEvent, gaussian_epsilon
from strategies import keys

__all__ = [
    "UNIFORM_WEIGHT",
    "DpFedAvgCharge",
    "DpFedAvgTraining",
    "flower_accountant",
    "noise_multiplier",
    "releases",
    "sampled_clients",
]

UNIFORM_WEIGHT: Final = "dp-fedavg-weight"
"""The metric the server sets to 1 in every reply and FedAvg weighs by (equal weights: sensitivity C/m)."""
_MARGIN: Final = 1e-6  # relative: the calibrated spend stays below the budget by more than float noise


def sampled_clients(config: Config) -> int:
    """m, the clients each training round samples: FedAvg's ``max(int(N * fraction-train), min-replies)``."""
    return max(int(config.num_clients * config.fraction_train), config.min_replies)


def releases(config: Config) -> int:
    """The most DP-FedAvg releases the run can ask: every model it trains, every round."""
    from federation.dp_training import models_trained

    return models_trained(config) * config.train_rounds


def _privacy_config(config: Config) -> PrivacyConfig:
    return PrivacyConfig(target_delta=config.train_delta, population_size=config.num_clients,
                         neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                         sampling_method=SamplingMethod.NO_AMPLIFICATION, max_epsilon=config.train_epsilon)


def _event(config: Config, z: float) -> GaussianPrivacyEvent:
    return GaussianPrivacyEvent(noise_multiplier=z, sample_size=sampled_clients(config),
                                population_size=config.num_clients)


def noise_multiplier(config: Config) -> float:
    """The smallest z whose :func:`releases` Gaussian releases compose, by Flower's RDP accountant, to
    at most ``train-epsilon`` at ``train-delta`` (bisection, a relative margin of 1e-6 below it)."""
    from flwr.serverapp import RdpAccountant

    count = releases(config)
    target = config.train_epsilon * (1.0 - _MARGIN)

    def spent(z: float) -> float:
        accountant = RdpAccountant(_privacy_config(config))
        accountant.compose(_event(config, z), count=count)
        return accountant.get_epsilon(config.train_delta)

    low, high = 1e-3, 1.0
    while spent(high) > target:
        high *= 2.0
        if high > 1e6:
            raise ValueError(f"no noise multiplier up to 1e6 reaches train-epsilon {config.train_epsilon:g}")
    for _ in range(60):
        middle = 0.5 * (low + high)
        low, high = (low, middle) if spent(middle) <= target else (middle, high)
    return high


def flower_accountant(config: Config, events: Iterable[PrivacyEvent]) -> Any:
    """Flower's RDP accountant holding every DP-FedAvg release of ``events`` (a resumed run's ledger)."""
    from flwr.serverapp import RdpAccountant

    accountant = RdpAccountant(_privacy_config(config))
    for event in events:
        if event.unit == UNIT_CLIENT and event.mechanism == GAUSSIAN:
            accountant.compose(_event(config, event.noise_scale / event.sensitivity))
    return accountant


class DpFedAvgCharge:
    """The training's client-level ledger, z, and Flower's accountant restored from the ledger."""

    def __init__(self, config: Config, accountant: Accountant) -> None:
        self.config = config
        self.accountant = accountant
        self.noise_multiplier = noise_multiplier(config)
        self.sampled = sampled_clients(config)

    def wrap(self, strategy: FedAvg) -> DifferentialPrivacyServerSideFixedClipping:
        """Flower's server-side fixed-clipping wrapper around ``strategy``, its accountant restored."""
        return DifferentialPrivacyServerSideFixedClipping(
            strategy, self.noise_multiplier, self.config.train_clip, self.sampled,
            accountant=flower_accountant(self.config, self.accountant.ledger.events),
        )

    def release_event(self, server_round: int, variant: str) -> PrivacyEvent:
        """The ledger event of one noised average: Gaussian, sensitivity C/m (L2), noise scale zC/m.

        Its own (ε, δ) is the exact Gaussian curve's ε at ``train-delta``; the releases compose by
        RDP (:meth:`rdp_epsilon`), by basic composition beside (looser).
        """
        sensitivity = self.config.train_clip / self.sampled
        return PrivacyEvent(
            round=server_round, phase=PHASE_TRAIN, domain=variant, layer=None, unit=UNIT_CLIENT, mechanism=GAUSSIAN,
            sensitivity=sensitivity, sensitivity_norm="l2", noise_scale=self.noise_multiplier * sensitivity,
            epsilon=gaussian_epsilon(noise_multiplier=self.noise_multiplier, delta=self.config.train_delta),
            delta=self.config.train_delta, participants=(),
        )

    def rdp_epsilon(self) -> float:
        """The whole training's client-level ε so far: the ledger's Gaussian releases by RDP at ``train-delta``
        (dp-accounting's ``GaussianDpEvent(z)``, what Flower's accountant composes)."""
        figure = self.accountant.client_rdp_epsilon(self.config.train_delta)
        return math.inf if figure is None else figure


def _zero_pruned(arrays: ArrayRecord, masks: Mapping[str, torch.Tensor]) -> ArrayRecord:
    """``arrays`` with every pruned coordinate set to exactly zero (``masks``: layer name -> kept)."""
    out = {}
    for name in arrays.keys():
        value = arrays[name].numpy()
        layer = name.removesuffix(".weight")
        if name.endswith(".weight") and layer in masks:
            value = np.where(masks[layer].cpu().numpy(), value, np.zeros_like(value))
        out[name] = Array(np.asarray(value))
    return ArrayRecord(out)


class DpFedAvgTraining(Strategy):
    """Ticket training under DP-FedAvg: Flower's wrapper, re-masked and charged (module docstring).

    The outer strategy of a DP-FedAvg training: it gives every reply the equal weight the wrapper's
    accounting needs, zeroes the pruned coordinates after the noise, records each release in the
    training's ledger before the model is used, and turns a refusal into a clean stop. It logs no
    client metric (the clients' training losses are unnoised means over their examples).
    """

    def __init__(self, *, inner: FedAvg, charge: DpFedAvgCharge, masks: Mapping[str, torch.Tensor] | None,
                 run_dir: RunDirectory, variant: str) -> None:
        super().__init__()
        inner.weighted_by_key = UNIFORM_WEIGHT
        self.dp = charge.wrap(inner)
        self._charge = charge
        self._masks = dict(masks or {})
        self._run_dir = run_dir
        self._variant = variant
        self.latest_arrays: ArrayRecord | None = None
        self.stop_reason: str | None = None
        self.rounds_trained = 0

    def summary(self) -> None:
        self.dp.summary()

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if self.stop_reason is not None:
            raise TrainingStopped(self.stop_reason)
        try:
            return list(self.dp.configure_train(server_round, arrays, config, grid))
        except PrivacyBudgetExhausted as err:
            self.stop_reason = (f"round {server_round} of {self._variant} refused before it was sent: one more"
                                f" DP-FedAvg release would exceed train-epsilon {self._charge.config.train_epsilon:g}"
                                f" ({err})")
        except ValueError as err:  # the wrapper's accounting: the sample is not the m it was calibrated for
            self.stop_reason = (f"round {server_round} of {self._variant} refused before it was sent: {err} DP-FedAvg"
                                f" needs {self._charge.sampled} connected clients every round")
        raise TrainingStopped(self.stop_reason)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = [reply for reply in replies if reply.has_error() or self._usable(server_round, reply)]
        for reply in replies:
            if not reply.has_error():
                reply.content[keys.METRICS_KEY][UNIFORM_WEIGHT] = 1.0  # equal weights: sensitivity C/m
        # Strict mode: with an error reply, or fewer than m usable ones, nothing is averaged or released.
        arrays, _ = self.dp.aggregate_train(server_round, replies)
        errors = sum(1 for reply in replies if reply.has_error())
        row: dict[str, Any] = {"phase": PHASE_TRAIN, "variant": self._variant, "round": server_round,
                               "kind": KIND_CLIENT_TRAIN, "replies": len(replies) - errors, "failed-replies": errors}
        if arrays is not None:
            arrays = _zero_pruned(arrays, self._masks)  # post-processing of the noised average
            self._charge.accountant.record([self._charge.release_event(server_round, self._variant)])  # before use
            self.latest_arrays = arrays
            self.rounds_trained += 1
            row.update({"noise-multiplier": self._charge.noise_multiplier,
                        "epsilon-client-rdp": self._charge.rdp_epsilon()})
        self._run_dir.log_metrics(row)
        return arrays, None

    def _usable(self, server_round: int, reply: Message) -> bool:
        """Whether a reply's update can be clipped as the sensitivity C/m needs: one array record and one
        metric record (FedAvg's keys), every value finite, a non-zero update. A NaN or infinite update
        would pass Flower's ``min(1, C / norm)`` unclipped (a zero one would divide by zero); such a reply
        is left out, so the round, short of m replies, releases nothing."""
        content = reply.content
        why = None
        if len(content.array_records) != 1 or keys.ARRAYS_KEY not in content.array_records:
            why = f"one array record {keys.ARRAYS_KEY!r}"
        elif len(content.metric_records) != 1 or keys.METRICS_KEY not in content.metric_records:
            why = f"one metric record {keys.METRICS_KEY!r}"
        else:
            current = self.dp.current_arrays
            try:
                update = [np.asarray(new, dtype=np.float64) - np.asarray(old, dtype=np.float64) for new, old in
                          zip(content[keys.ARRAYS_KEY].to_numpy_ndarrays(), current.to_numpy_ndarrays(), strict=True)]
            except ValueError:
                update = None
            if update is None or any(a.shape != b.shape for a, b in zip(update, current.to_numpy_ndarrays(), strict=True)):
                why = "the model's arrays"
            elif not all(np.isfinite(a).all() for a in update):
                why = "a finite update"
            elif all(not a.any() for a in update):
                why = "a non-zero update"
        if why is None:
            return True
        log(WARNING, "dppt: dp-fedavg reply of node %s left out of round %s of %s: it must hold %s",
            reply.metadata.src_node_id, server_round, self._variant, why)
        return False

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        return self.dp.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.dp.aggregate_evaluate(server_round, replies)
