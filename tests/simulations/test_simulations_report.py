"""The privacy-budget report of a run directory: files, figures equal to the ledger, partial runs,
one-line errors, and a ledger that is never touched.

Run directories are synthetic but built with the real APIs: privacy.Accountant charges the
events to a real privacy.Ledger, kernels.random_ticket gives a real ticket file. The ε figures
are checked against sums recomputed here from the raw JSON lines of the ledger, not through
the privacy package.
"""

from __future__ import annotations

import base64
import io
import dataclasses
import json
import math
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from html import escape
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest
import torch

from federation.layout import (
    CONFIG_FILE, KIND_PARTITIONS, KIND_SEARCH_ROUND, KIND_SERVER_EVAL, LEDGER_FILE, METRICS_FILE, PHASE_SEARCH,
    PHASE_SETUP, PHASE_TRAIN, REFERENCE_DIR, SUMMARY_FILE, TICKET_FILE,
)
from kernels import TicketMetadata, enumerate_candidates, random_ticket
from privacy import (
    GAUSSIAN,
    GUMBEL_TOPK,
    LAPLACE_TOPK,
    Accountant,
    Ledger,
    MechanismSpec,
    PrivacyEvent,
    data_free_spec,
    histogram_calibration,
    histogram_diagnostic,
    topk_spec,
)
from simulations.report import PrivacyTotals, ReportError, ReportPaths, privacy_totals, render_report
from simulations.report.outputs import HTML_FILE, MARKDOWN_FILE

PLOTS = ("epsilon_per_round.png", "epsilon_per_client.png", "accuracy.png", "convergence.png", "sparsity_per_layer.png",
         "epsilon_per_phase.png")
CENTRAL_EPSILON = 0.0123457  # 6 significant digits: a report printing fewer would fail the checks
VARIANTS = {"dense": 0.9, "dp_ticket": 0.7, "nonprivate_ticket": 0.8, "random_ticket": 0.5}
# Uneven participation: client-2 drops out after round 1, client-3 misses round 3, client-10
# sorts after client-2 only with a natural sort.
PARTICIPATION = {
    1: ("client-1", "client-2", "client-3", "client-10"),
    2: ("client-1", "client-3", "client-10"),
    3: ("client-1", "client-10"),
}


# -- building run directories ----------------------------------------------------------------


def _search_events(round_: int, participants: Sequence[str], *, epsilon: float, central: bool) -> list[PrivacyEvent]:
    """One round: two record-level votes (split 1/3, 2/3 as floats) and optionally a central one."""
    events = [
        PrivacyEvent.from_spec(
            topk_spec(mechanism=LAPLACE_TOPK, k=4, epsilon=epsilon / 3, sensitivity=0.01),
            round=round_, phase=PHASE_SEARCH, domain="patterns", layer=None, participants=tuple(participants),
        ),
        PrivacyEvent.from_spec(
            topk_spec(mechanism=GUMBEL_TOPK, k=10, epsilon=2 * epsilon / 3, sensitivity=0.01),
            round=round_, phase=PHASE_SEARCH, domain="kernels:conv1", layer="conv1", participants=tuple(participants),
        ),
    ]
    if central:
        events.append(PrivacyEvent.from_spec(
            _central_spec(epsilon), round=round_, phase=PHASE_SEARCH, domain="patterns", layer=None,
            participants=tuple(participants),
        ))
    return events


def _central_spec(epsilon: float) -> MechanismSpec:
    central_epsilon = CENTRAL_EPSILON if math.isfinite(epsilon) else epsilon
    return histogram_calibration(top_k=8, max_entries=4, epsilon=central_epsilon).spec


def _search_row(
    round_: int, participants: Sequence[str], *, rejected: int = 0, central: MechanismSpec | None = None
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "phase": PHASE_SEARCH, "round": round_, "kind": KIND_SEARCH_ROUND, "attempt": 0, "density": 1.0 - 0.2 * round_,
        "sampled": 4, "replies": len(participants), "failed": 4 - len(participants), "participants": len(participants),
        "ticket-updated": 1, "rejected": rejected, "rejected.duplicate-index": rejected, "rejected.wrong-round": 0,
        "voters.patterns": len(participants), "voters.kernels:conv1": len(participants),
        "epsilon-record-max": 987.0,  # a metrics figure: the report must quote the ledger instead
        "noise-dominated": 1, "elapsed-s": 1.5,
        "kernels-moved": round_ - 1, "kernels-kept": 40,  # kernel votes over a free prior (strategies.PatternSearch)
    }
    if round_ > 1:
        row["jaccard"] = 0.5 + 0.1 * round_
    if central is not None:  # the strategy logs its central release's diagnostic (strategies.PatternTicketSearch)
        diagnostic = histogram_diagnostic(central, num_voters=len(participants))
        row["snr-central.patterns"] = diagnostic.ratio
        row["noise-dominated.patterns"] = int(diagnostic.noise_dominated)
    return row


