"""The run's ``metrics.jsonl``: one JSON object per line with ``phase``, ``round`` and ``kind``.

Kinds read by the report (named in :mod:`federation.layout`): ``search-round`` (one row per
search round attempt) and ``server-eval`` (test accuracy of one training variant after one round). Other kinds are kept
but not used. A last line without its newline is the tail of a run still writing (or killed
while writing): it is skipped and reported, never guessed at; a malformed line elsewhere is an
error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from simulations.report.errors import ReportError
from simulations.report.values import as_number

__all__ = ["MetricRow", "MetricsFile", "read_metrics"]


@dataclass(frozen=True, kw_only=True)
class MetricRow:
    """One line of ``metrics.jsonl`` and where it came from."""

    path: Path = field(metadata={"help": "the metrics file"})
    line: int = field(metadata={"help": "1-based line number"})
    data: Mapping[str, Any] = field(metadata={"help": "the JSON object"})

    @property
    def kind(self) -> str | None:
        """The row's ``kind``, ``None`` if absent."""
        kind = self.data.get("kind")
        return kind if isinstance(kind, str) else None

    @property
    def phase(self) -> str | None:
        """The row's ``phase``, ``None`` if absent."""
        phase = self.data.get("phase")
        return phase if isinstance(phase, str) else None

    def number(self, key: str) -> float | None:
        """The value of ``key`` as a float (``"inf"`` accepted), ``None`` if absent or null.

        Raises
        ------
        ReportError
            If the value is not a number.
        """
        return as_number(
            self.data.get(key), where=f"{self.path} line {self.line} key {key!r}",
            fix="the metrics file is damaged; regenerate it by re-running",
        )

    def integer(self, key: str, default: int | None = None) -> int | None:
        """The value of ``key`` as an int, ``default`` if absent."""
        value = self.number(key)
        if value is None:
            return default
        if not value.is_integer():
            raise ReportError(
                f"{self.path} line {self.line} key {key!r} must be an integer. Found {self.data.get(key)!r};"
                " the metrics file is damaged, regenerate it by re-running."
            )
        return int(value)


@dataclass(frozen=True, kw_only=True)
class MetricsFile:
    """Every complete row of ``metrics.jsonl`` (an absent file gives ``present=False``)."""

    path: Path = field(metadata={"help": "the metrics file"})
    present: bool = field(metadata={"help": "whether the file exists"})
    rows: tuple[MetricRow, ...] = field(metadata={"help": "rows in file order"})
    skipped_tail: bool = field(default=False, metadata={"help": "an incomplete last line was skipped"})

    def of_kind(self, kind: str, *, phase: str | None = None) -> tuple[MetricRow, ...]:
        """Rows of ``kind`` (and ``phase`` when given), in file order."""
        return tuple(r for r in self.rows if r.kind == kind and (phase is None or r.phase == phase))


def read_metrics(path: Path) -> MetricsFile:
    """Parse ``metrics.jsonl``; a missing file is not an error (the run has not logged yet).

    Raises
    ------
    ReportError
        If a complete line is not a JSON object.
    """
    if not path.exists():
        return MetricsFile(path=path, present=False, rows=())
    if not path.is_file():
        raise ReportError(f"{path} must be a file of JSON lines. Found a folder; move it away.")
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    rows: list[MetricRow] = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise ReportError(
                f"{path} line {number} is not valid JSON ({err}); the metrics file is damaged:"
                " remove that line or re-run."
            ) from err
        if not isinstance(record, dict):
            raise ReportError(
                f"{path} line {number} must be a JSON object. Found {type(record).__name__};"
                " remove that line or re-run."
            )
        rows.append(MetricRow(path=path, line=number, data=record))
    return MetricsFile(path=path, present=True, rows=tuple(rows), skipped_tail=bool(tail.strip()))
