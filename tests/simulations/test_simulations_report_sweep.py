"""The ε-sweep summary: one row per run, sorted by ε, inf last, and the accuracy plot."""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest

from federation.layout import CONFIG_FILE, TICKET_FILE
from simulations.report import ReportError, render_sweep
from simulations.report.sweep_plot import infinity_position


def summary(run_dir: Path, *, budget: float | str, dp: float | None, client_budget: float | str = 1.0,
            stop: str | None = None) -> dict[str, Any]:
    """A summary.json as a run writes it, plus "run-dir"."""
    return {
        "run-dir": str(run_dir), "status": "completed",
        "accuracy": {"dense": 0.9, "dp_ticket": dp, "nonprivate_ticket": 0.85, "random_ticket": 0.4},
        "sparsity": {"conv": 0.75, "model": 0.7},
        "epsilon": {"record": {"max": budget, "mean": budget, "budget": budget},
                    "client": {"total": 0.0, "budget": client_budget}, "delta": {"record-max": 0.0, "client": 0.0}},
        "search": {"rounds-planned": 10, "rounds-completed": 10 if stop is None else 6, "stop-reason": stop},
        "wall-time-s": 12.0, "ticket-file": TICKET_FILE,
    }


def _rows(markdown: str) -> list[dict[str, str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    headers = [h.strip() for h in lines[0].strip("|").split("|")]
    return [dict(zip(headers, [c.strip() for c in line.strip("|").split("|")], strict=True)) for line in lines[2:]]


def test_sweep_writes_one_row_per_run_sorted_with_inf_last_and_the_plot(tmp_path: Path) -> None:
    runs = [
        summary(tmp_path / "inf", budget="inf", dp=0.84),
        summary(tmp_path / "e4", budget=4.0, dp=0.8),
        summary(tmp_path / "e0.5", budget=0.5, dp=0.45, stop="budget exhausted"),
        summary(tmp_path / "e1-a", budget=1.0, dp=0.6),
        summary(tmp_path / "e1-b", budget=1.0, dp=0.62),  # a second seed at the same ε
    ]
    paths = render_sweep(runs, tmp_path / "sweep")
    rows = _rows(paths.markdown.read_text())
    assert len(rows) == len(runs)
    assert [r["epsilon"] for r in rows] == ["0.5", "1", "1", "4", "inf"]
    assert [r["dp_ticket accuracy"] for r in rows] == ["0.45", "0.6", "0.62", "0.8", "0.84"]
    assert rows[0]["stop reason"] == "budget exhausted" and rows[0]["rounds completed"] == "6"
    assert rows[1]["stop reason"] == "none" and rows[-1]["record ε max spent"] == "inf"
    assert {r["dense accuracy"] for r in rows} == {"0.9"} and {r["conv sparsity"] for r in rows} == {"0.75"}

    data = json.loads(paths.json.read_text())["rows"]
    assert [r["epsilon"] for r in data] == [0.5, 1.0, 1.0, 4.0, "inf"]
    assert [r["run-dir"] for r in data] == [str(tmp_path / n) for n in ("e0.5", "e1-a", "e1-b", "e4", "inf")]
    assert set(data[0]) == {"run-dir", "epsilon", "dense", "dp_ticket", "nonprivate_ticket", "random_ticket",
                            "conv-sparsity", "record-epsilon-max", "rounds-completed", "stop-reason"}

    assert paths.plot == tmp_path / "sweep" / "plots" / "sweep_accuracy.png"
    png = paths.plot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert image.ndim == 3 and image.std() > 0
    assert "](plots/sweep_accuracy.png)" in paths.markdown.read_text()


def test_infinity_is_drawn_right_of_every_finite_epsilon() -> None:
    assert infinity_position([0.5, 1.0, 4.0]) > 4.0 * 3
    assert infinity_position([2.0]) > 2.0
    assert infinity_position([]) == 1.0


def test_runs_without_dp_accuracy_are_listed_but_not_plotted(tmp_path: Path) -> None:
    runs = [summary(tmp_path / "a", budget=1.0, dp=None), summary(tmp_path / "b", budget=2.0, dp=0.7)]
    paths = render_sweep(runs, tmp_path / "out")
    text = paths.markdown.read_text()
    assert len(_rows(text)) == 2 and "n/a" in _rows(text)[0]["dp_ticket accuracy"]
    assert re.search(r"Not plotted .*a\.", text) and paths.plot is not None

    only_missing = render_sweep([summary(tmp_path / "a", budget=1.0, dp=None)], tmp_path / "out")
    assert only_missing.plot is None and not (tmp_path / "out" / "plots" / "sweep_accuracy.png").exists()


def test_client_unit_runs_sweep_over_the_client_budget(tmp_path: Path) -> None:
    run = tmp_path / "client-run"
    run.mkdir()
    (run / CONFIG_FILE).write_text(json.dumps({"unit": "client"}))
    explicit = summary(tmp_path / "x", budget="inf", dp=0.5) | {"sweep-epsilon": 8.0}
    paths = render_sweep([summary(run, budget="inf", client_budget=0.25, dp=0.5), explicit], tmp_path / "out")
    assert [r["epsilon"] for r in _rows(paths.markdown.read_text())] == ["0.25", "8"]


@pytest.mark.parametrize(
    ("summaries", "message"),
    [
        ([], "non-empty sequence"),
        ([{"accuracy": {}}], "'run-dir'"),
        (["not a mapping"], "must be a mapping"),
        ([{"run-dir": "r", "accuracy": {"dp_ticket": "high"}}], "accuracy.dp_ticket"),
    ],
)
def test_bad_summaries_give_one_line_errors(tmp_path: Path, summaries: list[Any], message: str) -> None:
    with pytest.raises(ReportError, match=re.escape(message)) as info:
        render_sweep(summaries, tmp_path / "out")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_inf_is_never_written_as_a_json_infinity(tmp_path: Path) -> None:
    paths = render_sweep([summary(tmp_path / "i", budget="inf", dp=0.8)], tmp_path / "out")
    text = paths.json.read_text()
    assert "Infinity" not in text and math.isinf(float(json.loads(text)["rows"][0]["epsilon"]))