def _eval_rows(rounds: Iterable[int]) -> list[dict[str, Any]]:
    return [
        {"phase": PHASE_TRAIN, "round": r, "kind": KIND_SERVER_EVAL, "variant": variant,
         "accuracy": acc - 0.05 * (2 - r),
         "loss": 1.0 / r, "elapsed-s": 2.0}
        for variant, acc in VARIANTS.items() for r in rounds
    ]


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def open_accountant(run: Path, *, delta_budget: float = 0.0) -> Accountant:
    """An accountant without ε budgets on the run's ledger (creates it if absent)."""
    return Accountant(
        Ledger(run / LEDGER_FILE), record_epsilon_budget=math.inf, client_epsilon_budget=math.inf,
        delta_budget=delta_budget,
    )


def _jsonable(value: float) -> float | str:
    return "inf" if math.isinf(value) else value


def make_run(
    run: Path,
    *,
    epsilon: float = 0.3,
    budget: float | str = 2.0,
    central: bool = True,
    rounds: Sequence[int] = (1, 2, 3),
    with_ticket: bool = True,
    with_training: bool = True,
    with_summary: bool = True,
    status: str = "completed",
    stop_reason: str | None = None,
) -> Path:
    """A run directory: config, ledger charged round by round, metrics, ticket, summary."""
    run.mkdir(parents=True, exist_ok=True)
    config = {
        "dataset": "mnist", "model": "conv4", "num-clients": 4, "epsilon": budget, "client-epsilon": 1.0,
        "unit": "both" if central else "record", "search-rounds": 4, "train-rounds": 2, "sparsity": 0.8,
        "score": "snip", "patterns": 8, "pattern-entries": 4, "mechanism": "laplace-topk", "reference-search": False,
    }
    (run / CONFIG_FILE).write_text(json.dumps(config))
    accountant = open_accountant(run)
    metrics: list[dict[str, Any]] = [
        {"phase": PHASE_SETUP, "round": 0, "kind": KIND_PARTITIONS, "sizes": [10, 20, 30, 40]}
    ]
    for round_ in rounds:
        accountant.charge(_search_events(round_, PARTICIPATION[round_], epsilon=epsilon, central=central))
        metrics.append(_search_row(round_, PARTICIPATION[round_], rejected=int(round_ == 2),
                                   central=_central_spec(epsilon) if central else None))
    if with_training:
        metrics += _eval_rows((1, 2))
    _write_jsonl(run / METRICS_FILE, metrics)
    totals = privacy_totals(run)
    if with_ticket:
        ticket = random_ticket(
            {"conv1": (8, 4, 3, 3), "conv2": (8, 8, 3, 3), "fc": (10, 32)},
            policies={"conv1": "pattern", "conv2": "pattern", "fc": "unstructured"},
            density=0.3, library=enumerate_candidates(4)[:8], generator=torch.Generator().manual_seed(0),
            metadata=TicketMetadata(
                config_hash="abc", round=max(rounds),
                epsilon_spent={"record": totals.record_epsilon_max, "client": totals.client_epsilon},
            ),
        )
        ticket.save(run / TICKET_FILE)
    if with_summary:
        summary = {
            "status": status,
            "accuracy": dict(VARIANTS) if with_training else {v: None for v in VARIANTS},
            "sparsity": {"conv": 0.7, "model": 0.65},
            "epsilon": {
                "record": {"max": _jsonable(totals.record_epsilon_max), "mean": _jsonable(totals.record_epsilon_mean),
                           "budget": budget},
                "client": {"total": _jsonable(totals.client_epsilon), "budget": 1.0},
                "delta": {"record-max": 0.0, "client": 0.0},
            },
            "search": {"rounds-planned": 4, "rounds-completed": len(rounds), "stop-reason": stop_reason},
            "wall-time-s": 754.2,
            "ticket-file": TICKET_FILE if with_ticket else None,
        }
        (run / SUMMARY_FILE).write_text(json.dumps(summary))
    return run


# -- reading the outputs back --------------------------------------------------------------


def section(markdown: str, number: int) -> str:
    """The text of section ``number`` (from its '## N.' heading to the next '## ')."""
    match = re.search(rf"^## {number}\. .*?(?=^## |\Z)", markdown, flags=re.M | re.S)
    assert match, f"section {number} missing"
    return match.group(0)


def tables(text: str) -> list[list[dict[str, str]]]:
    """Every Markdown table in ``text`` as a list of {header: cell} rows."""
    out: list[list[dict[str, str]]] = []
    for block in re.findall(r"((?:^\|.*\|\n)+)", text, flags=re.M):
        lines = block.strip().split("\n")
        headers = [h.strip() for h in lines[0].strip("|").split("|")]
        rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
        out.append([dict(zip(headers, row, strict=True)) for row in rows])
    return out


def number(cell: str) -> float:
    return float(cell)  # "inf" parses to infinity


