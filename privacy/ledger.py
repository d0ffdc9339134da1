"""Append-only JSON-lines privacy ledger (DESIGN.md 5.4).

Format: one JSON object per line and per event: the fields of
:meth:`PrivacyEvent.to_dict` plus ``ledger_schema``, ``batch`` (0, 1, 2, ... one per
:meth:`Ledger.append` call, i.e. per round), ``batch_index`` and ``batch_size``. ``inf`` is
written as the string ``"inf"``.

Durability: :meth:`Ledger.append` writes one batch with a single ``O_APPEND`` write, then
``fsync``; it returns only once the batch is on disk. Creating a ledger also syncs its directory.
An exclusive ``flock`` is held during the write, and a ledger that grew behind this object's back
(another writer) is refused.

Torn-write policy: a process killed while appending can leave a partial last line or a batch
with fewer lines than its ``batch_size``. Opening such a file raises :class:`TornLedgerError`
naming the file and the first line of the incomplete batch: nothing is silently dropped, and
nothing half-written is counted. :meth:`Ledger.repair` then copies the bytes of the incomplete
batch to a side file ``<name>.torn-<n>`` (fsynced; nothing is deleted) and truncates the ledger to
its last complete batch, so the run can resume. Under the write-ahead protocol of
:class:`privacy.accountant.Accountant` (charge before release), an incomplete batch was never
acknowledged, so its round never started; the re-run round is charged once, under a new attempt.
A malformed line followed by valid lines is corruption, not a torn write: :class:`LedgerError`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from storage import fsync_dir, write_all
from privacy.errors import LedgerError, PrivacyError, TornLedgerError
from privacy.events import PrivacyEvent

try:  # POSIX advisory locking; absent on Windows, where appends are unlocked.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = ["LEDGER_SCHEMA", "Ledger", "TornRepair"]

LEDGER_SCHEMA: Final = 1
_LEDGER_KEYS: Final = ("ledger_schema", "batch", "batch_index", "batch_size")


@dataclass(frozen=True, kw_only=True)
class TornRepair:
    """What :meth:`Ledger.repair` did."""

    side_file: Path | None = field(metadata={"help": "file holding the moved bytes, None if nothing to do"})
    bytes_moved: int = field(metadata={"help": "number of bytes moved out of the ledger"})
    first_line: int | None = field(metadata={"help": "first moved line (1-based)"})


@dataclass(frozen=True)
class _Scan:
    events: tuple[PrivacyEvent, ...]
    num_batches: int
    complete_bytes: int
    torn_line: int | None
    total_bytes: int


def _scan(path: Path) -> _Scan:
    """Parse the ledger; locate the end of the last complete batch; raise on corruption."""
    data = path.read_bytes()
    complete_lines = data.split(b"\n")[:-1]  # the piece after the last newline is partial (or empty)
    events: list[PrivacyEvent] = []
    ids: set[str] = set()
    offset = 0
    complete_bytes = 0
    num_batches = 0
    batch_events: list[PrivacyEvent] = []
    batch_size = 0
    batch_start_line = 1
    bad_line: int | None = None
    last_error: Exception | None = None
    for number, raw in enumerate(complete_lines, start=1):
        offset += len(raw) + 1
        try:
            record = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as err:  # unparsable: a torn tail, or corruption
            bad_line = number if bad_line is None else bad_line
            last_error = err
            continue
        if bad_line is not None:  # a parsable line after a bad one: corruption, not a torn tail
            raise LedgerError(
                f"ledger {path} is corrupted at line {bad_line} ({last_error}); parsable lines follow"
                " it, so this is not a torn write. Restore the file from a backup."
            ) from last_error
        try:
            if not isinstance(record, dict) or any(key not in record for key in _LEDGER_KEYS):
                raise LedgerError(f"every line must be a JSON object with keys {list(_LEDGER_KEYS)}.")
            meta = {key: record.pop(key) for key in _LEDGER_KEYS}
            if meta["ledger_schema"] != LEDGER_SCHEMA:
                raise LedgerError(f"ledger_schema must be {LEDGER_SCHEMA}. Found {meta['ledger_schema']!r}.")
            event = PrivacyEvent.from_dict(record)
        except PrivacyError as err:
            raise LedgerError(f"ledger {path} line {number} is not a valid ledger line: {err}") from err
        expected_index = len(batch_events)
        if expected_index == 0:
            batch_size, batch_start_line = meta["batch_size"], number
        if (
            meta["batch"] != num_batches
            or meta["batch_index"] != expected_index
            or meta["batch_size"] != batch_size
            or not isinstance(batch_size, int)
            or batch_size < 1
        ):
            raise LedgerError(
                f"ledger {path} line {number} must continue batch {num_batches} at index {expected_index}."
                f" Found batch={meta['batch']!r}, batch_index={meta['batch_index']!r},"
                f" batch_size={meta['batch_size']!r}."
            )
        if event.event_id in ids:
            raise LedgerError(f"ledger {path} line {number} repeats event_id {event.event_id!r}.")
        ids.add(event.event_id)
        batch_events.append(event)
        if len(batch_events) == batch_size:
            events.extend(batch_events)
            batch_events = []
            num_batches += 1
            complete_bytes = offset
    torn_line: int | None = None
    if complete_bytes < len(data):
        torn_line = batch_start_line if batch_events else (bad_line or len(complete_lines) + 1)
    return _Scan(
        events=tuple(events), num_batches=num_batches, complete_bytes=complete_bytes,
        torn_line=torn_line, total_bytes=len(data),
    )


class Ledger:
    """Append-only JSON-lines ledger of :class:`PrivacyEvent` (policy in the module docstring).

    Parameters
    ----------
    path
        Ledger file. Created (empty, directory synced) if absent; read and checked if present.

    Raises
    ------
    TornLedgerError
        If the file ends with an incomplete batch (see :meth:`repair`).
    LedgerError
        If the file is corrupted or not a ledger.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        if not self._path.exists():
            self._path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:  # created concurrently: read it like any existing ledger
                pass
            else:
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                fsync_dir(self._path.parent)
        if not self._path.is_file():
            raise LedgerError(f"ledger path must be a regular file. Found {self._path}.")
        scan = _scan(self._path)
        if scan.torn_line is not None:
            raise TornLedgerError(
                path=self._path,
                line_number=scan.torn_line,
                message=(
                    f"ledger {self._path} ends with an incomplete write starting at line {scan.torn_line}"
                    f" ({scan.total_bytes - scan.complete_bytes} bytes after the last complete batch):"
                    " the process was probably killed while appending. Nothing was counted from it."
                    f" To continue, call privacy.Ledger.repair({str(self._path)!r}), which moves those bytes"
                    " to a side file next to the ledger and keeps every complete batch."
                ),
            )
        self._events: list[PrivacyEvent] = list(scan.events)
        self._ids = {event.event_id for event in self._events}
        self._num_batches = scan.num_batches
        self._size = scan.complete_bytes

    @property
    def path(self) -> Path:
        """The ledger file."""
        return self._path

    @property
    def events(self) -> tuple[PrivacyEvent, ...]:
        """Every event, in ledger order (from disk at opening, plus this object's appends)."""
        return tuple(self._events)

    @property
    def num_batches(self) -> int:
        """Number of complete batches (append calls) in the ledger."""
        return self._num_batches

    def read(self) -> tuple[PrivacyEvent, ...]:
        """Re-read and check the file from disk; return its events.

        Raises
        ------
        TornLedgerError, LedgerError
            As at construction.
        """
        scan = _scan(self._path)
        if scan.torn_line is not None:
            raise TornLedgerError(
                path=self._path, line_number=scan.torn_line,
                message=(
                    f"ledger {self._path} ends with an incomplete write at line {scan.torn_line};"
                    " see Ledger.repair."
                ),
            )
        return scan.events

    def append(self, events: Sequence[PrivacyEvent]) -> None:
        """Append one batch (one round) of events durably: one write, flush, ``os.fsync``.

        Raises
        ------
        PrivacyError
            If ``events`` is empty or holds something else than :class:`PrivacyEvent`.
        LedgerError
            If an ``event_id`` is already in the ledger or the file changed behind this object.
        """
        batch = list(events) if not isinstance(events, PrivacyEvent) else [events]
        if not batch:
            raise PrivacyError("events must be a non-empty sequence of PrivacyEvent. Found an empty one.")
        for item in batch:
            if not isinstance(item, PrivacyEvent):
                raise PrivacyError(f"events must hold PrivacyEvent objects. Found {type(item).__name__}.")
        batch_ids = [event.event_id for event in batch]
        repeated = sorted(set(batch_ids) & self._ids) or sorted({i for i in batch_ids if batch_ids.count(i) > 1})
        if repeated:
            raise LedgerError(f"event_id must be new to the ledger. Found repeated {repeated[:3]}.")
        lines = []
        for index, event in enumerate(batch):
            record = {
                "ledger_schema": LEDGER_SCHEMA, "batch": self._num_batches,
                "batch_index": index, "batch_size": len(batch), **event.to_dict(),
            }
            lines.append(json.dumps(record, separators=(",", ":"), allow_nan=False, ensure_ascii=True))
        payload = ("\n".join(lines) + "\n").encode("ascii")
        fd = os.open(self._path, os.O_WRONLY | os.O_APPEND)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size != self._size:
                raise LedgerError(
                    f"ledger {self._path} changed behind this Ledger (size {size}, expected {self._size}):"
                    " another process writes to it. Open it again."
                )
            write_all(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)  # also releases the lock
        self._events.extend(batch)
        self._ids.update(batch_ids)
        self._num_batches += 1
        self._size += len(payload)

    @staticmethod
    def repair(path: str | os.PathLike[str]) -> TornRepair:
        """Move an incomplete trailing batch out of the ledger so that the run can resume.

        The bytes after the last complete batch are written to ``<name>.torn-<n>`` next to the
        ledger (first free ``n``) and synced, then the ledger is truncated to its last complete
        batch and synced. Nothing is deleted. A ledger without a torn tail is left untouched.

        Raises
        ------
        LedgerError
            If the ledger is corrupted in a way that is not a torn tail.
        """
        ledger_path = Path(path)
        scan = _scan(ledger_path)
        if scan.torn_line is None:
            return TornRepair(side_file=None, bytes_moved=0, first_line=None)
        with ledger_path.open("rb") as handle:
            handle.seek(scan.complete_bytes)
            tail = handle.read()
        number = 0
        while (side := ledger_path.with_name(f"{ledger_path.name}.torn-{number}")).exists():
            number += 1
        with side.open("xb") as handle:
            handle.write(tail)
            handle.flush()
            os.fsync(handle.fileno())
        with ledger_path.open("r+b") as handle:
            handle.truncate(scan.complete_bytes)
            handle.flush()
            os.fsync(handle.fileno())
        fsync_dir(ledger_path.parent)
        return TornRepair(side_file=side, bytes_moved=len(tail), first_line=scan.torn_line)
