"""The report's first screen: what a reader came for, under the guarantee sentence.

Three small tables and one note, each fact read from its owner (nothing is recomputed here):

- test accuracy of every trained model beside dense's, and the first round each reached the
  threshold (:mod:`simulations.report.training`: ``summary.json``, else ``metrics.jsonl``);
- the DP ticket's conv sparsity, MACs kept and kept paths (``summary.json``'s ``"sparsity"``);
- ε spent of the budget per privacy unit (:func:`simulations.report.sections_privacy.budget_table`,
  the ledgers' totals, the training's under DP-SGD);
- the whole run's guarantee, per phase and composed, with its plot
  (:func:`simulations.report.sections_privacy.whole_run_blocks`: ``summary.json``'s ``"whole-run"``,
  else :func:`federation.statement.whole_run` of the same ledgers).

The detailed sections follow unchanged.
"""

from __future__ import annotations

from federation.layout import SUMMARY_FILE
from federation.rounds_to_accuracy import DENSE, RoundsToAccuracy
from privacy import PrivacyTotals
from simulations.report.document import Block, Heading, Paragraph, Table
from simulations.report.formatting import NOT_AVAILABLE, format_float
from simulations.report.run_inputs import RunInputs
from simulations.report.sections_privacy import budget_table, whole_run_blocks
from simulations.report.training import (
    MacCount,
    TrainingAccuracy,
    read_rounds_to_accuracy,
    read_ticket_size,
    read_training_accuracy,
)

__all__ = ["OVERVIEW_HEADING", "overview_section"]

OVERVIEW_HEADING = "At a glance"
_LABELS = {"dense": "dense (no ticket)", "dp_ticket": "DP ticket", "nonprivate_ticket": "non-private ticket",
           "random_ticket": "random ticket (DP ticket's structure)"}
_DIGITS = 4  # accuracies and sparsities at a glance; the sections below give 6 significant digits


def _reached(name: str, rounds: RoundsToAccuracy) -> str:
    reached = rounds.by_variant.get(name)
    if rounds.threshold is None or reached is None:
        return NOT_AVAILABLE
    if reached.round is None:
        return f"not reached in {reached.rounds_evaluated} rounds"
    return f"round {reached.round} of {reached.rounds_evaluated}"


def _versus_dense(value: float | None, dense: float | None, *, is_dense: bool) -> str:
    if is_dense:
        return "reference"
    if value is None or dense is None:
        return NOT_AVAILABLE
    return f"{100 * (value - dense):+.2f} points"


def _accuracy_table(accuracy: TrainingAccuracy, rounds: RoundsToAccuracy) -> Table:
    dense = accuracy.final(DENSE)
    threshold = "n/a" if rounds.threshold is None else format_float(rounds.threshold, digits=_DIGITS)
    rows = [
        (_LABELS.get(name, name), format_float(accuracy.final(name), digits=_DIGITS),
         _versus_dense(accuracy.final(name), dense, is_dense=name == DENSE), _reached(name, rounds))
        for name in accuracy.names
    ]
    return Table.of(("model", "test accuracy", "vs dense", f"first round at accuracy ≥ {threshold}"), rows)


def _count(value: int) -> str:
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.4g} {unit}"
    return str(value)


def _macs(count: MacCount | None) -> str:
    if count is None:
        return NOT_AVAILABLE
    if count.dense == 0:
        return "0 of 0"
    return f"{100 * count.kept / count.dense:.3g}% ({_count(count.kept)} of {_count(count.dense)})"


def _ticket_blocks(inputs: RunInputs) -> list[Block]:
    size = read_ticket_size(inputs)
    row = (format_float(size.conv, digits=_DIGITS), format_float(size.model, digits=_DIGITS), _macs(size.conv_macs),
           _macs(size.model_macs), format_float(size.paths, digits=3))
    return [
        Heading(level=3, text=f"The DP ticket ({inputs.ticket_file or 'none yet'}): sparsity and MACs kept per example"),
        Table.of((f"conv sparsity (target {format_float(inputs.config.sparsity)})", "model sparsity", "conv MACs kept",
                  "all MACs kept", "kept input->output paths"), [row]),
    ]


def _note(inputs: RunInputs, rounds: RoundsToAccuracy) -> str:
    source = (f"Final test accuracy as {SUMMARY_FILE} records it" if inputs.summary is not None
              else f"Test accuracy of the last evaluated round ({SUMMARY_FILE} is not written yet)")
    if rounds.threshold is None:
        rule = ("this run trained no dense model (baselines = false, or a sweep run whose references another"
                " run trained), so there is no threshold to reach")
    else:
        rule = (f"the last column is the first training round at which a model reached"
                f" {format_float(rounds.threshold, digits=_DIGITS)}, {rounds.fraction_of_dense:g} x the dense model's"
                " final accuracy (round 0 is θ0, before training)")
    return (f"{source}; {rule}. The run trains no ticket of the free prior alone (prior = {inputs.config.prior},"
            " data-free), so it has no row.")


def overview_section(inputs: RunInputs, totals: PrivacyTotals) -> list[Block]:
    """The first screen: accuracy beside dense, rounds to accuracy, the ticket's size, ε of budget."""
    accuracy = read_training_accuracy(inputs)
    rounds = read_rounds_to_accuracy(inputs, accuracy)
    blocks: list[Block] = [Heading(level=2, text=OVERVIEW_HEADING), Heading(level=3, text="Test accuracy")]
    if accuracy.names:
        blocks.append(_accuracy_table(accuracy, rounds))
    else:
        blocks.append(Paragraph(text="No model has been trained and evaluated yet."))
    return [
        *blocks, Paragraph(text=_note(inputs, rounds)),
        *_ticket_blocks(inputs),
        Heading(level=3, text="Privacy budget: ε spent of the budget, per privacy unit"), budget_table(inputs, totals),
        *whole_run_blocks(inputs, totals),
    ]