def ledger_sums(path: Path) -> tuple[dict[str, float], float, dict[tuple[str, int], tuple[float, float]]]:
    """Independent recomputation from the raw JSON lines: per-client Σε, client-unit Σε and the
    cumulative (max over clients, client total) after each (phase, round)."""
    per_client: dict[str, float] = defaultdict(float)
    client_total = 0.0
    cumulative: dict[tuple[str, int], tuple[float, float]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        eps = math.inf if record["epsilon"] == "inf" else float(record["epsilon"])
        if record["unit"] == "record":
            for client in record["participants"]:
                per_client[client] += eps
        else:
            client_total += eps
        cumulative[(record["phase"], record["round"])] = (max(per_client.values(), default=0.0), client_total)
    return dict(per_client), client_total, cumulative


def close(cell: str, value: float) -> bool:
    parsed = number(cell)
    return parsed == value or math.isclose(parsed, value, rel_tol=1e-5, abs_tol=1e-12)


def snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


# -- a full run, rendered once ---------------------------------------------------------------


FullRun = tuple[Path, dict[str, bytes], ReportPaths]  # run dir, its files before rendering, what was written


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> FullRun:
    run = make_run(tmp_path_factory.mktemp("full") / "run")
    before = snapshot(run)
    paths = render_report(run)
    return run, before, paths


def test_files_exist_and_plots_are_valid_pngs(full_run: FullRun) -> None:
    run, _, paths = full_run
    assert paths.markdown == run / MARKDOWN_FILE and paths.html == run / HTML_FILE
    assert paths.markdown.is_file() and paths.html.is_file()
    assert sorted(p.name for p in paths.plots) == sorted(PLOTS)
    for path in paths.plots:
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")
        image = matplotlib.image.imread(io.BytesIO(data), format="png")
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        assert image.std() > 0  # something is drawn
    markdown = paths.markdown.read_text()
    for name in PLOTS:
        assert f"](plots/{name})" in markdown


def test_html_embeds_every_plot_and_loads_nothing_from_outside(full_run: FullRun) -> None:
    run, _, paths = full_run
    html = paths.html.read_text()
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) == len(PLOTS)
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert "href=" not in html and "<link" not in html and "<script" not in html and "url(" not in html
    embedded = {base64.b64decode(src.split(",", 1)[1]) for src in sources}
    assert embedded == {(run / "plots" / name).read_bytes() for name in PLOTS}
    # Same content as the Markdown: every table cell of the Markdown is in the HTML.
    for table in tables(paths.markdown.read_text()):
        for row in table:
            for cell in row.values():
                assert f"<td>{escape(cell)}</td>" in html


def test_every_epsilon_figure_equals_the_ledger_sums(full_run: FullRun) -> None:
    run, _, paths = full_run
    markdown = paths.markdown.read_text()
    per_client, client_total, cumulative = ledger_sums(run / LEDGER_FILE)
    worst = max(per_client.values())

    # Section 4: the distribution over the clients charged (no client named), recomputed.
    (row,) = tables(section(markdown, 4))[0]
    assert int(row["clients charged"]) == 4 and (row["releases (min)"], row["releases (max)"]) == ("2", "6")
    assert close(row["Σε (min)"], min(per_client.values())) and close(row["Σε (max)"], worst)
    assert close(row["Σε (mean)"], sum(per_client.values()) / 4) and number(row["Σδ (max)"]) == 0.0

    # Section 3: cumulative per round, then budget spent and remaining.
    per_round, budget = tables(section(markdown, 3))
    assert [(r["phase"], int(r["round"])) for r in per_round] == list(cumulative)
    for row in per_round:
        record, client = cumulative[(row["phase"], int(row["round"]))]
        assert close(row["record ε, max over clients (cumulative)"], record)
        assert close(row["client ε, server total (cumulative)"], client)
    by_unit = {r["unit"].split()[0]: r for r in budget}
    assert close(by_unit["record"]["ε spent"], worst) and close(by_unit["record"]["ε remaining"], 2.0 - worst)
    assert close(by_unit["client"]["ε spent"], client_total)
    assert close(by_unit["client"]["ε remaining"], 1.0 - client_total)

    # Section 2: the statement quotes the same figures.
    statement = section(markdown, 2)
    quoted = re.findall(r"with ε = (\S+) and δ = (\S+) \(basic composition of (\d+)", statement)
    assert len(quoted) == 2
    assert close(quoted[0][0], worst) and number(quoted[0][1]) == 0.0 and int(quoted[0][2]) == 6
    assert close(quoted[1][0], client_total) and int(quoted[1][2]) == 3
    mean = re.search(r"mean Σε over the 4 clients charged is (\S+)\)", statement)
    assert mean and close(mean.group(1), sum(per_client.values()) / 4)

    # Section 6: basic composition beside RDP/PLD, never replaced by them.
    composition = tables(section(markdown, 6))[0]
    assert close(composition[0]["basic Σε"], worst) and close(composition[1]["basic Σε"], client_total)
    for row in composition:
        assert 0.0 < number(row["PLD ε at target δ"]) <= number(row["basic Σε"]) * (1 + 1e-6)

    # Section 5: per-release ε of every mechanism row is an ε of the ledger.
    ledger_epsilons = {json.loads(line)["epsilon"] for line in (run / LEDGER_FILE).read_text().splitlines()}
    for row in tables(section(markdown, 5))[0]:
        assert any(close(row["ε per release"], float(e)) for e in ledger_epsilons)

    # The metrics' own "epsilon-record-max" (987) is never quoted.
    assert "987" not in markdown


