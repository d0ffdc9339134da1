"""The layout of a run directory: its file and folder names, metric kinds and phase names.

The one owner of these names (house style, "one owner per fact"): the pipeline writes them, the
report and the CLI read them, and tests find the files through them. This module imports nothing
but the standard library, so the report (which must load without torch) can import it.

A run directory holds::

    config.json                 the resolved config (CONFIG_FILE)
    metrics.jsonl               one JSON object per line: phase, round, kind, ... (METRICS_FILE)
    checkpoint.json             each search's strategy state, for --resume (CHECKPOINT_FILE)
    ledger.jsonl                the DP search's privacy ledger (LEDGER_FILE)
    ledger.journal.jsonl        its release journal (JOURNAL_FILE)
    ledger-train.jsonl          train-privacy=dp-sgd: the ticket training's ledger (TRAIN_LEDGER_FILE)
    ledger-train.journal.jsonl  its release journal (TRAIN_JOURNAL_FILE)
    tickets/                    the search's ticket after each round (TICKETS_DIR)
    reference/                  the non-private reference search: its own ledger, journal, tickets/
    ticket.safetensors          the DP ticket (TICKET_FILE)
    random-ticket.safetensors   a random ticket of the same structure (RANDOM_TICKET_FILE)
    weights.safetensors         the DP ticket's trained model (WEIGHTS_FILE)
    weights-dense.safetensors   the trained dense model (DENSE_WEIGHTS_FILE)
    summary.json                written last (SUMMARY_FILE)

and, once the report is rendered, the files the report names itself (it is the package that
writes them, so it owns their names: :mod:`simulations.report.outputs`): ``report.md``,
``report.html`` and ``plots/``.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "DENSE_WEIGHTS_FILE",
    "JOURNAL_FILE",
    "KIND_CLIENT_TRAIN",
    "KIND_PARTITIONS",
    "KIND_SEARCH_ROUND",
    "KIND_SERVER_EVAL",
    "LEDGER_FILE",
    "METRICS_FILE",
    "PHASE_REFERENCE_SEARCH",
    "PHASE_SEARCH",
    "PHASE_SETUP",
    "PHASE_TRAIN",
    "RANDOM_TICKET_FILE",
    "REFERENCE_DIR",
    "REFERENCE_LEDGER_FILE",
    "SUMMARY_FILE",
    "TICKETS_DIR",
    "TICKET_FILE",
    "TRAIN_JOURNAL_FILE",
    "TRAIN_LEDGER_FILE",
    "VARIANTS",
    "WEIGHTS_FILE",
    "search_phase",
]

# -- files and folders -----------------------------------------------------------------------

CONFIG_FILE: Final = "config.json"
METRICS_FILE: Final = "metrics.jsonl"
SUMMARY_FILE: Final = "summary.json"
CHECKPOINT_FILE: Final = "checkpoint.json"
WEIGHTS_FILE: Final = "weights.safetensors"
DENSE_WEIGHTS_FILE: Final = "weights-dense.safetensors"
TICKET_FILE: Final = "ticket.safetensors"
RANDOM_TICKET_FILE: Final = "random-ticket.safetensors"
LEDGER_FILE: Final = "ledger.jsonl"
"""A search's privacy ledger, in the folder of that search (the run directory, or ``reference/``)."""
JOURNAL_FILE: Final = "ledger.journal.jsonl"
"""A search's release journal, beside its ledger."""
TRAIN_LEDGER_FILE: Final = "ledger-train.jsonl"
"""Under ``train-privacy = dp-sgd``: the DP-SGD releases of ticket training (phase ``train``), a
ledger of its own, since its budget (``train-epsilon``) and its neighbouring relation (one example
added or removed) are not the search's."""
TRAIN_JOURNAL_FILE: Final = "ledger-train.journal.jsonl"
"""The training's release journal, beside its ledger (:class:`federation.ticket_training.DpSgdCharge`)."""
TICKETS_DIR: Final = "tickets"
"""A search's ticket after each round, beside its ledger."""
REFERENCE_DIR: Final = "reference"
"""The folder of the non-private reference search."""
REFERENCE_LEDGER_FILE: Final = f"{REFERENCE_DIR}/{LEDGER_FILE}"

# -- metrics.jsonl: the "phase" and "kind" of a row ------------------------------------------

PHASE_SETUP: Final = "setup"
PHASE_SEARCH: Final = "search"
PHASE_REFERENCE_SEARCH: Final = "reference-search"
PHASE_TRAIN: Final = "train"

KIND_PARTITIONS: Final = "partitions"
"""Setup: partition sizes and label histograms."""
KIND_SEARCH_ROUND: Final = "search-round"
"""A search: one row per round attempt (the strategy's round metrics)."""
KIND_CLIENT_TRAIN: Final = "client-train"
"""Ticket training: the clients' aggregated metrics of one round of one variant."""
KIND_SERVER_EVAL: Final = "server-eval"
"""Ticket training: test accuracy of one variant after one round."""

VARIANTS: Final = ("dense", "dp_ticket", "nonprivate_ticket", "random_ticket")
"""The models ticket training trains, in this order: the ``variant`` of its rows and the keys of
``summary.json``'s ``accuracy``."""


def search_phase(*, reference: bool) -> str:
    """The phase name of the DP search (``reference=False``) or of the non-private reference search.

    It names the search's rows in ``metrics.jsonl``, its ledger events and its checkpoint entry.
    """
    return PHASE_REFERENCE_SEARCH if reference else PHASE_SEARCH
