"""Everything the report reads from a run directory, checked, with one-line errors.

Required: ``config.json`` and ``ledger.jsonl``. Optional (a partial run may lack them):
``metrics.jsonl``, ``summary.json``, the ticket (``summary.json``'s ``ticket-file``, else
``ticket.safetensors``), ``reference/ledger.jsonl`` (only its presence is used) and the release
journal ``ledger.journal.jsonl`` (rounds charged in full after an interruption).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from federation.layout import (
    CONFIG_FILE, JOURNAL_FILE, LEDGER_FILE, METRICS_FILE, REFERENCE_LEDGER_FILE, SUMMARY_FILE, TICKET_FILE,
)
from privacy import Ledger, ReleaseAsk
from simulations.report.errors import ReportError
from simulations.report.ledger_reader import interrupted_rounds, open_ledger
from simulations.report.metrics import MetricsFile, read_metrics
from simulations.report.values import as_number, nested

if TYPE_CHECKING:
    from kernels import Ticket

__all__ = ["DEFAULT_DELTA_TARGET", "RunInputs", "load_run", "read_json_object"]

DEFAULT_DELTA_TARGET: Final = 1e-5
DEFAULT_CLIP_BOUND: Final = 1.0


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


def _budget(config: Mapping[str, Any], key: str, source: Path) -> float | None:
    value = as_number(config.get(key), where=f"{source} key {key!r}", fix="write a number >= 0 or \"inf\"")
    if value is not None and (math.isnan(value) or value < 0.0):
        raise ReportError(f"{source} key {key!r} must be a number >= 0 or \"inf\". Found {config.get(key)!r}.")
    return value


def _clip_bound(config: Mapping[str, Any], source: Path) -> float:
    # The local noise is compared with the clipped score range [0, C]; normalised scores (or no
    # stated bound) live in [0, 1].
    mode = config.get("clip-mode", "clip")
    value = as_number(config.get("clip-bound"), where=f"{source} key 'clip-bound'", fix="write a number > 0")
    if value is None or mode != "clip":
        return DEFAULT_CLIP_BOUND
    if not (math.isfinite(value) and value > 0.0):
        raise ReportError(f"{source} key 'clip-bound' must be a finite number > 0. Found {config.get('clip-bound')!r}.")
    return value


@dataclass(frozen=True, kw_only=True)
class RunInputs:
    """The checked inputs of one run directory."""

    run_dir: Path = field(metadata={"help": "the run directory"})
    config: Mapping[str, Any] = field(metadata={"help": "config.json"})
    ledger: Ledger = field(metadata={"help": "the run's ledger, opened read-only"})
    metrics: MetricsFile = field(metadata={"help": "metrics.jsonl"})
    summary: Mapping[str, Any] | None = field(metadata={"help": "summary.json, None if absent"})
    ticket: Ticket | None = field(metadata={"help": "the ticket, None if absent"})
    ticket_file: str | None = field(metadata={"help": "ticket file name in the run directory"})
    has_reference: bool = field(metadata={"help": "whether reference/ledger.jsonl exists"})
    record_budget: float | None = field(metadata={"help": "config 'epsilon'"})
    client_budget: float | None = field(metadata={"help": "config 'client-epsilon'"})
    delta_target: float = field(metadata={"help": "config 'delta-target' or 1e-5"})
    clip_bound: float = field(metadata={"help": "signal range of record-level scores"})
    interrupted: tuple[ReleaseAsk, ...] = field(
        default=(), metadata={"help": "round attempts charged in full after an interruption (release journal)"}
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
    config = read_json_object(
        run_dir / CONFIG_FILE, required=True, fix="pass the directory of a dppt run (it starts with config.json)"
    )
    assert config is not None
    summary = read_json_object(
        run_dir / SUMMARY_FILE, required=False, fix="delete it to render a partial report, or re-run"
    )
    ledger = open_ledger(run_dir / LEDGER_FILE)
    metrics = read_metrics(run_dir / METRICS_FILE)
    ticket, ticket_file = _load_ticket(run_dir, summary)
    source = run_dir / CONFIG_FILE
    delta = as_number(config.get("delta-target"), where=f"{source} key 'delta-target'", fix="write a number")
    if delta is not None and not 0.0 < delta < 1.0:
        raise ReportError(f"{source} key 'delta-target' must be in (0, 1). Found {config.get('delta-target')!r}.")
    return RunInputs(
        run_dir=run_dir, config=config, ledger=ledger, metrics=metrics, summary=summary, ticket=ticket,
        ticket_file=ticket_file, has_reference=(run_dir / REFERENCE_LEDGER_FILE).is_file(),
        record_budget=_budget(config, "epsilon", source), client_budget=_budget(config, "client-epsilon", source),
        delta_target=DEFAULT_DELTA_TARGET if delta is None else delta, clip_bound=_clip_bound(config, source),
        interrupted=interrupted_rounds(run_dir / JOURNAL_FILE),
    )
