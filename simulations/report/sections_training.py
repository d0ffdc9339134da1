"""Report sections 7 to 9: accuracy and convergence, sparsity per layer, vote quality."""

from __future__ import annotations

import math

from federation.layout import KIND_SEARCH_ROUND, KIND_SERVER_EVAL, METRICS_FILE, PHASE_SEARCH, SUMMARY_FILE
from privacy import UNIT_CLIENT, UNIT_RECORD, PrivacyTotals
from simulations.report.document import Block, Heading, Image, Paragraph, Table
from simulations.report.formatting import NOT_AVAILABLE, format_float, format_int
from simulations.report.metrics import MetricRow
from simulations.report.outputs import ACCURACY_PLOT, CONVERGENCE_PLOT, SPARSITY_PLOT
from simulations.report.plots import accuracy_plot, convergence_plot, sparsity_plot
from simulations.report.run_inputs import RunInputs
from simulations.report.training import read_ticket_size, read_training_accuracy

__all__ = ["accuracy_section", "sparsity_section", "vote_quality_section"]


def _metrics_missing(inputs: RunInputs) -> list[Block]:
    notes: list[Block] = []
    if not inputs.metrics.present:
        notes.append(Paragraph(text=f"{METRICS_FILE} is not written yet: no round has been logged."))
    elif inputs.metrics.skipped_tail:
        notes.append(Paragraph(
            text=f"The last line of {METRICS_FILE} is incomplete (run still writing?) and was skipped."
        ))
    return notes


def _last_per_round(rows: tuple[MetricRow, ...]) -> dict[int, MetricRow]:
    """The last row of every round, rounds in increasing order (a re-run attempt replaces the first)."""
    by_round: dict[int, MetricRow] = {}
    for row in rows:
        round_number = row.integer("round")
        if round_number is not None:
            by_round[round_number] = row
    return dict(sorted(by_round.items()))


def _accuracy(inputs: RunInputs) -> list[Block]:
    accuracy = read_training_accuracy(inputs)
    series, quoted, names = accuracy.series, accuracy.quoted, accuracy.names
    blocks: list[Block] = []
    if not series:
        blocks.append(Paragraph(
            text=f"No training round has been evaluated yet (no {KIND_SERVER_EVAL} rows in {METRICS_FILE})."
        ))
    if not names:
        return blocks
    rows = []
    for name in names:
        points = series.get(name, {})
        last = points[max(points)] if points else None
        rows.append((
            name, str(len(points)), NOT_AVAILABLE if last is None else str(max(points)),
            format_float(None if last is None else last.number("accuracy")),
            format_float(None if last is None else last.number("loss")), format_float(quoted.get(name)),
        ))
    blocks.append(Table.of(
        ("variant", "rounds evaluated", "last round", "accuracy", "loss", f"accuracy in {SUMMARY_FILE}"), rows,
    ))
    plotted = {name: list(points.items()) for name, points in accuracy.by_round().items()}
    if plotted:
        blocks.append(Image(name=ACCURACY_PLOT, alt="Test accuracy per training round", png=accuracy_plot(plotted)))
    return blocks


def _moved(row: MetricRow) -> str:
    moved, kept = row.integer("kernels-moved"), row.integer("kernels-kept")
    return NOT_AVAILABLE if moved is None or kept is None else f"{moved} of {kept}"


def _yes_no(value: int | None) -> str:
    return NOT_AVAILABLE if value is None else ("yes" if value else "no")


def _convergence(inputs: RunInputs) -> list[Block]:
    rows = _last_per_round(inputs.metrics.of_kind(KIND_SEARCH_ROUND, phase=PHASE_SEARCH))
    if not rows:
        return [Paragraph(text=f"No search round is logged yet (no {KIND_SEARCH_ROUND} rows in {METRICS_FILE}).")]
    voted = any(row.integer("kernels-moved") is not None for row in rows.values())  # kernel votes refine a prior
    table = Table.of(
        ("round", "attempt", "density", "Jaccard with previous ticket", "ticket updated",
         *(("kernels moved off the free prior by votes",) if voted else ())),
        [(str(r), format_int(row.integer("attempt", default=0)), format_float(row.number("density")),
          format_float(row.number("jaccard")), _yes_no(row.integer("ticket-updated")),
          *((_moved(row),) if voted else ()))
         for r, row in rows.items()],
    )
    png = convergence_plot(
        list(rows), [row.number("jaccard") for row in rows.values()], [row.number("density") for row in rows.values()]
    )
    alt = "Ticket convergence: Jaccard and density per search round"
    return [table, Image(name=CONVERGENCE_PLOT, alt=alt, png=png)]


def accuracy_section(inputs: RunInputs) -> list[Block]:
    """Section 7: accuracy per training variant, ticket convergence and density per search round."""
    return [
        Heading(level=2, text="7. Accuracy and convergence"),
        *_metrics_missing(inputs),
        Heading(level=3, text="Accuracy per training variant"),
        *_accuracy(inputs),
        Heading(level=3, text="Ticket convergence"),
        *_convergence(inputs),
    ]