def test_privacy_totals_match_the_accountant_and_an_independent_sum(full_run: FullRun) -> None:
    run, _, _ = full_run
    totals = privacy_totals(run)
    assert isinstance(totals, PrivacyTotals)
    per_client, client_total, cumulative = ledger_sums(run / LEDGER_FILE)
    assert list(totals.record_epsilon_by_client) == ["client-1", "client-2", "client-3", "client-10"]
    for client, eps in per_client.items():
        assert totals.record_epsilon_by_client[client] == pytest.approx(eps, rel=1e-12)
    accountant = open_accountant(run)
    assert dict(totals.record_epsilon_by_client) == accountant.record_epsilon_by_client()  # exact: both math.fsum
    assert totals.record_epsilon_max == accountant.basic_composition(unit="record")[0]
    assert totals.client_epsilon == accountant.client_level_epsilon()
    assert totals.record_epsilon_mean == pytest.approx(sum(per_client.values()) / len(per_client))
    assert totals.client_epsilon == pytest.approx(client_total) and totals.client_releases == 3
    assert totals.worst_client == "client-1" and totals.phases == ("search",)
    assert [(r.phase, r.round) for r in totals.rounds] == list(cumulative)
    for row in totals.rounds:
        assert (row.record_epsilon_max, row.client_epsilon) == pytest.approx(cumulative[(row.phase, row.round)])
    assert totals.rounds[-1].record_epsilon_max == totals.record_epsilon_max  # exact, not approximately
    json.dumps(totals.to_json(), allow_nan=False)


def test_rendering_changes_only_the_report_files_and_never_the_ledger(full_run: FullRun) -> None:
    run, before, _ = full_run
    after = snapshot(run)
    written = {MARKDOWN_FILE, HTML_FILE, *(f"plots/{name}" for name in PLOTS)}
    assert set(after) == set(before) | written
    assert all(after[name] == data for name, data in before.items())  # ledger.jsonl included
    ledger_stat = (run / LEDGER_FILE).stat()
    paths = render_report(run)  # re-running overwrites the same files
    again = snapshot(run)
    assert set(again) == set(after)
    assert again[LEDGER_FILE] == before[LEDGER_FILE]
    assert (run / LEDGER_FILE).stat().st_mtime_ns == ledger_stat.st_mtime_ns
    assert again[MARKDOWN_FILE] == after[MARKDOWN_FILE] and paths.markdown.read_text() == after[MARKDOWN_FILE].decode()
    assert not [p for p in run.rglob("*.tmp")]


