"""Write-ahead journal of the record-level releases a round asks for (DESIGN.md 5.4).

A record-level vote is released by its client when the client replies, before the server can
charge it: a server killed between the replies reaching the SuperLink and the ledger charge would
otherwise forget releases that happened ("a resumed run never double-charges or forgets a
release"). The journal closes that window:

1. Before a round's messages leave the server, :meth:`ReleaseJournal.ask` appends an ``asked``
   entry (phase, round, attempt and the record-unit events planned for *every* sampled client)
   and fsyncs it.
2. Once the replies are charged (only the clients that answered, so a dead node is never
   charged for a round it did not answer), :meth:`ReleaseJournal.close` appends ``closed``.
3. When a run is opened again, :meth:`ReleaseJournal.unsettled` lists the asks with neither a
   ``closed`` entry nor a ledger event of their (phase, round, attempt): the server stopped before
   it could tell who answered. They are settled by charging the asked events in full (every
   sampled client, as if all had answered: conservative, never a forgotten release) and closing
   them with ``settled``.

A torn last line (a process killed while writing it) is moved to ``<name>.torn`` and ignored: a
torn ``asked`` line was never fsynced, so its messages were never sent; a torn ``closed`` line
comes after the ledger charge, which :meth:`unsettled` finds. A malformed line followed by other lines is corruption
(:class:`LedgerError`).

Format: one JSON object per line: ``journal_schema``, ``kind`` (``asked`` / ``closed`` /
``settled``), ``phase``, ``round``, ``attempt`` and, for ``asked``, ``events``
(:meth:`PrivacyEvent.to_dict`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from storage import append_durably
from privacy.errors import LedgerError, PrivacyError
from privacy.events import UNIT_RECORD, PrivacyEvent

if TYPE_CHECKING:
    from privacy.accountant import Accountant

__all__ = ["JOURNAL_SCHEMA", "ReleaseAsk", "ReleaseJournal"]

JOURNAL_SCHEMA: Final = 1
_KINDS: Final = ("asked", "closed", "settled")


@dataclass(frozen=True, kw_only=True)
class ReleaseAsk:
    """One round attempt whose record-level releases were asked for."""

    phase: str = field(metadata={"help": "run phase, e.g. search"})
    round: int = field(metadata={"help": "round number"})
    attempt: int = field(metadata={"help": "attempt number of the round"})
    events: tuple[PrivacyEvent, ...] = field(metadata={"help": "record-unit events planned for every sampled client"})

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.phase, self.round, self.attempt)


def _key_of(entry: dict[str, Any], path: Path, line: int) -> tuple[str, int, int]:
    try:
        phase, server_round, attempt = entry["phase"], entry["round"], entry["attempt"]
    except KeyError as err:
        raise LedgerError(f"{path} line {line} must have phase, round and attempt. Missing {err}.") from None
    if not isinstance(phase, str) or not all(isinstance(v, int) and not isinstance(v, bool) for v in (server_round, attempt)):
        raise LedgerError(f"{path} line {line} must have a string phase and integer round and attempt. Found {entry!r:.120}.")
    return (phase, server_round, attempt)


class ReleaseJournal:
    """The journal file (created empty if missing); see the module docstring for the protocol.

    Parameters
    ----------
    path
        The journal, conventionally ``ledger.journal.jsonl`` beside the ledger.
    read_only
        Only read (a report): a torn last line is ignored but left in place, and writing raises.
    """

    def __init__(self, path: str | os.PathLike[str], *, read_only: bool = False) -> None:
        self._path = Path(path)
        self._read_only = read_only
        self._asks: dict[tuple[str, int, int], ReleaseAsk] = {}
        self._closed: set[tuple[str, int, int]] = set()
        self._settled: set[tuple[str, int, int]] = set()
        if self._path.exists():
            self._read()

    @property
    def path(self) -> Path:
        """The journal file."""
        return self._path

    def _read(self) -> None:
        data = self._path.read_bytes()
        *complete, torn = data.split(b"\n")
        if torn and not self._read_only:  # bytes after the last newline: a torn write, never acted on; kept aside, then cut off
            side = self._path.with_name(self._path.name + ".torn")
            with side.open("ab") as handle:
                handle.write(torn + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.truncate(self._path, len(data) - len(torn))
        for number, raw in enumerate(complete, start=1):
            try:
                entry = json.loads(raw)
                if not isinstance(entry, dict) or entry.get("journal_schema") != JOURNAL_SCHEMA:
                    raise ValueError("not a journal entry")
            except ValueError as err:
                raise LedgerError(f"{self._path} line {number} must be a journal entry of schema {JOURNAL_SCHEMA}."
                                  f" Found {raw[:80]!r} ({err}).") from None
            kind = entry.get("kind")
            if kind not in _KINDS:
                raise LedgerError(f"{self._path} line {number} kind must be one of {list(_KINDS)}. Found {kind!r}.")
            key = _key_of(entry, self._path, number)
            if kind == "asked":
                try:
                    events = tuple(PrivacyEvent.from_dict(e) for e in entry.get("events", []))
                except PrivacyError as err:
                    raise LedgerError(f"{self._path} line {number} holds an invalid event: {err}") from None
                self._asks[key] = ReleaseAsk(phase=key[0], round=key[1], attempt=key[2], events=events)
            else:
                self._closed.add(key)
                if kind == "settled":
                    self._settled.add(key)

    def _append(self, entry: dict[str, Any]) -> None:
        if self._read_only:
            raise LedgerError(f"{self._path} was opened read-only. Open it without read_only to write.")
        line = json.dumps({"journal_schema": JOURNAL_SCHEMA, **entry}, sort_keys=True) + "\n"
        append_durably(self._path, line.encode("utf-8"))

    def ask(self, *, phase: str, round: int, attempt: int, events: Iterable[PrivacyEvent]) -> ReleaseAsk | None:  # noqa: A002
        """Record, on disk, the record-unit releases a round attempt asks every sampled client for.

        Returns ``None`` (and writes nothing) when ``events`` hold no record-unit release.
        """
        record = tuple(e for e in events if e.unit == UNIT_RECORD)
        if not record:
            return None
        ask = ReleaseAsk(phase=phase, round=round, attempt=attempt, events=record)
        if ask.key in self._asks:
            raise LedgerError(f"round {round} attempt {attempt} of {phase!r} must be asked once. It is already in {self._path}.")
        self._append({"kind": "asked", "phase": phase, "round": round, "attempt": attempt,
                      "events": [e.to_dict() for e in record]})
        self._asks[ask.key] = ask
        return ask

    def close(self, *, phase: str, round: int, attempt: int, settled: bool = False) -> None:  # noqa: A002
        """Mark an ask as charged (``settled``: charged in full after an interruption). No ask: no-op."""
        key = (phase, round, attempt)
        if key not in self._asks or key in self._closed:
            return
        self._append({"kind": "settled" if settled else "closed", "phase": phase, "round": round, "attempt": attempt})
        self._closed.add(key)
        if settled:
            self._settled.add(key)

    def attempts(self, phase: str, server_round: int) -> list[int]:
        """Attempt numbers asked for a round of a phase (also those that charged nothing: no reply)."""
        return [a for (p, r, a) in self._asks if p == phase and r == server_round]

    def settled(self) -> list[ReleaseAsk]:
        """Asks charged in full after an interruption (``settled``), oldest first."""
        return [ask for key, ask in self._asks.items() if key in self._settled]

    def settle(self, accountant: Accountant) -> list[ReleaseAsk]:
        """Record in full, with ``accountant``, every ask :meth:`unsettled` finds in its ledger; close each as ``settled``.

        Every asked event is recorded as if every sampled client had answered (conservative: the
        server cannot tell who did, and a release is never forgotten), without a budget check
        (:meth:`privacy.Accountant.record`). Returns the asks settled, oldest first; idempotent.
        """
        asks = self.unsettled(accountant.ledger.events)
        for ask in asks:
            accountant.record(ask.events)
            self.close(phase=ask.phase, round=ask.round, attempt=ask.attempt, settled=True)
        return asks

    def unsettled(self, charged: Sequence[PrivacyEvent]) -> list[ReleaseAsk]:
        """Asks neither closed nor present in ``charged`` (the ledger's events), oldest first."""
        open_keys = [key for key in self._asks if key not in self._closed]
        if not open_keys:  # the usual case, every round: no need to look at the ledger
            return []
        in_ledger = {(e.phase, e.round, e.attempt) for e in charged}
        return [self._asks[key] for key in open_keys if key not in in_ledger]