def _ticket_epsilon(inputs: RunInputs, totals: PrivacyTotals) -> Paragraph:
    assert inputs.ticket is not None
    metadata = inputs.ticket.metadata
    if not metadata.epsilon_spent:
        return Paragraph(text=f"The ticket (round {metadata.round}) records no ε spent (it read no private data).")
    spent = ", ".join(f"{unit} = {format_float(eps)}" for unit, eps in metadata.epsilon_spent.items())
    at_round = [r for r in totals.rounds if r.phase == PHASE_SEARCH and r.round == metadata.round]
    if not at_round:
        return Paragraph(text=(
            f"The ticket records ε spent {spent} at search round {metadata.round}; the ledger has no search round"
            f" {metadata.round} to compare it with."
        ))
    ledger = {UNIT_RECORD: at_round[0].record_epsilon_max, UNIT_CLIENT: at_round[0].client_epsilon}
    differ = [
        f"{unit}: ledger {format_float(ledger[unit])}" for unit, eps in metadata.epsilon_spent.items()
        if unit in ledger and not math.isclose(eps, ledger[unit], rel_tol=1e-9)
    ]
    verdict = (
        "This matches the ledger's cumulative figures at that round." if not differ
        else "Warning: this differs from the ledger's cumulative figures at that round (" + "; ".join(differ) + ")."
    )
    return Paragraph(text=f"The ticket records ε spent {spent} at search round {metadata.round}. {verdict}")


def sparsity_section(inputs: RunInputs, totals: PrivacyTotals) -> list[Block]:
    """Section 8: sparsity per layer of the ticket, and the ε the ticket records."""
    blocks: list[Block] = [Heading(level=2, text="8. Sparsity per layer")]
    size = read_ticket_size(inputs)
    if inputs.summary is not None:
        blocks.append(Paragraph(text=(
            f"{SUMMARY_FILE}: sparsity of the conv layers {format_float(size.conv)},"
            f" of the whole model {format_float(size.model)}."
        )))
    if inputs.ticket is None:
        return [*blocks, Paragraph(text="No ticket file yet: the search has not produced a ticket.")]
    report = inputs.ticket.sparsity_report()
    rows = [
        (layer.name, layer.policy.value, str(layer.kept), str(layer.total), format_float(layer.density),
         format_float(layer.sparsity),
         NOT_AVAILABLE if layer.kept_kernels is None else f"{layer.kept_kernels} / {layer.total_kernels}")
        for layer in report.layers
    ]
    rows.append(("total", "", str(report.kept), str(report.total), format_float(report.density),
                 format_float(report.sparsity), ""))
    paths = inputs.ticket.kernel_paths()  # kernels.count_paths: input->output paths through kept kernels
    if paths == 0:
        blocks.append(Paragraph(text=(
            "**DISCONNECTED TICKET**: no input->output path through kept kernels survives, so the model can"
            " only guess (a ticket the search publishes is connected, kernels.connect_kernels; this one is not).")))
    else:
        blocks.append(Paragraph(text=(
            f"Kept input->output paths through the conv kernels: {paths:.3g} (0 would be a disconnected ticket,"
            " a model at chance; a proxy where layers do not form a chain).")))
    blocks += [
        Table.of(("layer", "policy", "kept", "total", "density", "sparsity", "kept kernels"), rows),
        Image(name=SPARSITY_PLOT, alt="Sparsity per layer of the ticket",
              png=sparsity_plot([layer.name for layer in report.layers], [layer.sparsity for layer in report.layers])),
        _ticket_epsilon(inputs, totals),
    ]
    return blocks


def vote_quality_section(inputs: RunInputs) -> list[Block]:
    """Section 9: per search round (every attempt), sampled, replies, failures, device refusals, rejections by reason."""
    blocks: list[Block] = [Heading(level=2, text="9. Vote quality")]
    rows = inputs.metrics.of_kind(KIND_SEARCH_ROUND, phase=PHASE_SEARCH)
    if not rows:
        text = f"No search round is logged yet (no {KIND_SEARCH_ROUND} rows in {METRICS_FILE})."
        return [*blocks, Paragraph(text=text)]
    reasons = sorted({key for row in rows for key in row.data if key.startswith("rejected.") and row.integer(key)})
    headers = ("round", "attempt", "sampled", "replies", "failed", "refused by device policy", "participants",
               "rejected", *(key[len("rejected."):] for key in reasons), "noise-dominated releases")
    cells = [
        (format_int(row.integer("round")), format_int(row.integer("attempt", default=0)),
         *(format_int(row.integer(key)) for key in ("sampled", "replies", "failed")),
         format_int(row.integer("refused", default=0)),
         *(format_int(row.integer(key)) for key in ("participants", "rejected")),
         *(format_int(row.integer(key, default=0)) for key in reasons), format_int(row.integer("noise-dominated")))
        for row in rows
    ]
    blocks.append(Table.of(headers, cells))
    refusals = sorted({key for row in rows for key in row.data if key.startswith("refused.") and row.integer(key)})
    if refusals:  # DESIGN.md 5.4b: a device's own policy refused the request (never charged)
        counts = ", ".join(f"{key[len('refused.'):]} {sum(row.integer(key, default=0) for row in rows)}"
                           for key in refusals)
        blocks.append(Paragraph(text=f"Requests refused by a device's own privacy policy, by rule: {counts}."
                                     " A refusal releases nothing and is not charged."))
    if not reasons:
        blocks.append(Paragraph(text="No vote was rejected."))
    else:
        blocks.append(Paragraph(text="Rejected votes by reason: the columns between 'rejected' and the last one."))
    return blocks