def test_report_sections_show_mechanisms_flags_accuracy_sparsity_and_votes(full_run: FullRun) -> None:
    run, _, paths = full_run
    markdown = paths.markdown.read_text()
    header = {r["field"]: r["value"] for r in tables(section(markdown, 1))[0]}
    assert header["dataset"] == "mnist" and header["status"] == "completed" and header["clients"] == "4"
    assert header["wall time"].startswith("754.2 s") and header["ticket file"] == TICKET_FILE
    assert header["target δ for RDP/PLD figures"] == "1e-05 (default)"
    statement = section(markdown, 2)
    assert "one example replaced" in statement and "one client added or removed" in statement
    assert "Not covered: the trained weights and accuracies (masked FedAvg without noise" in statement
    assert "reference search" not in statement  # config reference-search = false
    assert "Participation is published exactly, not noised" in statement

    mechanisms = {(r["domain"], r["unit"]): r for r in tables(section(markdown, 5))[0]}
    assert set(mechanisms) == {("patterns", "record"), ("kernels:conv1", "record"), ("patterns", "client")}
    local = mechanisms[("patterns", "record")]  # Lap(2kΔ/ε) = 2*4*0.01/0.1 = 0.8 against C = 1
    assert local["mechanism"] == "laplace-topk" and close(local["noise scale"], 0.8) and close(local["SNR (min)"], 1.25)
    assert local["noise-dominated"] == "no (0 of 3)" and local["releases"] == "3"
    gumbel = mechanisms[("kernels:conv1", "record")]  # 2*10*0.01/0.2 = 1.0: SNR 1, flagged
    assert close(gumbel["SNR (min)"], 1.0) and gumbel["noise-dominated"] == "yes (3 of 3)"
    central = mechanisms[("patterns", "client")]  # scale c/ε against 2 to 4 voters
    assert close(central["noise scale"], 4 / CENTRAL_EPSILON) and close(central["SNR (min)"], 2 * CENTRAL_EPSILON / 4)
    assert central["noise-dominated"] == "yes (3 of 3)" and "voters 2 to 4" in central["signal range"]

    assert "Every release is pure ε-DP: δ = 0" in section(markdown, 6)

    accuracy, convergence = tables(section(markdown, 7))
    final = {r["variant"]: r for r in accuracy}
    assert set(final) == set(VARIANTS)
    for variant, value in VARIANTS.items():
        assert close(final[variant]["accuracy"], value) and final[variant]["last round"] == "2"
        assert close(final[variant]["accuracy in summary.json"], value)
    assert [r["Jaccard with previous ticket"] for r in convergence] == ["n/a", "0.7", "0.8"]
    assert [r["kernels moved off the free prior by votes"] for r in convergence] == ["0 of 40", "1 of 40", "2 of 40"]
    assert [r["density"] for r in convergence] == ["0.8", "0.6", "0.4"]

    sparsity = tables(section(markdown, 8))[0]
    layers = {r["layer"]: r for r in sparsity}
    assert set(layers) == {"conv1", "conv2", "fc", "total"}
    for row in sparsity:
        assert number(row["sparsity"]) == pytest.approx(1 - int(row["kept"]) / int(row["total"]), abs=1e-6)
    assert layers["conv1"]["policy"] == "pattern" and layers["conv1"]["kept kernels"].endswith("/ 32")
    assert "This matches the ledger's cumulative figures at that round." in section(markdown, 8)

    votes = tables(section(markdown, 9))[0]
    assert [(r["round"], r["replies"], r["failed"], r["rejected"], r["duplicate-index"]) for r in votes] == [
        ("1", "4", "0", "0", "0"), ("2", "3", "1", "1", "1"), ("3", "2", "2", "0", "0"),
    ]
    assert "wrong-round" not in votes[0]  # a reason never seen gets no column


# -- the first line: the guarantee, one owner -----------------------------------------------


def test_the_first_line_is_the_guarantee_and_the_report_names_no_client(full_run: FullRun) -> None:
    from federation.config import Config
    from federation.statement import guarantee_statement

    run, _, paths = full_run
    markdown, html = paths.markdown.read_text(), paths.html.read_text()
    config = Config.from_mapping(json.loads((run / CONFIG_FILE).read_text()))
    expected = guarantee_statement(config, privacy_totals(run))  # summary.json has none: built, same function
    assert markdown.split("\n\n", 1)[0] == expected and expected.startswith("The ticket (ticket.safetensors")
    assert html.split("<body>\n", 1)[1].startswith(f"<p>{escape(expected)}</p>")
    assert expected in section(markdown, 2)
    # no client id anywhere: not in tables, text, plot labels (the bars are ranked), nor the HTML
    for text in (markdown, html):
        assert not re.search(r"client-\d", text)
    assert re.search(r"client-\d", (run / LEDGER_FILE).read_text())  # the ledger keeps them


