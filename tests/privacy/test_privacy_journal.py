"""Release journal: what a round asks for is on disk before it is sent; interrupted asks are found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from privacy import LAPLACE_TOPK, Accountant, Ledger, LedgerError, PrivacyEvent, ReleaseJournal


def _event(round_: int, participants: tuple[str, ...], *, attempt: int = 0, unit: str = "record") -> PrivacyEvent:
    return PrivacyEvent(round=round_, phase="search", domain="patterns", layer=None, unit=unit,
                        mechanism=LAPLACE_TOPK, sensitivity=0.1, noise_scale=0.4, epsilon=0.5, delta=0.0,
                        participants=participants, sensitivity_norm="linf", attempt=attempt)


def test_an_ask_is_on_disk_and_unsettled_until_closed_or_charged(tmp_path: Path) -> None:
    path = tmp_path / "ledger.journal.jsonl"
    journal = ReleaseJournal(path)
    asked = journal.ask(phase="search", round=1, attempt=0, events=[_event(1, ("a", "b", "c"))])
    assert asked is not None and [json.loads(line)["kind"] for line in path.read_text().splitlines()] == ["asked"]
    reopened = ReleaseJournal(path)
    assert [a.key for a in reopened.unsettled([])] == [("search", 1, 0)]
    assert reopened.unsettled([_event(1, ("a",))]) == []  # charged (only a answered): not unsettled
    reopened.close(phase="search", round=1, attempt=0)
    assert ReleaseJournal(path).unsettled([]) == []
    journal.ask(phase="search", round=2, attempt=0, events=[_event(2, ("a", "b"))])
    unsettled = ReleaseJournal(path).unsettled([_event(1, ("a",))])
    assert [(a.round, a.events[0].participants) for a in unsettled] == [(2, ("a", "b"))]


def test_settling_charges_every_sampled_client_once(tmp_path: Path) -> None:
    accountant = Accountant(Ledger(tmp_path / "ledger.jsonl"), record_epsilon_budget=1.0, client_epsilon_budget=1.0)
    journal = ReleaseJournal(tmp_path / "journal.jsonl")
    ask = journal.ask(phase="search", round=1, attempt=0, events=[_event(1, ("a", "b"))])
    assert ask is not None
    for pending in journal.unsettled(accountant.ledger.events):
        accountant.charge(pending.events)
        journal.close(phase=pending.phase, round=pending.round, attempt=pending.attempt, settled=True)
    assert accountant.record_epsilon_by_client() == {"a": 0.5, "b": 0.5}
    again = ReleaseJournal(tmp_path / "journal.jsonl")
    assert again.unsettled(accountant.ledger.events) == [] and [a.key for a in again.settled()] == [ask.key]
    assert json.loads((tmp_path / "journal.jsonl").read_text().splitlines()[-1])["kind"] == "settled"


def test_no_record_release_writes_nothing_and_an_ask_is_made_once(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = ReleaseJournal(path)
    central = _event(1, ("server",), unit="client")
    assert journal.ask(phase="search", round=1, attempt=0, events=[central]) is None and not path.exists()
    journal.ask(phase="search", round=1, attempt=0, events=[_event(1, ("a",))])
    with pytest.raises(LedgerError, match="must be asked once"):
        journal.ask(phase="search", round=1, attempt=0, events=[_event(1, ("a",))])


def test_a_torn_last_line_is_kept_aside_and_ignored(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    ReleaseJournal(path).ask(phase="search", round=1, attempt=0, events=[_event(1, ("a",))])
    good = path.read_bytes()
    path.write_bytes(good + b'{"journal_schema": 1, "kind": "ask')  # killed while writing round 2's ask
    journal = ReleaseJournal(path)
    assert path.read_bytes() == good
    assert (tmp_path / "journal.jsonl.torn").read_bytes() == b'{"journal_schema": 1, "kind": "ask\n'
    assert [a.round for a in journal.unsettled([])] == [1]
    journal.ask(phase="search", round=2, attempt=0, events=[_event(2, ("a",))])  # appends cleanly after the cut
    assert [a.round for a in ReleaseJournal(path).unsettled([])] == [1, 2]


def test_a_read_only_journal_leaves_the_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    ReleaseJournal(path).ask(phase="search", round=1, attempt=0, events=[_event(1, ("a",))])
    path.write_bytes(path.read_bytes() + b'{"torn')
    before = path.read_bytes()
    journal = ReleaseJournal(path, read_only=True)
    assert [a.round for a in journal.unsettled([])] == [1] and path.read_bytes() == before
    with pytest.raises(LedgerError, match="read-only"):
        journal.close(phase="search", round=1, attempt=0)
    assert not (tmp_path / "journal.jsonl.torn").exists()


def test_a_malformed_line_inside_the_journal_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    ReleaseJournal(path).ask(phase="search", round=1, attempt=0, events=[_event(1, ("a",))])
    path.write_bytes(b"not json\n" + path.read_bytes())
    with pytest.raises(LedgerError, match="line 1 must be a journal entry"):
        ReleaseJournal(path)
    path.write_text(json.dumps({"journal_schema": 1, "kind": "maybe", "phase": "search", "round": 1, "attempt": 0}) + "\n")
    with pytest.raises(LedgerError, match="kind must be one of"):
        ReleaseJournal(path)
