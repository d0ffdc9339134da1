"""The report's first screen: the guarantee, then accuracy beside dense with rounds to accuracy, the
ticket's sparsity and MACs kept, and ε spent of the budget per privacy unit, in that order.

Run directories come from the report tests' builder (real ledger, real ticket file); the figures are
checked against the fixture's own numbers and an independent sum over the ledger's JSON lines.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html import escape
from pathlib import Path
from typing import Any

import pytest

from federation.layout import KIND_SERVER_EVAL, LEDGER_FILE, METRICS_FILE, PHASE_TRAIN, SUMMARY_FILE, TICKET_FILE
from simulations.report import ReportError, render_report

from .test_simulations_report import VARIANTS, close, ledger_sums, make_run, snapshot, tables

OVERVIEW = "## At a glance"
LABELS = {"dense": "dense (no ticket)", "dp_ticket": "DP ticket", "nonprivate_ticket": "non-private ticket",
          "random_ticket": "random ticket (DP ticket's structure)"}
# Known rounds: threshold 0.9 x dense's final 0.95 = 0.855. Dense first reaches it at round 3, the DP
# ticket at round 4, the non-private ticket at round 1 (and dips below later), the random ticket never.
SERIES = {
    "dense": [0.1, 0.5, 0.8, 0.9, 0.95],
    "dp_ticket": [0.1, 0.4, 0.7, 0.8, 0.86],
    "nonprivate_ticket": [0.1, 0.86, 0.84, 0.85, 0.85],
    "random_ticket": [0.1, 0.2, 0.3, 0.3, 0.854],
}


def overview(markdown: str) -> str:
    """From the guarantee (the first paragraph) to the first numbered section."""
    return markdown[: markdown.index("\n## 1. Run")]


def _with_training(run: Path, series: dict[str, list[float]], *, rounds_in_summary: Any = None) -> Path:
    """Replace the run's server-eval rows by ``series`` (rounds 0..n) and quote their finals in summary.json."""
    rows = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]
    rows = [row for row in rows if row.get("kind") != KIND_SERVER_EVAL] + [
        {"phase": PHASE_TRAIN, "round": r, "kind": KIND_SERVER_EVAL, "variant": variant, "accuracy": accuracy,
         "loss": 1.0 - accuracy}
        for variant, points in series.items() for r, accuracy in enumerate(points)
    ]
    (run / METRICS_FILE).write_text("".join(json.dumps(row) + "\n" for row in rows))
    summary = json.loads((run / SUMMARY_FILE).read_text())
    summary["accuracy"] = {variant: points[-1] for variant, points in series.items()}
    if rounds_in_summary is not None:
        summary["rounds-to-accuracy"] = rounds_in_summary
    (run / SUMMARY_FILE).write_text(json.dumps(summary))
    return run


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    run = make_run(tmp_path_factory.mktemp("overview") / "run")
    summary = json.loads((run / SUMMARY_FILE).read_text())
    summary["sparsity"] |= {"paths": 527.0, "conv-macs": {"kept": 127792, "dense": 4628736},
                            "model-macs": {"kept": 228784, "dense": 4729728}}
    (run / SUMMARY_FILE).write_text(json.dumps(summary))
    paths = render_report(run)
    return run, paths.markdown.read_text(), paths.html.read_text()


def test_the_first_screen_holds_the_guarantee_then_accuracy_sparsity_and_epsilon_in_order(rendered):
    run, markdown, html = rendered
    head = overview(markdown)
    guarantee = markdown.split("\n\n", 1)[0]
    assert guarantee.startswith("The ticket (ticket.safetensors") and "Not covered" in guarantee
    order = [guarantee, "# dppt run report: run", OVERVIEW, "| model | test accuracy | vs dense |",
             "| conv sparsity (target 0.8) | model sparsity |", "| unit | ε budget | ε spent | ε remaining |"]
    positions = [head.find(text) for text in order]
    assert -1 not in positions and positions == sorted(positions) and positions[0] == 0, positions
    accuracy, ticket, budget, whole = tables(head)

    # accuracy: dense and every ticket, summary.json's figures, the gap to dense in points
    assert [row["model"] for row in accuracy] == [LABELS[v] for v in VARIANTS]
    for row, (variant, value) in zip(accuracy, VARIANTS.items(), strict=True):
        assert close(row["test accuracy"], value)
        expected = "reference" if variant == "dense" else f"{100 * (value - VARIANTS['dense']):+.2f} points"
        assert row["vs dense"] == expected
    # ticket: summary.json's sparsity, MACs kept as a share of dense, kept paths
    (row,) = ticket
    assert f"### The DP ticket ({TICKET_FILE}): sparsity and MACs kept per example" in head
    assert row["conv sparsity (target 0.8)"] == "0.7" and row["model sparsity"] == "0.65"
    assert row["kept input->output paths"] == "527"
    assert row["conv MACs kept"] == "2.76% (127.8 k of 4.629 M)"
    assert row["all MACs kept"] == "4.84% (228.8 k of 4.73 M)"
    # ε spent of the budget per unit: the ledger's figures, recomputed from its JSON lines
    per_client, client_total, _ = ledger_sums(run / LEDGER_FILE)
    units = {r["unit"].split()[0]: r for r in budget}
    assert set(units) == {"record", "client"}
    assert units["record"]["ε budget"] == "2" and close(units["record"]["ε spent"], max(per_client.values()))
    assert units["client"]["ε budget"] == "1" and close(units["client"]["ε spent"], client_total)
    # the whole run: plain masked FedAvg released the weights without noise, so no record-level figure holds
    assert [row["phase"] for row in whole] == ["search", "train", "whole run (basic composition of the phases)"]
    assert whole[1]["ε (record, one example replaced)"] == whole[2]["ε (record, one example replaced)"] == "inf"
    assert "The whole run is not record-level DP (ε = ∞): masked FedAvg without noise" in head

    # the HTML page opens the same way: the guarantee, the title, then the three tables
    body = html.split("<body>\n", 1)[1]
    assert body.startswith(f"<p>{escape(guarantee)}</p>")
    marks = [body.find(text) for text in ("<h1>", "<h2>At a glance</h2>", "<th>test accuracy</th>",
                                          "<th>conv sparsity (target 0.8)</th>", "<th>ε remaining</th>", "<h2>1. Run</h2>")]
    assert -1 not in marks and marks == sorted(marks)


