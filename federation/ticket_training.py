"""Ticket training: masked FedAvg from θ0, evaluated on the server's test set after every round.

This is how a ticket is judged (DESIGN.md 2, step 3). Clients train the model under the ticket's
masks (``train`` handler of the ClientApp); averaging masked weights keeps the pruned ones at zero.
Under ``train-privacy = none`` ticket training releases model updates without noise: it is an
evaluation of the ticket and is not covered by the search's privacy guarantee (the report says so).
Under ``dp-sgd`` every device trains with record-level DP-SGD (DESIGN.md 5.8), and every reply is
charged to the training's own ledger (``ledger-train.jsonl``, phase ``train``) as a ``dp-sgd``
event of the σ, q and steps the device reports, before its weights are averaged; a reply that does
not report them is dropped, unused, and charged as ε = inf to the client it names. A round is
admitted client by client and journalled before its messages leave (:class:`DpSgdCharge`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from logging import WARNING
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from federation import profiling
from federation.config import Config
from federation.dp_fedavg import DpFedAvgCharge, DpFedAvgTraining
from federation.dp_training import RULE as TRAIN_EPSILON_RULE
from federation.errors import TrainingStopped
from federation.layout import KIND_CLIENT_TRAIN, KIND_SERVER_EVAL, PHASE_TRAIN
from federation.messages import DP_STEPS_FIELD, NOISE_MULTIPLIER_FIELD, SAMPLE_RATE_FIELD, TRAIN_PRIVACY_KEY
from federation.model_io import build_model, load_weights, plain_weights
from federation.rundir import RunDirectory
from federation.training import evaluate
from kernels import Ticket
from models import apply_ticket, input_shape_of
from models.initialisation import TICKET_INIT_RESCALED, gaussian_probe, match_dense_signal
from privacy import (
    DEVICE_BOUND, DP_SGD, UNACCOUNTED, UNIT_RECORD, Accountant, PrivacyError, PrivacyEvent, ReleaseAsk, ReleaseJournal,
    dp_sgd_event,
)
from strategies import keys, ticket_record
from strategies.identity import CLIENT_ID_PATTERN
from strategies.sampling import identify_nodes
from strategies.votes import refusal_rule

__all__ = ["DpSgdCharge", "MaskedFedAvg", "TicketFedAvg", "dp_sgd_reply_event", "train_variant"]

Progress = Callable[[str], None]


def dp_sgd_reply_event(
    reply: Message, *, server_round: int, variant: str, clip: float, delta: float, attempt: int = 0
) -> PrivacyEvent:
    """The ledger event of one DP-SGD ``train`` reply, from the σ, q and steps it reports.

    Raises
    ------
    PrivacyError
        If the reply lacks them or its client id, or they are not a valid DP-SGD release.
    """
    try:
        metrics = reply.content[keys.METRICS_KEY]
        client_id = str(reply.content[TRAIN_PRIVACY_KEY][keys.CLIENT_ID_FIELD])
        sigma, rate = float(metrics[NOISE_MULTIPLIER_FIELD]), float(metrics[SAMPLE_RATE_FIELD])
        steps = metrics[DP_STEPS_FIELD]
    except (KeyError, TypeError, ValueError) as err:
        raise PrivacyError(f"a dp-sgd train reply must report {NOISE_MULTIPLIER_FIELD}, {SAMPLE_RATE_FIELD},"
                           f" {DP_STEPS_FIELD} and its client id. Missing or malformed: {err}.") from None
    if CLIENT_ID_PATTERN.fullmatch(client_id) is None:
        raise PrivacyError(f"client-id of a dp-sgd train reply must match the client-id pattern. Found {client_id!r}.")
    if isinstance(steps, float) and steps.is_integer():
        steps = int(steps)
    return dp_sgd_event(round=server_round, domain=variant, client_id=client_id, noise_multiplier=sigma,
                        sample_rate=rate, steps=steps, clip=clip, delta=delta, phase=PHASE_TRAIN, attempt=attempt)


def _unaccounted_event(
    reply: Message, *, server_round: int, variant: str, attempt: int = 0, client_id: str | None = None
) -> PrivacyEvent | None:
    """An ε = inf event for a train reply the ledger cannot price: of ``client_id`` (its node's declared
    client) if given, else of the client id the reply names, if usable; ``None`` if neither."""
    if client_id is None:
        try:
            client_id = str(reply.content[TRAIN_PRIVACY_KEY][keys.CLIENT_ID_FIELD])
        except (KeyError, TypeError):
            return None
    if CLIENT_ID_PATTERN.fullmatch(client_id) is None:
        return None
    return PrivacyEvent(round=server_round, phase=PHASE_TRAIN, domain=variant, layer=None, unit=UNIT_RECORD,
                        mechanism=UNACCOUNTED, sensitivity=1.0, noise_scale=0.0, epsilon=math.inf, delta=0.0,
                        participants=(client_id,), attempt=attempt)


class DpSgdCharge:
    """The privacy gate of DP-SGD ticket training: admits, journals, charges and settles each round.

    Like the search's :class:`strategies.PrivacyGate` (DESIGN.md 5.4), for the training's own
    ledger (``ledger-train.jsonl``) and release journal (``ledger-train.journal.jsonl``):

    1. :meth:`admit` (before a round's messages leave): identify the nodes, price one more round
       for each sampled client, leave out every client that round would take over
       ``train-epsilon``, and write the journal's ``asked`` entry for the clients that remain.
    2. :meth:`charge` (once the replies are in): record each reply's ``dp-sgd`` event, and the
       asked price of every admitted client whose reply did not come back (a late reply reaches the
       SuperLink all the same: it may have trained), in one ledger batch; then close the ask. An
       error reply released nothing and is not charged.
    3. :meth:`settle_interrupted_rounds` (when a run is opened again, and before every round):
       record in full every ask that was neither closed nor charged (the server stopped after the
       messages left): any sampled client may have released.

    The price of one more round (:meth:`price`): a device prices every round of a run alike (its
    σ, q and steps depend only on the config and its number of examples,
    :func:`federation.dp_training.plan_round`), so a client already charged costs its last
    ``dp-sgd`` event again. A client never charged yet costs what its device calibrates its whole
    training to, ``(train-epsilon, train-delta)`` for one example added or removed (DESIGN.md 5.8):
    one round of it is at most that. That bound is recorded as a :data:`privacy.DEVICE_BOUND`
    event, which has no RDP curve, so a settled client is composed by basic composition
    (conservative; a release is never forgotten).

    An ask's ``attempt`` numbers the asks of a training round number over the run, all models
    together (the dense model's round 1 and the ticket's round 1 are two attempts of round 1), so
    that every ask of the journal has its own key.
    """

    def __init__(
        self, accountant: Accountant, *, clip: float, delta: float, journal: ReleaseJournal | None = None,
        identities: Mapping[int, str] | None = None, identity_timeout: float = 60.0,
    ) -> None:
        self.accountant = accountant
        self._clip = clip
        self._delta = delta
        self._journal = journal
        self._identities: dict[int, str] = dict(identities or {})
        self._identity_timeout = identity_timeout
        self._asked: tuple[int, str, int] | None = None
        self._asked_events: dict[str, PrivacyEvent] = {}

    @property
    def journal(self) -> ReleaseJournal | None:
        """The training's release journal (``None``: no write-ahead record)."""
        return self._journal

    def price(self, client: str, *, server_round: int, variant: str, attempt: int = 0) -> PrivacyEvent:
        """What one more training round releases of ``client``, as the ledger prices it (class docstring)."""
        last = None
        for event in self.accountant.events_for(unit=UNIT_RECORD, client_id=client):
            if event.mechanism == DP_SGD:
                last = event
        if last is not None:
            return dp_sgd_event(round=server_round, domain=variant, client_id=client,
                                noise_multiplier=last.noise_scale / last.sensitivity,
                                sample_rate=float(last.sample_rate), steps=int(last.steps),  # type: ignore[arg-type]
                                clip=last.sensitivity, delta=self._delta, phase=PHASE_TRAIN, attempt=attempt)
        return PrivacyEvent(round=server_round, phase=PHASE_TRAIN, domain=variant, layer=None, unit=UNIT_RECORD,
                            mechanism=DEVICE_BOUND, sensitivity=0.0, noise_scale=0.0,
                            epsilon=self.accountant.epsilon_budget(UNIT_RECORD), delta=self._delta,
                            participants=(client,), attempt=attempt)

    def _next_attempt(self, server_round: int) -> int:
        used = [e.attempt for e in self.accountant.ledger.events if e.phase == PHASE_TRAIN and e.round == server_round]
        if self._journal is not None:
            used += self._journal.attempts(PHASE_TRAIN, server_round)
        return max(used, default=-1) + 1

    def admit(
        self, grid: Grid, server_round: int, variant: str, messages: list[Message], *, min_nodes: int
    ) -> tuple[list[Message], str | None]:
        """The messages that may leave, and ``None``; or ``[]`` and why the round is refused.

        A node whose client id is unknown is asked for it first (the identity handshake of the
        search, :func:`strategies.sampling.identify_nodes`); one that gives none is left out. A
        client that one more round would take over ``train-epsilon`` (RDP at ``train-delta``) is
        left out. If fewer than ``min_nodes`` remain, nothing is sent and nothing is written.
        """
        self.settle_interrupted_rounds()
        identify_nodes(grid, [m.metadata.dst_node_id for m in messages], self._identities,
                       timeout=self._identity_timeout)
        attempt = self._next_attempt(server_round)
        kept: list[Message] = []
        planned: list[PrivacyEvent] = []
        over: list[str] = []
        for message in messages:
            client = self._identities.get(int(message.metadata.dst_node_id))
            if client is None:
                continue
            event = self.price(client, server_round=server_round, variant=variant, attempt=attempt)
            reason = self.accountant.would_exceed([event])
            if reason is not None:
                over.append(reason)
                continue
            kept.append(message)
            planned.append(event)
        if len(kept) < max(1, min_nodes):
            budget = self.accountant.epsilon_budget(UNIT_RECORD)
            unidentified = len(messages) - len(kept) - len(over)
            parts = []
            if over:
                parts.append(f"one more DP-SGD round would take {len(over)} client(s) over train-epsilon {budget:g}"
                             f" (first: {over[0]}); the training ledger already holds what the budget allows")
            if unidentified:
                parts.append(f"{unidentified} sampled node(s) gave no client id their releases could be charged under")
            why = "; ".join(parts) or "no node was sampled"
            return [], (f"round {server_round} of {variant} refused before it was sent: {len(kept)} client(s) may"
                        f" train, at least {max(1, min_nodes)} needed; {why}")
        if len(kept) < len(messages):
            log(WARNING, "dppt: round %s of %s leaves out %s node(s): %s", server_round, variant,
                len(messages) - len(kept), over[0] if over else "no client id")
        if self._journal is not None:
            # Write-ahead (DESIGN.md 5.4): a device releases when it replies; what every admitted
            # client is asked for is on disk before a message leaves (settle_interrupted_rounds).
            self._journal.ask(phase=PHASE_TRAIN, round=server_round, attempt=attempt, events=planned)
        self._asked = (server_round, variant, attempt)
        self._asked_events = {event.participants[0]: event for event in planned}
        return kept, None

    def charge(self, server_round: int, variant: str, replies: list[Message]) -> list[Message]:
        """Record the events of the valid replies (one ledger batch), close the ask; return the usable replies."""
        asked = self._asked is not None and self._asked[:2] == (server_round, variant)
        # Without an ask of this round (a caller that did not admit), a fresh attempt number: never one an open ask holds.
        attempt = self._asked[2] if asked and self._asked is not None else self._next_attempt(server_round)
        answered: set[str] = set()
        kept, events = [], []
        for reply in replies:
            known = self._identities.get(int(reply.metadata.src_node_id))
            if known is not None:
                answered.add(known)
            if reply.has_error():
                kept.append(reply)  # released nothing; FedAvg counts it as a failure
                continue
            try:
                event = dp_sgd_reply_event(reply, server_round=server_round, variant=variant,
                                           clip=self._clip, delta=self._delta, attempt=attempt)
                if known is not None and event.participants != (known,):
                    raise PrivacyError(f"a dp-sgd train reply must name the client id its node declared, {known!r}."
                                       f" Found {event.participants[0]!r}.")
                events.append(event)
            except PrivacyError as err:
                # DESIGN.md 5.3: a bad reply released something all the same. It is dropped, unused, and
                # charged as ε = inf to its node's declared client, else to the client it names (a reply
                # that can be attributed to none is not charged).
                log(WARNING, "dppt: train reply of node %s dropped, unused: %s", reply.metadata.src_node_id, err)
                unpriced = _unaccounted_event(reply, server_round=server_round, variant=variant, attempt=attempt,
                                              client_id=known)
                if unpriced is not None:
                    events.append(unpriced)
                continue
            kept.append(reply)
        if asked:
            # An admitted client whose reply did not come back (late, lost, or a dead node) may have trained and
            # released all the same (a late reply reaches the SuperLink): charged at its asked price, never forgotten.
            events += [event for client, event in self._asked_events.items() if client not in answered]
        if events:
            self.accountant.record(events)  # on disk (fsync) before any of these weights is averaged
        if self._journal is not None and asked:
            self._journal.close(phase=PHASE_TRAIN, round=server_round, attempt=attempt)
        self._asked, self._asked_events = None, {}
        return kept

    def settle_interrupted_rounds(self) -> list[ReleaseAsk]:
        """Record, in full, every training ask the journal holds that was neither closed nor charged.

        The server stopped after the round's messages left and before the replies were charged:
        any admitted client may have released its weights, and the server cannot tell which. Each is
        recorded at its asked price (:meth:`price`), without a budget check (the release may have
        happened), and the ask is closed as ``settled``. Idempotent; :meth:`admit` calls it.
        """
        if self._journal is None:
            return []
        asks = self._journal.settle(self.accountant)
        for ask in asks:
            log(WARNING, "training round %s attempt %s was interrupted before its replies were charged: every"
                " admitted client (%s) is recorded in full", ask.round, ask.attempt,
                len({p for e in ask.events for p in e.participants}))
        return asks


class MaskedFedAvg(FedAvg):
    """FedAvg whose train messages carry the ticket's masks; its aggregation is FedAvg's own.

    What Flower's DP-FedAvg wrapper wraps (its accounting requires ``FedAvg.aggregate_train``,
    :mod:`federation.dp_fedavg`).
    """

    def __init__(self, *, ticket: Ticket | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._ticket_arrays = None if ticket is None else ticket_record(ticket)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        messages = list(super().configure_train(server_round, arrays, config, grid))
        if self._ticket_arrays is not None:
            for message in messages:
                message.content[keys.TICKET_KEY] = self._ticket_arrays
        return messages


class TicketFedAvg(MaskedFedAvg):
    """Masked FedAvg that logs each round's client metrics.

    With ``dp_sgd``, each round is admitted and journalled before it is sent, and each reply is
    charged to the training ledger before aggregation (:class:`DpSgdCharge`).
    """

    def __init__(self, *, ticket: Ticket | None, run_dir: RunDirectory, variant: str,
                 dp_sgd: DpSgdCharge | None = None, progress: Progress | None = None, **kwargs: Any) -> None:
        super().__init__(ticket=ticket, **kwargs)
        self._run_dir = run_dir
        self._variant = variant
        self._dp_sgd = dp_sgd
        self._progress = progress
        self.latest_arrays: ArrayRecord | None = None
        """The model after the last round that trained (what a stopped training keeps)."""
        self.stop_reason: str | None = None
        """Why the training ended before ``train-rounds``; ``None`` while it goes on."""
        self.rounds_trained = 0
        """Rounds whose replies updated the model (a round every device refused or failed does not count)."""

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        if self.stop_reason is not None:
            raise TrainingStopped(self.stop_reason)
        messages = list(super().configure_train(server_round, arrays, config, grid))
        if self._dp_sgd is not None:  # nothing leaves before the round is admitted and journalled
            messages, self.stop_reason = self._dp_sgd.admit(grid, server_round, self._variant, messages,
                                                            min_nodes=self.min_train_nodes)
            if self.stop_reason is not None:
                raise TrainingStopped(self.stop_reason)
        return messages

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        if self._dp_sgd is not None:
            replies = self._dp_sgd.charge(server_round, self._variant, replies)
        errors = sum(1 for reply in replies if reply.has_error())
        if replies and errors == len(replies) and self._progress is not None:
            reason = str(replies[0].error.reason or "")[:300]
            self._progress(f"[train {self._variant}] round {server_round}: no client trained ({errors} error"
                           f" replies; first: {reason}); the model is not updated")
        rules = {refusal_rule(reply) for reply in replies}
        if replies and None not in rules:  # every device refused by its own policy: it will again, stop here
            named = ", ".join(sorted(str(rule) for rule in rules))
            why = ": its DP-SGD budget would be exceeded" if rules == {TRAIN_EPSILON_RULE} else ""
            self.stop_reason = (f"round {server_round} of {self._variant}: every sampled device refused"
                                f" (rule {named}{why})")
        arrays, metrics = super().aggregate_train(server_round, replies)
        if arrays is not None:
            self.latest_arrays = arrays
            self.rounds_trained += 1
        self._run_dir.log_metrics({
            "phase": PHASE_TRAIN, "variant": self._variant, "round": server_round, "kind": KIND_CLIENT_TRAIN,
            **dict(metrics or {}), "replies": len(replies) - errors, "failed-replies": errors,
        })
        return arrays, metrics


def train_variant(
    grid: Grid,
    config: Config,
    run_dir: RunDirectory,
    *,
    variant: str,
    ticket: Ticket | None,
    test_set: tuple[Any, Any],
    config_record: ConfigRecord,
    progress: Progress,
    dp_sgd: DpSgdCharge | None = None,
    dp_fedavg: DpFedAvgCharge | None = None,
) -> dict[str, Any]:
    """Masked FedAvg of one variant from θ0 (``ticket=None``: dense); under DP-FedAvg with ``dp_fedavg``.

    Under ``ticket-init=rescaled`` a ticket's θ0 is scaled layer by layer to the dense model's
    signal (:func:`models.initialisation.match_dense_signal`, docs/design.md 2, step 4); the dense
    model starts from θ0 exactly.

    Returns its last evaluation (``accuracy``, ``loss``), every round's test accuracy
    (``accuracy-by-round``, round 0 = θ0), the trained weights and the wall time.
    """
    start = time.time()
    model = build_model(config, seed=config.seed)  # θ0: every variant starts from the same weights
    if ticket is not None:
        apply_ticket(model, ticket)
        if config.ticket_init == TICKET_INIT_RESCALED:  # data-free post-processing of θ0 and the ticket (ε = 0)
            match_dense_signal(model, ticket.masks(), dense=build_model(config, seed=config.seed),
                               probe=gaussian_probe(input_shape_of(model), seed=config.seed))
    images, labels = test_set
    history: list[dict[str, Any]] = []

    def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        began = time.time()
        load_weights(model, arrays.to_torch_state_dict())
        loss, accuracy = evaluate(model, images, labels)
        profiling.record_server_call("evaluate", start=began, wall_s=time.time() - began, sent=0, replies=0)
        row = {"phase": PHASE_TRAIN, "variant": variant, "round": server_round, "kind": KIND_SERVER_EVAL,
               "accuracy": accuracy, "loss": loss, "elapsed-s": round(time.time() - start, 2)}
        history.append(row)
        run_dir.log_metrics(row)
        progress(f"[train {variant:<17}] round {server_round:>3}/{config.train_rounds}  accuracy {accuracy:.4f}"
                 f"  loss {loss:.4f}  {time.time() - start:6.1f}s")
        return MetricRecord({"accuracy": accuracy, "loss": loss})

    # Rounds go on with the nodes that are there: at least min-replies of them (a dead node is skipped).
    sampling = {"fraction_train": config.fraction_train, "fraction_evaluate": 0.0,
                "min_train_nodes": config.min_replies, "min_available_nodes": config.min_replies}
    strategy: TicketFedAvg | DpFedAvgTraining
    if dp_fedavg is not None:
        strategy = DpFedAvgTraining(inner=MaskedFedAvg(ticket=ticket, **sampling), charge=dp_fedavg,
                                    masks=None if ticket is None else ticket.masks(), run_dir=run_dir, variant=variant)
    else:
        strategy = TicketFedAvg(ticket=ticket, run_dir=run_dir, variant=variant, dp_sgd=dp_sgd, progress=progress,
                                **sampling)
    try:
        strategy.start(
            grid=grid, initial_arrays=ArrayRecord(plain_weights(model)), num_rounds=config.train_rounds,
            timeout=config.round_timeout, train_config=ConfigRecord(dict(config_record)), evaluate_fn=evaluate_fn,
        )
    except TrainingStopped as stop:
        progress(f"[train {variant}] stopped: {stop}")
    final = strategy.latest_arrays  # the last round that trained (None: θ0, never updated)
    if final is not None:
        load_weights(model, final.to_torch_state_dict())
    last = history[-1] if history else {}
    return {"accuracy": last.get("accuracy"), "loss": last.get("loss"), "rounds": strategy.rounds_trained,
            "stop-reason": strategy.stop_reason,
            "accuracy-by-round": {row["round"]: row["accuracy"] for row in history},
            "weights": plain_weights(model), "wall-time-s": round(time.time() - start, 2)}
