"""Everything the report reads from a run directory, checked, with one-line errors.

Required: ``config.json`` (parsed once into the typed :class:`federation.Config`, whose defaults
fill the keys an older run lacks) and ``ledger.jsonl``. Optional (a partial run may lack them):
``metrics.jsonl``, ``summary.json``, the ticket (``summary.json``'s ``ticket-file``, else
``ticket.safetensors``) and the release journal ``ledger.journal.jsonl`` (rounds charged in full
after an interruption).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from federation.config import Config, ConfigError
from federation.layout import (
    CONFIG_FILE, JOURNAL_FILE, LEDGER_FILE, METRICS_FILE, SUMMARY_FILE, TICKET_FILE, TRAIN_LEDGER_FILE,
)
from privacy import Ledger, ReleaseAsk
from simulations.report.errors import ReportError
from simulations.report.ledger_reader import interrupted_rounds, open_ledger
from simulations.report.metrics import MetricsFile, read_metrics
from simulations.report.values import nested

if TYPE_CHECKING:
    from kernels import Ticket

__all__ = ["RunInputs", "load_run", "read_config", "read_json_object"]


def read_json_object(path: Path, *, required: bool, fix: str) -> dict[str, Any] | None:
    """The JSON object in ``path``; ``None`` if the file is absent and not ``required``.

    Raises
    ------
    ReportError
        If a required file is missing, or the file is not one JSON object.
    """
    if not path.exists():
        if required:
            raise ReportError(f"{path} not found: {fix}.")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ReportError(f"{path} is not readable JSON ({err}): {fix}.") from err
    if not isinstance(data, dict):
        raise ReportError(f"{path} must hold one JSON object. Found {type(data).__name__}: {fix}.")
    return data


def read_config(path: Path, *, required: bool, fix: str) -> Config | None:
    """``config.json`` parsed once into the typed :class:`federation.Config` (keys it lacks, e.g. in
    an older run, take Config's defaults); ``None`` if the file is absent and not ``required``.

    Raises
    ------
    ReportError
        If a required file is missing, the file is not one JSON object, or a value is not a valid
        config value (one line naming the file).
    """
    data = read_json_object(path, required=required, fix=fix)
    return None if data is None else _parse_config(data, path)


def _parse_config(data: Mapping[str, Any], path: Path) -> Config:
    try:
        return Config.from_mapping(data)
    except ConfigError as err:
        raise ReportError(f"{path} is not a valid dppt config: {err}") from err


@dataclass(frozen=True, kw_only=True)
class RunInputs:
    """The checked inputs of one run directory."""

    run_dir: Path = field(metadata={"help": "the run directory"})
    config: Config = field(metadata={"help": "config.json, typed"})
    config_keys: frozenset[str] = field(
        metadata={"help": "keys config.json states; the others took Config's defaults (an older run)"}
    )
    ledger: Ledger = field(metadata={"help": "the run's ledger, opened read-only"})
    metrics: MetricsFile = field(metadata={"help": "metrics.jsonl"})
    summary: Mapping[str, Any] | None = field(metadata={"help": "summary.json, None if absent"})
    ticket: Ticket | None = field(metadata={"help": "the ticket, None if absent"})
    ticket_file: str | None = field(metadata={"help": "ticket file name in the run directory"})
    interrupted: tuple[ReleaseAsk, ...] = field(
        default=(), metadata={"help": "round attempts charged in full after an interruption (release journal)"}
    )
    train_ledger: Ledger | None = field(
        default=None, metadata={"help": "ledger-train.jsonl (train-privacy = dp-sgd), read-only; None if absent"}
    )


def _load_ticket(run_dir: Path, summary: Mapping[str, Any] | None) -> tuple[Ticket | None, str | None]:
    named = nested(summary, "ticket-file")
    if named is not None and not isinstance(named, str):
        raise ReportError(f"{run_dir / SUMMARY_FILE} key 'ticket-file' must be a file name or null. Found {named!r}.")
    name = named or TICKET_FILE
    path = run_dir / name
    if not path.is_file():
        if named is not None:
            raise ReportError(
                f"{path} not found, but {SUMMARY_FILE} names it as the ticket: restore the file or set"
                " 'ticket-file' to null."
            )
        return None, None
    from kernels import KernelsError, Ticket  # torch is imported only when there is a ticket to read

    try:
        return Ticket.load(path), name
    except (KernelsError, OSError) as err:
        raise ReportError(f"{path} is not a readable dppt ticket ({err}): restore it or remove it.") from err


def load_run(run_dir: Path) -> RunInputs:
    """Read and check every input of ``run_dir`` (nothing is written).

    Raises
    ------
    ReportError
        On a missing required file or a malformed input (one line naming the file and the fix).
    """
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir} must be a run directory. Found {'a file' if run_dir.exists() else 'nothing'}.")
    fix = f"pass the directory of a dppt run (it starts with {CONFIG_FILE})"
    raw = read_json_object(run_dir / CONFIG_FILE, required=True, fix=fix)
    assert raw is not None
    summary = read_json_object(
        run_dir / SUMMARY_FILE, required=False, fix="delete it to render a partial report, or re-run"
    )
    ledger = open_ledger(run_dir / LEDGER_FILE)
    metrics = read_metrics(run_dir / METRICS_FILE)
    ticket, ticket_file = _load_ticket(run_dir, summary)
    return RunInputs(
        run_dir=run_dir, config=_parse_config(raw, run_dir / CONFIG_FILE), config_keys=frozenset(raw), ledger=ledger,
        metrics=metrics, summary=summary, ticket=ticket, ticket_file=ticket_file,
        interrupted=interrupted_rounds(run_dir / JOURNAL_FILE),
        train_ledger=open_ledger(run_dir / TRAIN_LEDGER_FILE) if (run_dir / TRAIN_LEDGER_FILE).exists() else None,
    )