def test_the_detailed_sections_follow_unchanged(rendered):
    _, markdown, _ = rendered
    numbered = re.findall(r"^## (\d+)\. ", markdown, flags=re.M)
    assert numbered == [str(n) for n in range(1, 10)]
    assert markdown.count("# dppt run report:") == 1  # the title moved above the overview, not repeated


def test_rounds_to_accuracy_from_metrics_a_known_round_and_never(tmp_path):
    run = _with_training(make_run(tmp_path / "run"), SERIES)  # summary.json without "rounds-to-accuracy"
    head = overview(render_report(run).markdown.read_text())
    accuracy = tables(head)[0]
    column = "first round at accuracy ≥ 0.855"
    assert {row["model"]: row[column] for row in accuracy} == {
        LABELS["dense"]: "round 3 of 4", LABELS["dp_ticket"]: "round 4 of 4",
        LABELS["nonprivate_ticket"]: "round 1 of 4", LABELS["random_ticket"]: "not reached in 4 rounds",
    }
    assert "0.855, 0.9 x the dense model's final accuracy (round 0 is θ0, before training)" in head


def test_rounds_to_accuracy_is_summary_json_s_when_the_run_wrote_it(tmp_path):
    written = {"fraction-of-dense": 0.9, "threshold": 0.5,
               "variants": {"dense": {"round": 2, "rounds-evaluated": 4},
                            "dp_ticket": {"round": None, "rounds-evaluated": 7}}}
    run = _with_training(make_run(tmp_path / "run"), SERIES, rounds_in_summary=written)
    accuracy = tables(overview(render_report(run).markdown.read_text()))[0]
    cells = {row["model"]: row["first round at accuracy ≥ 0.5"] for row in accuracy}
    assert cells[LABELS["dense"]] == "round 2 of 4" and cells[LABELS["dp_ticket"]] == "not reached in 7 rounds"
    assert cells[LABELS["random_ticket"]] == "n/a"  # not in summary.json's entry: not made up here


def test_without_dense_there_is_no_threshold_and_the_report_says_so(tmp_path):
    series = {name: points for name, points in SERIES.items() if name != "dense"}
    run = make_run(tmp_path / "run")
    rows = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]
    (run / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows if r.get("kind") != KIND_SERVER_EVAL))
    _with_training(run, series)
    head = overview(render_report(run).markdown.read_text())
    accuracy = tables(head)[0]
    assert [row["model"] for row in accuracy] == [LABELS[v] for v in series]
    assert all(row["first round at accuracy ≥ n/a"] == "n/a" and row["vs dense"] == "n/a" for row in accuracy)
    assert "this run trained no dense model" in head and "so there is no threshold to reach" in head


def test_a_partial_run_shows_what_exists(tmp_path):
    run = make_run(tmp_path / "run", with_summary=False, with_ticket=False, with_training=False, rounds=(1,))
    head = overview(render_report(run).markdown.read_text())
    assert "No model has been trained and evaluated yet." in head
    ticket, budget, whole = tables(head)
    assert [row["phase"] for row in whole] == ["search", "train", "whole run (basic composition of the phases)"]
    assert "### The DP ticket (none yet)" in head and set(ticket[0].values()) == {"n/a"}
    assert {row["unit"].split()[0] for row in budget} == {"record", "client"}
    assert "summary.json is not written yet" in head


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("rounds-to-accuracy", {"fraction-of-dense": 0.9, "threshold": 0.5, "variants": []},
         "rounds-to-accuracy.variants must be an object"),
        ("sparsity", {"conv": 0.7, "conv-macs": {"kept": 5, "dense": 4}}, "key 'sparsity.conv-macs' must be"),
    ],
    ids=["rounds", "macs"],
)
def test_a_malformed_entry_is_a_one_line_error_naming_summary_json(tmp_path, key, value, needle):
    run = make_run(tmp_path / "run")
    summary = json.loads((run / SUMMARY_FILE).read_text())
    (run / SUMMARY_FILE).write_text(json.dumps({**summary, key: value}))
    before = snapshot(run)
    with pytest.raises(ReportError) as info:
        render_report(run)
    message = str(info.value)
    assert "\n" not in message and SUMMARY_FILE in message and needle in message, message
    assert snapshot(run) == before


def test_the_overview_modules_load_without_torch():
    code = ("import sys; import simulations.report.sections_overview, simulations.report.render; "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "False"
