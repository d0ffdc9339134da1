"""The benchmark's timings: written only under DPPT_PROFILE_DIR, and read back into efficiency and spans."""

from __future__ import annotations

import json
import time

import pytest

from federation import profiling
from simulations.benchmarks.bench_rounds import analyse


def test_nothing_is_written_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(profiling.PROFILE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with profiling.message("vote"), profiling.span("data"):
        pass
    profiling.record_server_call("train.vote round 1", start=0.0, wall_s=1.0, sent=1, replies=1)
    assert list(tmp_path.iterdir()) == []


def test_a_message_records_its_spans_and_a_failing_handler_is_still_timed(tmp_path, monkeypatch):
    monkeypatch.setenv(profiling.PROFILE_ENV, str(tmp_path / "profile"))
    with profiling.message("vote"):
        with profiling.span("data"):
            time.sleep(0.02)
        with profiling.span("data"):
            time.sleep(0.01)
    with pytest.raises(RuntimeError), profiling.message("train"):
        raise RuntimeError("refused")
    with profiling.span("outside"):  # not inside a message: ignored
        pass
    (path,) = (tmp_path / "profile").glob("client-*.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [row["kind"] for row in rows] == ["vote", "train"]
    assert rows[0]["spans"]["data"] >= 0.03
    assert rows[0]["wall-s"] >= rows[0]["spans"]["data"]
    assert rows[1]["spans"] == {}


def _write(folder, side, rows):
    folder.mkdir(exist_ok=True)
    (folder / f"{side}-host-1.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def test_efficiency_is_handler_time_over_cores_times_round_wall(tmp_path):
    # One vote round of 10 s on 2 cores with 4 messages of 4 s each: 16 / 20 = 0.8, 1 s of engine per message.
    _write(tmp_path, "server", [
        {"kind": "train.vote round 1", "start": 100.0, "wall-s": 10.0, "sent": 4, "replies": 4},
        {"kind": "evaluate", "start": 111.0, "wall-s": 2.0, "sent": 0, "replies": 0},
    ])
    _write(tmp_path, "client", [
        {"kind": "vote", "start": 100.0 + i, "wall-s": 4.0, "cpu-s": 3.5, "spans": {"data": 1.0, "compute": 2.5}}
        for i in range(4)
    ] + [{"kind": "vote", "start": 50.0, "wall-s": 9.0, "cpu-s": 9.0, "spans": {}}])  # outside the round: ignored
    result = analyse(tmp_path, cores=2, wall_s=30.0, pipeline_s=25.0)
    vote = result["kinds"]["vote"]
    assert vote["efficiency"] == pytest.approx(0.8)
    assert vote["engine-s per message"] == pytest.approx(1.0)
    assert vote["spans-s per message"]["data"] == pytest.approx(1.0)
    assert vote["spans-s per message"]["other-in-handler"] == pytest.approx(0.5)
    split = result["pipeline-split-s"]
    assert split["waiting for replies"] == 10.0 and split["server test-set evaluation"] == 2.0
    assert split["rest of the pipeline (aggregation, prior, files)"] == 13.0
    assert split["outside the pipeline (imports, Ray start and stop, report)"] == 5.0
