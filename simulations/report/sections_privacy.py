"""The report's first line (the guarantee) and sections 1 to 6: header, privacy statement, ε per
round and per client, mechanisms, δ.

Every ε and δ printed here comes from the ledger through :meth:`privacy.Accountant.totals` (the
method that also wrote summary.json's figures, so the two are never compared), written with
:func:`format_float`. The guarantee and participation sentences are
:mod:`federation.statement`'s: read from ``summary.json`` where the run wrote them, else built by
the same functions from the same config and ledger. No client id is printed (DESIGN.md 5.4b):
per-client figures are shown as their distribution; the ledger keeps the ids.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from federation.layout import LEDGER_FILE, SUMMARY_FILE
from federation.config import TRAIN_PRIVACY_DP_FEDAVG, TRAIN_PRIVACY_DP_SGD
from federation.statement import guarantee_statement, participation_statement, whole_run
from privacy import UNIT_CLIENT, UNIT_RECORD, Accountant, PrivacyTotals
from simulations.report.errors import ReportError
from simulations.report.composition import composition_rows
from simulations.report.document import Block, BulletList, Heading, Image, Paragraph, Table
from simulations.report.formatting import NOT_AVAILABLE, format_float, format_int, format_seconds
from simulations.report.mechanisms import central_diagnostics, mechanism_rows
from simulations.report.ledger_reader import reference_totals, training_totals
from simulations.report.outputs import EPSILON_PER_CLIENT_PLOT, EPSILON_PER_PHASE_PLOT, EPSILON_PER_ROUND_PLOT
from simulations.report.plots import epsilon_per_client_plot, epsilon_per_phase_plot, epsilon_per_round_plot
from simulations.report.run_inputs import RunInputs
from simulations.report.statement import privacy_statement, stated_units
from simulations.report.values import as_number, nested

__all__ = [
    "budget_table",
    "delta_section",
    "epsilon_per_client_section",
    "epsilon_per_round_section",
    "guarantee_line",
    "header_section",
    "mechanisms_section",
    "report_title",
    "statement_section",
    "title_line",
    "whole_run_blocks",
]

_HEADER_KEYS = (
    ("dataset", "dataset"), ("model", "model"), ("clients", "num-clients"), ("privacy unit", "unit"),
    ("mechanism", "mechanism"), ("score", "score"), ("patterns", "patterns"),
    ("pattern entries", "pattern-entries"), ("target sparsity", "sparsity"),
    ("search rounds (config)", "search-rounds"), ("train rounds (config)", "train-rounds"),
)


def _value(value: Any) -> str:
    if value is None:
        return NOT_AVAILABLE
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value)
    return str(value)


def _budget(value: float) -> str:
    return "inf (no budget)" if math.isinf(value) else format_float(value)


def _summary_number(inputs: RunInputs, *keys: str) -> float | None:
    return as_number(
        nested(inputs.summary, *keys), where=f"{inputs.run_dir / SUMMARY_FILE} key {'.'.join(keys)!r}",
        fix=f"regenerate {SUMMARY_FILE} or delete it",
    )


def _stop_reason(summary: Mapping[str, Any], stop: object) -> str:
    if nested(summary, "search") is None:
        return NOT_AVAILABLE
    return "none (the search did not stop early)" if stop is None else _value(stop)


def _training_stops(inputs: RunInputs) -> str:
    """Each model whose training ended before ``train-rounds``, with its reason (``summary.json``'s ``"training"``)."""
    training = nested(inputs.summary, "training")
    if training is None:
        return NOT_AVAILABLE
    if not isinstance(training, Mapping) or not all(isinstance(v, Mapping) for v in training.values()):
        raise ReportError(f"{inputs.run_dir / SUMMARY_FILE} key 'training' must map each model to its rounds and"
                          f" stop reason. Found {training!r:.60}: regenerate {SUMMARY_FILE} or delete it.")
    stops = [f"{variant} stopped after {entry.get('rounds-completed')} round(s): {entry['stop-reason']}"
             for variant, entry in training.items() if entry.get("stop-reason")]
    return "; ".join(stops) if stops else "none (every model trained its train-rounds)"


def header_section(inputs: RunInputs) -> list[Block]:
    """Section 1: what the run is and how it ended."""
    config, summary = inputs.config, inputs.summary
    values = config.to_dict()

    def stated(key: str, text: str) -> str:  # a key an older config.json lacks took Config's default
        return text if key in inputs.config_keys else f"{text} (default)"

    rows = [("run directory", str(inputs.run_dir))]
    rows += [(label, stated(key, _value(values[key]))) for label, key in _HEADER_KEYS]
    rows += [
        ("record-level ε budget per client (config 'epsilon')", stated("epsilon", _budget(config.epsilon))),
        ("client-level ε budget (config 'client-epsilon')", stated("client-epsilon", _budget(config.client_epsilon))),
        ("target δ for RDP/PLD figures", stated("delta-target", format_float(config.delta_target))),
    ]
    if summary is None:
        rows.append(("status", f"n/a ({SUMMARY_FILE} not written yet: partial run)"))
    else:
        stop = nested(summary, "search", "stop-reason")
        rows += [
            ("status", _value(summary.get("status"))),
            ("stop reason", _stop_reason(summary, stop)),
            ("search rounds planned / completed",
             f"{format_int(_summary_number(inputs, 'search', 'rounds-planned'))} /"
             f" {format_int(_summary_number(inputs, 'search', 'rounds-completed'))}"),
            ("training stop reason", _training_stops(inputs)),
            ("wall time", format_seconds(_summary_number(inputs, "wall-time-s"))),
        ]
    rows.append(("ticket file", inputs.ticket_file or "none yet"))
    return [
        Heading(level=2, text="1. Run"),
        Table.of(("field", "value"), rows),
    ]


def _stated(inputs: RunInputs, key: str, build: str) -> str:
    """``summary.json``'s sentence under ``key`` if the run wrote one, else ``build`` (the same function's)."""
    value = nested(inputs.summary, key)
    if value is None:
        return build
    if not isinstance(value, str) or not value.strip():
        raise ReportError(f"{inputs.run_dir / SUMMARY_FILE} key {key!r} must be a sentence. Found {value!r:.60}:"
                          f" regenerate {SUMMARY_FILE} or delete it.")
    return value


def _guarantee(inputs: RunInputs, totals: PrivacyTotals) -> str:
    return _stated(inputs, "guarantee", guarantee_statement(inputs.config, totals))


def report_title(run_dir: Path) -> str:
    """The report's title (its first heading and the HTML page's title), naming the run directory."""
    return f"dppt run report: {run_dir.resolve().name}"


def title_line(inputs: RunInputs) -> list[Block]:
    """The report's title as its first heading."""
    return [Heading(level=1, text=report_title(inputs.run_dir))]


def guarantee_line(inputs: RunInputs, totals: PrivacyTotals) -> list[Block]:
    """The report's first line: what is private and what is not (:func:`federation.statement.guarantee_statement`)."""
    return [Paragraph(text=_guarantee(inputs, totals))]


def statement_section(inputs: RunInputs, totals: PrivacyTotals) -> list[Block]:
    """Section 2: the guarantee in words, the ledger's figures behind it, and what participation reveals."""
    paragraphs = privacy_statement(totals, configured_unit=inputs.config.unit)
    participation = _stated(inputs, "participation", participation_statement(inputs.config))
    return [
        Heading(level=2, text="2. Privacy statement"),
        Paragraph(text=_guarantee(inputs, totals)),
        *(Paragraph(text=text) for text in paragraphs),
        Paragraph(text=participation),
    ]


def _remaining(budget: float, spent: float) -> str:
    if math.isinf(budget):
        return "unbounded"
    if math.isinf(spent):
        return "none (not private)"
    return format_float(budget - spent)


def budget_table(inputs: RunInputs, totals: PrivacyTotals) -> Table:
    """Per privacy unit the report speaks about: the ε budget, the ledger's ε spent and what remains."""
    units = stated_units(totals, inputs.config.unit)
    rows = []
    if UNIT_RECORD in units and totals.record_rdp_epsilon_max is not None:
        # budget-accountant=rdp: the budget was enforced on the RDP figure; basic Σε is shown beside it.
        rdp = totals.record_rdp_epsilon_max
        rows.append((f"record (per client, largest RDP ε at δ = {format_float(totals.rdp_delta or 0.0)}; basic Σε"
                     f" {format_float(totals.record_epsilon_max)})", _budget(inputs.config.epsilon),
                     format_float(rdp), _remaining(inputs.config.epsilon, rdp)))
    elif UNIT_RECORD in units:
        rows.append(("record (per client, largest Σε)", _budget(inputs.config.epsilon),
                     format_float(totals.record_epsilon_max),
                     _remaining(inputs.config.epsilon, totals.record_epsilon_max)))
    if UNIT_CLIENT in units:
        rows.append(("client (server total)", _budget(inputs.config.client_epsilon),
                     format_float(totals.client_epsilon),
                     _remaining(inputs.config.client_epsilon, totals.client_epsilon)))
    train = training_totals(inputs.train_ledger, inputs.config)
    if inputs.config.train_privacy == TRAIN_PRIVACY_DP_FEDAVG:
        spent = _fedavg_epsilon(inputs) or 0.0
        rows.append((f"training, DP-FedAvg (client level, RDP ε at δ = {format_float(inputs.config.train_delta)};"
                     " one client zeroed out)", _budget(inputs.config.train_epsilon), format_float(spent),
                     _remaining(inputs.config.train_epsilon, spent)))
    if inputs.config.train_privacy == TRAIN_PRIVACY_DP_SGD:
        spent = 0.0 if train is None else (train.record_epsilon_max if train.record_rdp_epsilon_max is None
                                           else train.record_rdp_epsilon_max)  # no RDP curve: basic, never 0
        rows.append((f"training, DP-SGD (per client, largest RDP ε at δ = {format_float(inputs.config.train_delta)};"
                     " one example added or removed)", _budget(inputs.config.train_epsilon), format_float(spent),
                     _remaining(inputs.config.train_epsilon, spent)))
    return Table.of(("unit", "ε budget", "ε spent", "ε remaining"), rows)


def _fedavg_epsilon(inputs: RunInputs) -> float | None:
    """Under ``train-privacy = dp-fedavg``: the training ledger's client-level RDP ε (None otherwise)."""
    if inputs.config.train_privacy != TRAIN_PRIVACY_DP_FEDAVG:
        return None
    if inputs.train_ledger is None:
        return 0.0
    figure = Accountant(inputs.train_ledger, record_epsilon_budget=math.inf,
                        client_epsilon_budget=math.inf).client_rdp_epsilon(inputs.config.train_delta)
    return math.inf if figure is None else figure


def _whole_run_figures(inputs: RunInputs, totals: PrivacyTotals) -> Mapping[str, Any]:
    """``summary.json``'s ``"whole-run"``, else :func:`federation.statement.whole_run` of the same ledgers."""
    stated = nested(inputs.summary, "whole-run")
    if stated is None:
        return whole_run(inputs.config, totals, training_totals(inputs.train_ledger, inputs.config),
                         reference=reference_totals(inputs.run_dir), fedavg_epsilon=_fedavg_epsilon(inputs)).to_json()
    where = f"{inputs.run_dir / SUMMARY_FILE} key 'whole-run'"
    if not isinstance(stated, Mapping) or not isinstance(stated.get("statement"), str) or not isinstance(
            stated.get("phases"), list) or not all(isinstance(row, Mapping) for row in stated["phases"]):
        raise ReportError(f"{where} must hold a statement and its phases. Found {stated!r:.60}:"
                          f" regenerate {SUMMARY_FILE} or delete it.")
    return stated


def whole_run_blocks(inputs: RunInputs, totals: PrivacyTotals) -> list[Block]:
    """Everything the run releases, composed per client: the sentence, each phase's figure, the plot."""
    figures = _whole_run_figures(inputs, totals)
    where = f"{inputs.run_dir / SUMMARY_FILE} key 'whole-run'"
    fix = f"regenerate {SUMMARY_FILE} or delete it"
    phases = [(str(row.get("phase")), as_number(row.get("epsilon"), where=where, fix=fix),
               as_number(row.get("delta"), where=where, fix=fix), str(row.get("source", "")))
              for row in figures["phases"]]
    epsilon = as_number(figures.get("epsilon"), where=where, fix=fix)
    delta = as_number(figures.get("delta"), where=where, fix=fix)
    if epsilon is None or delta is None or any(e is None or d is None for _, e, d, _ in phases):
        raise ReportError(f"{where} must give ε and δ of the whole run and of every phase: {fix}.")
    rows = [(phase, format_float(e), format_float(d), source) for phase, e, d, source in phases]
    rows.append(("whole run (basic composition of the phases)", format_float(epsilon), format_float(delta), ""))
    blocks: list[Block] = [
        Heading(level=3, text="The whole run: everything it releases, per client"),
        Paragraph(text=str(figures["statement"])),
        Table.of(("phase", "ε (record, one example replaced)", "δ", "how"), rows),
    ]
    if totals.num_events or (inputs.train_ledger is not None and inputs.train_ledger.events):
        blocks.append(Image(  # nothing to draw before the first release
            name=EPSILON_PER_PHASE_PLOT, alt="ε per phase and of the whole run",
            png=epsilon_per_phase_plot([(phase, float(e or 0.0)) for phase, e, _, _ in phases], whole=epsilon)))
    return blocks


def epsilon_per_round_section(inputs: RunInputs, totals: PrivacyTotals) -> list[Block]:
    """Section 3: cumulative ε per round and the remaining budget."""
    blocks: list[Block] = [Heading(level=2, text="3. Privacy budget per round")]
    if not totals.rounds:
        return [*blocks, Paragraph(text="No release is in the ledger yet: nothing has been spent.")]
    units = stated_units(totals, inputs.config.unit)
    blocks.append(Table.of(
        ("phase", "round", "record ε, max over clients (cumulative)", "client ε, server total (cumulative)"),
        [(r.phase, str(r.round), format_float(r.record_epsilon_max), format_float(r.client_epsilon))
         for r in totals.rounds],
    ))
    blocks.append(budget_table(inputs, totals))
    if inputs.interrupted:
        blocks.append(Paragraph(text=(
            "Interrupted rounds: the server stopped after these round attempts' messages had left and before their"
            " replies were charged, so every sampled client is charged in full for them (any of them may have"
            " released its vote); the round was then run again as a new attempt."
        )))
        blocks.append(Table.of(
            ("phase", "round", "attempt", "sampled clients charged", "record ε each"),
            [(ask.phase, str(ask.round), str(ask.attempt),
              str(len({client for event in ask.events for client in event.participants})),
              format_float(math.fsum(event.epsilon for event in ask.events)))
             for ask in inputs.interrupted],
        ))
    blocks.append(Image(
        name=EPSILON_PER_ROUND_PLOT, alt="Cumulative ε per round (basic composition)",
        png=epsilon_per_round_plot(
            totals.rounds, record_budget=inputs.config.epsilon, client_budget=inputs.config.client_epsilon,
            show_record=UNIT_RECORD in units, show_client=UNIT_CLIENT in units,
        ),
    ))
    return blocks


def epsilon_per_client_section(inputs: RunInputs, totals: PrivacyTotals) -> list[Block]:
    """Section 4: the distribution of the clients' record-level Σε and Σδ, naming no client."""
    blocks: list[Block] = [Heading(level=2, text="4. ε per client (record unit)")]
    if not totals.record_epsilon_by_client:
        return [*blocks, Paragraph(text="No record-level release is in the ledger: no client has been charged.")]
    epsilons = list(totals.record_epsilon_by_client.values())
    releases = list(totals.record_releases_by_client.values())
    blocks.append(Table.of(
        ("clients charged", "releases (min)", "releases (max)", "Σε (min)", "Σε (mean)", "Σε (max)", "Σδ (max)"),
        [(str(len(epsilons)), str(min(releases)), str(max(releases)), format_float(min(epsilons)),
          format_float(totals.record_epsilon_mean), format_float(totals.record_epsilon_max),
          format_float(totals.record_delta_max))],
    ))
    blocks.append(Paragraph(text=(
        f"Each client's own figures are in {LEDGER_FILE}, the operator's record; the report names no client."
    )))
    blocks.append(Image(
        name=EPSILON_PER_CLIENT_PLOT, alt="Record-level ε spent per client, clients sorted by Σε (no ids)",
        png=epsilon_per_client_plot(epsilons, budget=inputs.config.epsilon),
    ))
    return blocks


def _flag(dominated: int, assessed: int) -> str:
    if not assessed:
        return NOT_AVAILABLE
    return f"yes ({dominated} of {assessed})" if dominated else f"no (0 of {assessed})"


def mechanisms_section(inputs: RunInputs) -> list[Block]:
    """Section 5: mechanisms used, with their signal-to-noise figure and noise-dominated flag."""
    blocks: list[Block] = [Heading(level=2, text="5. Mechanisms")]
    events = inputs.ledger.events
    if not events:
        return [*blocks, Paragraph(text="No release is in the ledger yet.")]
    rows = mechanism_rows(events, clip_bound=inputs.config.clip_bound, central=central_diagnostics(inputs.metrics))
    blocks.append(Table.of(
        ("phase", "domain", "unit", "mechanism", "sensitivity", "noise scale", "ε per release", "δ per release",
         "releases", "signal range", "SNR (min)", "noise-dominated"),
        [(r.phase, r.domain, r.unit, r.mechanism,
          format_float(r.sensitivity) + (f" ({r.sensitivity_norm})" if r.sensitivity_norm else ""),
          format_float(r.noise_scale), format_float(r.epsilon), format_float(r.delta), str(r.count), r.signal,
          format_float(r.snr_min), _flag(r.dominated, r.assessed)) for r in rows],
    ))
    blocks.append(Paragraph(text=(
        "SNR = signal range / noise scale (privacy.diagnostics); a release is noise-dominated when SNR <= 1, i.e."
        " the noise can move a value across its whole range. Local (record-unit) noise is compared with the clipped"
        f" score range [0, C], C = {inputs.config.clip_bound:g}; central (client-unit) noise with the number of"
        " voters of the release's round, as the strategy assessed it when it released the counts (metrics"
        " 'snr-central.<domain>', 'noise-dominated.<domain>')."
    )))
    return blocks


def _composition_table(accountant: Accountant, totals: PrivacyTotals, target_delta: float) -> list[Block]:
    rows = composition_rows(accountant, totals, target_delta=target_delta)
    if not rows:
        return []
    cells, notes = [], []
    for row in rows:
        c = row.comparison
        if c is None:
            notes.append(f"{row.unit} unit, {row.subject}: no RDP/PLD figure ({row.reason}).")
            continue
        cells.append((row.unit, row.subject, str(c.num_events), format_float(c.basic_epsilon),
                      format_float(c.basic_delta), format_float(c.target_delta), format_float(c.rdp_epsilon),
                      format_float(c.pld_epsilon)))
        notes.extend(f"{row.unit} unit: {note}" for note in c.notes)
    blocks: list[Block] = []
    if cells:
        blocks.append(Table.of(
            ("unit", "composed over", "releases", "basic Σε", "basic Σδ", "target δ", "RDP ε at target δ",
             "PLD ε at target δ"), cells,
        ))
    if notes:
        blocks.append(BulletList(items=tuple(notes)))
    return blocks


def delta_section(inputs: RunInputs, totals: PrivacyTotals, accountant: Accountant) -> list[Block]:
    """Section 6: δ, and the RDP/PLD figures beside basic composition."""
    blocks: list[Block] = [Heading(level=2, text="6. δ and tighter composition")]
    events = inputs.ledger.events
    if any(event.delta > 0.0 for event in events):
        blocks.append(Paragraph(text=(
            f"Some releases have δ > 0. Basic composition: record unit Σδ = {format_float(totals.record_delta_max)}"
            f" (largest over clients), client unit Σδ = {format_float(totals.client_delta)}."
        )))
    else:
        blocks.append(Paragraph(text=(
            "Every release is pure ε-DP: δ = 0 under basic composition. The RDP and PLD columns below, where shown,"
            f" are (ε, δ)-DP figures at δ = {format_float(inputs.config.delta_target)} for the same releases"
            " (each pure ε-DP release represented by a mechanism that dominates it, as privacy.compare_composition"
            " documents):"
            " a different guarantee shown beside the pure-ε one, never instead of it."
        )))
    table = _composition_table(accountant, totals, inputs.config.delta_target)
    if table:
        blocks.extend(table)
    else:
        blocks.append(Paragraph(text="No release that reads data: no RDP/PLD figure to compare."))
    return blocks
