"""Ledger: JSON-lines round trip, fsync per append, torn tails, repair and resume."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

import privacy.ledger as ledger_module
from privacy import LAPLACE_TOPK, Accountant, Ledger, LedgerError, PrivacyError, PrivacyEvent, TornLedgerError


def _event(round_: int, participants: tuple[str, ...] = ("a", "b"), epsilon: float = 0.5) -> PrivacyEvent:
    scale = 0.2 / epsilon if math.isfinite(epsilon) else 0.0
    return PrivacyEvent(round=round_, phase="search", domain="library", layer=None, unit="record",
                        mechanism=LAPLACE_TOPK, sensitivity=0.1, noise_scale=scale,
                        epsilon=epsilon, delta=0.0, participants=participants, sensitivity_norm="linf")


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run" / "ledger.jsonl"
    ledger = Ledger(path)
    first = [_event(1), _event(1, ("c",))]
    second = [_event(2, epsilon=math.inf)]
    ledger.append(first)
    ledger.append(second)
    assert ledger.events == (*first, *second) and ledger.num_batches == 2
    assert Ledger(path).events == ledger.events == ledger.read()
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    record = json.loads(lines[2])  # plain JSON, readable by any tool
    assert record["epsilon"] == "inf" and record["batch"] == 1 and record["round"] == 2
    assert {"round", "phase", "domain", "layer", "unit", "mechanism", "sensitivity", "noise_scale", "epsilon",
            "delta", "participants"} <= set(record)


def test_every_append_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    calls: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(ledger_module.os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd))[1])
    ledger.append([_event(1), _event(1, ("z",))])
    assert len(calls) == 1
    ledger.append([_event(2)])
    assert len(calls) == 2


def test_append_checks_its_input(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "ledger.jsonl")
    event = _event(1)
    with pytest.raises(PrivacyError, match="non-empty"):
        ledger.append([])
    with pytest.raises(PrivacyError, match="PrivacyEvent"):
        ledger.append([{"round": 1}])  # type: ignore[list-item]
    ledger.append([event])
    with pytest.raises(LedgerError, match="event_id must be new"):
        ledger.append([event])  # the same release charged twice
    with pytest.raises(LedgerError, match="event_id must be new"):
        twin = _event(2)
        ledger.append([twin, twin])
    assert ledger.events == (event,)


def _torn_file(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    ledger.append([_event(1)])
    ledger.append([_event(2)])
    good = path.read_bytes()
    return path, good


def test_torn_last_line_is_reported_with_file_line_and_repair(tmp_path: Path) -> None:
    path, good = _torn_file(tmp_path)
    line = json.dumps({"ledger_schema": 1, "batch": 2, "batch_index": 0, "batch_size": 1, **_event(3).to_dict()})
    path.write_bytes(good + line[: len(line) // 2].encode())  # killed mid-write
    with pytest.raises(TornLedgerError) as info:
        Ledger(path)
    assert info.value.line_number == 3 and info.value.path == path
    assert str(path) in str(info.value) and "Ledger.repair" in str(info.value)


def test_incomplete_batch_is_torn_even_with_whole_lines(tmp_path: Path) -> None:
    path, good = _torn_file(tmp_path)
    meta = {"ledger_schema": 1, "batch": 2, "batch_size": 3}
    lines = [json.dumps({**meta, "batch_index": i, **_event(3, (f"c{i}",)).to_dict()}) for i in range(2)]
    path.write_bytes(good + ("\n".join(lines) + "\n").encode())  # 2 of 3 lines reached the disk
    with pytest.raises(TornLedgerError) as info:
        Ledger(path)
    assert info.value.line_number == 3


def test_repair_moves_torn_bytes_aside_and_the_run_resumes(tmp_path: Path) -> None:
    path, good = _torn_file(tmp_path)
    tail = b'{"ledger_schema":1,"batch":2,"batch_in'
    path.write_bytes(good + tail)
    repair = Ledger.repair(path)
    assert repair.side_file is not None and repair.side_file.read_bytes() == tail  # nothing deleted
    assert repair.bytes_moved == len(tail) and repair.first_line == 3
    assert path.read_bytes() == good
    resumed = Ledger(path)
    assert [event.round for event in resumed.events] == [1, 2]
    resumed.append([_event(3, ("a",))])
    assert [event.round for event in Ledger(path).events] == [1, 2, 3]
    path.write_bytes(path.read_bytes() + b"{")
    assert Ledger.repair(path).side_file != repair.side_file  # a second repair never overwrites the first
    assert Ledger.repair(path).side_file is None  # nothing left to repair


def test_corruption_in_the_middle_is_not_a_torn_tail(tmp_path: Path) -> None:
    path, good = _torn_file(tmp_path)
    lines = good.decode().splitlines()
    path.write_text(lines[0][:20] + "\n" + lines[1] + "\n")
    with pytest.raises(LedgerError, match="corrupted at line 1") as info:
        Ledger(path)
    assert not isinstance(info.value, TornLedgerError)
    with pytest.raises(LedgerError):
        Ledger.repair(path)


def test_invalid_lines_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    record = {"ledger_schema": 1, "batch": 0, "batch_index": 0, "batch_size": 1, **_event(1).to_dict()}
    for bad, match in (
        ({**record, "ledger_schema": 99}, "ledger_schema must be 1"),
        ({**record, "epsilon": -1}, "not a valid ledger line"),
        ({**record, "batch": 5}, "must continue batch 0"),
        ([1, 2], "not a valid ledger line"),
    ):
        path.write_text(json.dumps(bad) + "\n")
        with pytest.raises(LedgerError, match=match):
            Ledger(path)


def test_repeated_event_id_on_disk_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    event = _event(1)
    lines = [json.dumps({"ledger_schema": 1, "batch": b, "batch_index": 0, "batch_size": 1, **event.to_dict()})
             for b in range(2)]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LedgerError, match="repeats event_id"):
        Ledger(path)


def test_a_second_writer_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    first, second = Ledger(path), Ledger(path)
    first.append([_event(1)])
    with pytest.raises(LedgerError, match="changed behind this Ledger"):
        second.append([_event(2)])
    assert len(Ledger(path).events) == 1


def test_resume_never_double_counts(tmp_path: Path) -> None:
    path = tmp_path / "ledger.jsonl"
    budgets = {"record_epsilon_budget": 10.0, "client_epsilon_budget": 10.0}
    accountant = Accountant(Ledger(path), **budgets)
    accountant.charge([_event(1), _event(1, ("c",))])
    accountant.charge([_event(2, ("a",))])
    before = accountant.record_epsilon_by_client()
    resumed = Accountant(Ledger(path), **budgets)  # the process restarts
    assert resumed.record_epsilon_by_client() == before == {"a": 1.0, "b": 0.5, "c": 0.5}
    resumed.charge([_event(3, ("b",))])
    assert Accountant(Ledger(path), **budgets).record_epsilon_by_client() == {"a": 1.0, "b": 1.0, "c": 0.5}


def test_a_torn_round_is_not_counted_after_repair(tmp_path: Path) -> None:
    path, good = _torn_file(tmp_path)
    path.write_bytes(good + b'{"ledger_schema":1,"batch":2')
    Ledger.repair(path)
    accountant = Accountant(Ledger(path), record_epsilon_budget=10.0, client_epsilon_budget=10.0)
    assert accountant.record_epsilon_by_client() == {"a": 1.0, "b": 1.0}


def test_ledger_path_must_be_a_file(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="regular file"):
        Ledger(tmp_path)