def test_the_report_shows_summary_json_s_own_sentences(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    summary = json.loads((run / SUMMARY_FILE).read_text())
    written = {"guarantee": "NOT PRIVATE: noise-seed=4 makes every noise draw reproducible; anyone ...",
               "participation": "Participation is published exactly (as written by the run)."}
    (run / SUMMARY_FILE).write_text(json.dumps({**written, **summary}))
    paths = render_report(run)
    markdown = paths.markdown.read_text()
    assert markdown.splitlines()[0] == written["guarantee"]
    assert written["guarantee"] in section(markdown, 2) and written["participation"] in section(markdown, 2)
    assert paths.html.read_text().split("<body>\n", 1)[1].startswith("<p>NOT PRIVATE: noise-seed=4")


def test_a_seeded_run_without_summary_says_not_private_first(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", with_summary=False)
    config = json.loads((run / CONFIG_FILE).read_text())
    (run / CONFIG_FILE).write_text(json.dumps({**config, "noise-seed": 9}))
    assert render_report(run).markdown.read_text().startswith("NOT PRIVATE: noise-seed=9 makes every noise draw")


def test_a_guarantee_that_is_not_a_sentence_is_a_one_line_error(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", rounds=(1,), with_training=False)
    summary = json.loads((run / SUMMARY_FILE).read_text())
    (run / SUMMARY_FILE).write_text(json.dumps({"guarantee": 3, **summary}))
    _one_line_error(run, SUMMARY_FILE, "'guarantee' must be a sentence")


# -- infinite ε, partial runs, δ > 0 -------------------------------------------------------


def test_inf_budget_and_inf_events_render_as_inf_and_not_private(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", epsilon=math.inf, budget="inf", central=True)
    markdown = render_report(run).markdown.read_text()
    statement = section(markdown, 2)
    assert "Record unit: this run is NOT private" in statement and "4 of 4 clients" in statement
    assert "Client unit: this run is NOT private" in statement
    assert markdown.startswith("Nothing is private: ") and statement.split("\n\n")[1].startswith("Nothing is private")
    (row,) = tables(section(markdown, 4))[0]
    assert row["Σε (min)"] == row["Σε (mean)"] == row["Σε (max)"] == "inf"
    per_round, budget = tables(section(markdown, 3))
    assert all(r["record ε, max over clients (cumulative)"] == "inf" for r in per_round)
    record = next(r for r in budget if r["unit"].startswith("record"))
    assert (record["ε budget"], record["ε spent"], record["ε remaining"]) == ("inf (no budget)", "inf", "unbounded")
    for row in tables(section(markdown, 6))[0]:
        assert row["RDP ε at target δ"] == "inf" and row["PLD ε at target δ"] == "inf"
    mechanisms = tables(section(markdown, 5))[0]
    assert all(r["ε per release"] == "inf" and r["SNR (min)"] == "inf" for r in mechanisms)
    assert (run / "plots" / "epsilon_per_round.png").is_file()


def test_a_stopped_run_without_ticket_or_training_still_renders(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", rounds=(1, 2), with_ticket=False, with_training=False,
                   status="stopped", stop_reason="record-level epsilon budget of client 'client-1' would be exceeded")
    paths = render_report(run)
    markdown = paths.markdown.read_text()
    header = {r["field"]: r["value"] for r in tables(section(markdown, 1))[0]}
    assert header["status"] == "stopped" and header["stop reason"].startswith("record-level epsilon budget")
    assert header["ticket file"] == "none yet" and header["search rounds planned / completed"] == "4 / 2"
    assert "No training round has been evaluated yet" in section(markdown, 7)
    assert "No ticket file yet" in section(markdown, 8)
    assert sorted(p.name for p in paths.plots) == ["convergence.png", "epsilon_per_client.png", "epsilon_per_phase.png",
                                                   "epsilon_per_round.png"]
    assert len(re.findall(r'src="data:image/png;base64,', paths.html.read_text())) == 4


def test_a_stale_plot_is_removed_when_its_data_is_gone(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", with_training=False)
    (run / "plots").mkdir()
    (run / "plots" / "accuracy.png").write_bytes(b"stale")
    (run / "plots" / "mine.png").write_bytes(b"user file")
    render_report(run)
    assert not (run / "plots" / "accuracy.png").exists()
    assert (run / "plots" / "mine.png").read_bytes() == b"user file"


def test_a_partial_run_without_summary_metrics_or_events_renders(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / CONFIG_FILE).write_text(json.dumps({"dataset": "mnist", "unit": "record", "epsilon": 1.0}))
    Ledger(run / LEDGER_FILE)  # created at setup, nothing charged yet
    paths = render_report(run)
    markdown = paths.markdown.read_text()
    header = {r["field"]: r["value"] for r in tables(section(markdown, 1))[0]}
    # keys config.json lacks take Config's defaults, and the header says so
    assert header["status"].startswith("n/a") and header["model"] == "conv4 (default)"
    assert header["dataset"] == "mnist" and header["client-level ε budget (config 'client-epsilon')"] == "1 (default)"
    assert "no record-level release is in the ledger yet" in section(markdown, 2)
    assert "nothing has been spent" in section(markdown, 3)
    assert "metrics.jsonl is not written yet" in section(markdown, 7)
    assert "No search round is logged yet" in section(markdown, 9)
    assert paths.plots == ()
    assert privacy_totals(run).record_epsilon_max == 0.0 and privacy_totals(run).rounds == ()


def test_the_report_reads_delta_target_and_clip_bound_from_the_typed_config(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", central=False, rounds=(1,), with_training=False)
    config = json.loads((run / CONFIG_FILE).read_text())
    (run / CONFIG_FILE).write_text(json.dumps({**config, "delta-target": 1e-3, "clip-mode": "clip", "clip-bound": 2.0}))
    markdown = render_report(run).markdown.read_text()
    header = {r["field"]: r["value"] for r in tables(section(markdown, 1))[0]}
    assert header["target δ for RDP/PLD figures"] == "0.001"  # stated, not a default
    assert all(r["target δ"] == "0.001" for r in tables(section(markdown, 6))[0])
    local = {r["domain"]: r for r in tables(section(markdown, 5))[0]}["patterns"]
    assert local["signal range"] == "clipped scores in [0, 2]" and close(local["SNR (min)"], 2 / 0.8)
    assert "C = 2;" in section(markdown, 5)


def test_central_noise_flags_are_the_ones_the_strategy_logged(tmp_path: Path) -> None:
    # The strategy assessed each central release when it made it; the report quotes that, and a
    # release whose round logged no diagnostic is not assessed (never recomputed here).
    run = make_run(tmp_path / "run", with_training=False)
    rows = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]
    for row in rows:
        if row.get("round") == 1:
            row["snr-central.patterns"], row["noise-dominated.patterns"] = 7.5, 0
        if row.get("round") == 2:
            del row["snr-central.patterns"], row["noise-dominated.patterns"]
    _write_jsonl(run / METRICS_FILE, rows)
    markdown = render_report(run).markdown.read_text()
    central = {(r["domain"], r["unit"]): r for r in tables(section(markdown, 5))[0]}[("patterns", "client")]
    assert central["noise-dominated"] == "yes (1 of 2)" and close(central["SNR (min)"], 2 * CENTRAL_EPSILON / 4)
    assert "voters 2 to 4" in central["signal range"]


def test_a_torn_metrics_tail_is_skipped_and_said(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    with (run / METRICS_FILE).open("a") as handle:
        handle.write('{"phase": "train", "round": 3, "kind": "server-ev')
    markdown = render_report(run).markdown.read_text()
    assert "The last line of metrics.jsonl is incomplete" in section(markdown, 7)


def test_delta_events_data_free_events_and_reference_search_are_reported(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", central=False, rounds=(1, 2))
    config = json.loads((run / CONFIG_FILE).read_text())
    (run / CONFIG_FILE).write_text(json.dumps({**config, "reference-search": True}))
    accountant = open_accountant(run, delta_budget=1e-5)
    training = [
        PrivacyEvent(round=r, phase="training", domain="weights", layer=None, unit="client", mechanism=GAUSSIAN,
                     sensitivity=1.0, sensitivity_norm="l2", noise_scale=4.0, epsilon=0.5, delta=1e-6,
                     participants=("client-1", "client-3"))
        for r in (1, 2)
    ]
    accountant.charge(training)
    accountant.charge([PrivacyEvent.from_spec(data_free_spec("record"), round=3, phase=PHASE_SEARCH, domain="patterns",
                                              layer=None, participants=("client-1",))])
    (run / REFERENCE_DIR).mkdir()
    Ledger(run / REFERENCE_DIR / LEDGER_FILE)
    markdown = render_report(run).markdown.read_text()
    statement = section(markdown, 2)
    assert "phases: search, training" in statement and "Releases of the phase(s) training" in statement
    assert "the non-private reference search (reference/, ε = ∞)" in statement
    assert "over every release in the ledger (phases: search, training)" in markdown.splitlines()[0]
    client_quote = re.search(
        r"one client added or removed.*?with ε = (\S+) and δ = (\S+) \(basic composition of 2", statement
    )
    assert client_quote and close(client_quote.group(1), 1.0) and close(client_quote.group(2), 2e-6)
    delta = section(markdown, 6)
    assert "Some releases have δ > 0" in delta and "client unit Σδ = 2e-06" in delta
    composition = {r["unit"]: r for r in tables(delta)[0]}
    assert close(composition["client"]["basic Σδ"], 2e-6)
    # Gaussian events: PLD gives ε at the target δ; RDP has no valid bound for δ > 0 events
    # represented as (ε, δ) pairs, but these are Gaussian, so both figures exist.
    assert composition["client"]["PLD ε at target δ"] != "n/a"
    mechanisms = {(r["phase"], r["mechanism"]): r for r in tables(section(markdown, 5))[0]}
    assert mechanisms[("search", "data-free")]["noise-dominated"] == "n/a"
    gaussian = mechanisms[("training", "gaussian")]  # not a vote: no signal range to compare with
    assert gaussian["noise-dominated"] == "n/a" and gaussian["signal range"].startswith("not a vote")
    # Rounds of two phases are listed in ledger order, not merged.
    per_round = tables(section(markdown, 3))[0]
    assert [(r["phase"], r["round"]) for r in per_round] == [
        ("search", "1"), ("search", "2"), ("training", "1"), ("training", "2"), ("search", "3"),
    ]


def test_the_privacy_sections_quote_the_ledger_and_never_read_summary_json_figures(tmp_path: Path) -> None:
    # summary.json's ε figures are written by the same Accountant.totals the report reads the ledger
    # with, so the report does not cross-check them: changing them changes nothing it prints.
    run = make_run(tmp_path / "run")
    before = render_report(run).markdown.read_text()
    summary = json.loads((run / SUMMARY_FILE).read_text())
    summary["epsilon"] = {"record": {"max": 0.123, "mean": 0.123}, "client": {"total": 0.456}}
    (run / SUMMARY_FILE).write_text(json.dumps(summary))
    after = render_report(run).markdown.read_text()
    for number in (2, 3, 4, 5, 6):
        assert section(after, number) == section(before, number)
    assert "0.123" not in after and "0.456" not in after and "disagrees" not in after


# -- errors: one line, naming the file, nothing written ------------------------------------


def _one_line_error(run: Path, *needles: str) -> str:
    before = snapshot(run)
    with pytest.raises(ReportError) as info:
        render_report(run)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message, message
    assert snapshot(run) == before  # nothing written, nothing changed
    return message


def test_a_torn_ledger_gives_a_one_line_error_with_the_repair_command(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    with (run / LEDGER_FILE).open("ab") as handle:
        handle.write(b'{"ledger_schema":1,"batch":3,"batch_index":0,"batch_size":3,"round":4')
    message = _one_line_error(run, str(run / LEDGER_FILE), "Ledger.repair(", "incomplete write")
    with pytest.raises(ReportError):
        privacy_totals(run)
    assert "from privacy import Ledger" in message


def test_a_missing_ledger_gives_a_one_line_error_and_is_not_created(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    (run / LEDGER_FILE).unlink()
    _one_line_error(run, str(run / LEDGER_FILE), "not found")
    with pytest.raises(ReportError, match="not found"):
        privacy_totals(run)
    assert not (run / LEDGER_FILE).exists()


@pytest.mark.parametrize(
    ("damage", "needles"),
    [
        (lambda run: (run / CONFIG_FILE).write_text("{not json"), (CONFIG_FILE, "not readable JSON")),
        (lambda run: (run / CONFIG_FILE).unlink(), (CONFIG_FILE, "not found")),
        (lambda run: (run / CONFIG_FILE).write_text(json.dumps({"epsilon": "lots"})),
         (CONFIG_FILE, "not a valid dppt config: epsilon must be a float. Found 'lots'")),
        (lambda run: (run / CONFIG_FILE).write_text(json.dumps({"delta-target": 2})),
         (CONFIG_FILE, "delta-target must be in (0, 1). Found 2.0.")),
        (lambda run: (run / CONFIG_FILE).write_text(json.dumps({"unknown-key": 1})),
         (CONFIG_FILE, "Unknown config key 'unknown-key'")),
        (lambda run: (run / SUMMARY_FILE).write_text("[1, 2]"), (SUMMARY_FILE, "one JSON object")),
        (lambda run: (run / METRICS_FILE).write_text('{"kind": "search-round"}\nnot json\n{"kind": "x"}\n'),
         ("metrics.jsonl line 2", "not valid JSON")),
        (lambda run: (run / METRICS_FILE).write_text(
            json.dumps({"phase": PHASE_SEARCH, "kind": KIND_SEARCH_ROUND, "round": 1, "sampled": "many"}) + "\n"),
         ("metrics.jsonl line 1", "'sampled'")),
        (lambda run: (run / TICKET_FILE).unlink(), (TICKET_FILE, "names it as the ticket")),
        (lambda run: (run / TICKET_FILE).write_bytes(b"garbage"), (TICKET_FILE, "not a readable")),
        (lambda run: (run / LEDGER_FILE).write_text('{"a": 1}\n'), (LEDGER_FILE, "not a valid privacy ledger")),
    ],
    ids=["config-json", "config-missing", "config-budget", "config-delta", "config-key", "summary-type", "metrics-line",
         "metrics-value", "ticket-missing", "ticket-garbage", "ledger-corrupt"],
)
def test_malformed_inputs_give_one_line_errors_naming_the_file(
    tmp_path: Path, damage: Callable[[Path], object], needles: tuple[str, ...]
) -> None:
    run = make_run(tmp_path / "run", rounds=(1,), with_training=False)
    damage(run)
    _one_line_error(run, *needles)


def test_run_dir_must_be_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="must be a run directory"):
        render_report(tmp_path / "absent")


def test_privacy_totals_loads_neither_matplotlib_nor_torch(tmp_path: Path) -> None:
    # privacy_totals reads a ledger anywhere (no torch, no plotting): it must stay a light import.
    run = tmp_path / "run"
    run.mkdir()
    Ledger(run / LEDGER_FILE)
    code = (
        "import sys; from simulations.report import privacy_totals; "
        f"privacy_totals({str(run)!r}); "
        "print(sorted(m for m in ('matplotlib', 'torch', 'kernels') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "[]"


def test_a_disconnected_ticket_is_flagged_and_a_connected_one_shows_its_paths(tmp_path: Path) -> None:
    from kernels import Ticket

    run = make_run(tmp_path / "run")
    connected = Ticket.load(run / TICKET_FILE)
    assert f"Kept input->output paths through the conv kernels: {connected.kernel_paths():.3g}" in section(
        render_report(run).markdown.read_text(), 8)
    layers = dict(connected.layers)
    conv1, conv2 = layers["conv1"], layers["conv2"]
    # conv1 keeps only output channel 0; conv2 reads only channel 1: no path survives.
    only_zero = torch.zeros_like(conv1.connectivity)
    only_zero[0, :] = True
    reads_one = torch.zeros_like(conv2.connectivity)
    reads_one[:, 1] = True
    layers["conv1"] = dataclasses.replace(conv1, connectivity=only_zero)
    layers["conv2"] = dataclasses.replace(conv2, connectivity=reads_one)
    broken = Ticket(layers=layers, metadata=connected.metadata)
    assert broken.kernel_paths() == 0.0
    broken.save(run / TICKET_FILE)
    assert "**DISCONNECTED TICKET**" in section(render_report(run).markdown.read_text(), 8)
