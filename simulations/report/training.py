"""What a run's ticket training gave, read once for every section that shows it.

- Test accuracy per variant and round: ``metrics.jsonl``'s ``server-eval`` rows; the final one as
  ``summary.json`` quotes it (``"accuracy"``, the last evaluation the pipeline returned).
- Rounds to accuracy: ``summary.json``'s ``"rounds-to-accuracy"``, or, for a run that has none
  (partial, or older), :func:`federation.rounds_to_accuracy.rounds_to_accuracy` on the same rows.
- The DP ticket's sparsity and MACs kept: ``summary.json``'s ``"sparsity"``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from federation.layout import KIND_SERVER_EVAL, SUMMARY_FILE, VARIANTS
from federation.rounds_to_accuracy import RoundsToAccuracy, rounds_to_accuracy
from simulations.report.errors import ReportError
from simulations.report.metrics import MetricRow
from simulations.report.run_inputs import RunInputs
from simulations.report.values import as_number, nested

__all__ = ["MacCount", "TicketSize", "TrainingAccuracy", "read_rounds_to_accuracy", "read_ticket_size",
           "read_training_accuracy"]


@dataclass(frozen=True, kw_only=True)
class TrainingAccuracy:
    """Test accuracy of every trained variant."""

    series: Mapping[str, Mapping[int, MetricRow]] = field(metadata={"help": "variant -> round -> server-eval row"})
    quoted: Mapping[str, float | None] = field(metadata={"help": "summary.json's final accuracy per variant"})
    names: tuple[str, ...] = field(metadata={"help": "variants with data: VARIANTS' order, then any other"})

    def by_round(self) -> dict[str, dict[int, float]]:
        """Variant -> {round: test accuracy}, rounds in increasing order."""
        return {name: {r: float(row.number("accuracy")) for r, row in sorted(points.items())}  # type: ignore[arg-type]
                for name, points in self.series.items()}

    def final(self, name: str) -> float | None:
        """``summary.json``'s accuracy of ``name``; without one, that of its last evaluated round."""
        quoted = self.quoted.get(name)
        if quoted is not None:
            return quoted
        points = self.series.get(name)
        return points[max(points)].number("accuracy") if points else None


def read_training_accuracy(inputs: RunInputs) -> TrainingAccuracy:
    """The ``server-eval`` rows with an accuracy, and ``summary.json``'s ``"accuracy"``.

    Raises
    ------
    ReportError
        If a row or ``summary.json`` holds an accuracy that is not a number.
    """
    series: dict[str, dict[int, MetricRow]] = {}
    for row in inputs.metrics.of_kind(KIND_SERVER_EVAL):
        variant = row.data.get("variant")
        round_number = row.integer("round")
        if isinstance(variant, str) and round_number is not None and row.number("accuracy") is not None:
            series.setdefault(variant, {})[round_number] = row  # a re-run round replaces the first
    summary_accuracy = nested(inputs.summary, "accuracy")
    quoted = {
        name: as_number(value, where=f"{inputs.run_dir / SUMMARY_FILE} key 'accuracy.{name}'")
        for name, value in (summary_accuracy.items() if isinstance(summary_accuracy, dict) else ())
    }
    known = set(series) | {name for name, value in quoted.items() if value is not None}
    names = tuple(v for v in VARIANTS if v in known) + tuple(sorted(known - set(VARIANTS)))
    return TrainingAccuracy(series={k: dict(sorted(v.items())) for k, v in series.items()}, quoted=quoted,
                            names=names)


def read_rounds_to_accuracy(inputs: RunInputs, accuracy: TrainingAccuracy) -> RoundsToAccuracy:
    """``summary.json``'s ``"rounds-to-accuracy"``, else the same function on ``metrics.jsonl``'s rows.

    Raises
    ------
    ReportError
        If ``summary.json``'s entry is malformed (one line naming the file).
    """
    written = nested(inputs.summary, "rounds-to-accuracy")
    if written is None:
        return rounds_to_accuracy(_checked(inputs, accuracy.by_round()))
    try:
        return RoundsToAccuracy.from_json(written)
    except ValueError as err:
        raise ReportError(f"{inputs.run_dir / SUMMARY_FILE}: {err} Regenerate {SUMMARY_FILE} or delete it.") from err


def _checked(inputs: RunInputs, by_round: dict[str, dict[int, float]]) -> dict[str, dict[int, float]]:
    bad = [(name, r, value) for name, points in by_round.items() for r, value in points.items()
           if not 0.0 <= value <= 1.0]
    if bad:
        name, r, value = bad[0]
        raise ReportError(f"{inputs.metrics.path}: the test accuracy of {name} at round {r} must be in [0, 1]."
                          f" Found {value!r}; the metrics file is damaged, regenerate it by re-running.")
    return by_round


@dataclass(frozen=True, kw_only=True)
class MacCount:
    """Multiply-accumulates per example of the kept weights and of the dense model."""

    kept: int = field(metadata={"help": "MACs of the kept weights"})
    dense: int = field(metadata={"help": "MACs of the same layers, dense"})


@dataclass(frozen=True, kw_only=True)
class TicketSize:
    """``summary.json``'s ``"sparsity"`` of the DP ticket (``None`` where the run did not record it)."""

    conv: float | None = field(metadata={"help": "weight sparsity of the pattern (3x3 conv) layers"})
    model: float | None = field(metadata={"help": "weight sparsity of every prunable layer"})
    paths: float | None = field(metadata={"help": "kept input->output paths through the conv kernels"})
    conv_macs: MacCount | None = field(metadata={"help": "MACs of the pattern layers"})
    model_macs: MacCount | None = field(metadata={"help": "MACs of every Conv2d/Linear layer"})


def read_ticket_size(inputs: RunInputs) -> TicketSize:
    """The DP ticket's figures as ``summary.json`` records them (all ``None`` without it).

    Raises
    ------
    ReportError
        If a figure is not a number (or a MAC count not a pair of non-negative integers).
    """
    source = inputs.run_dir / SUMMARY_FILE

    def number(key: str) -> float | None:
        return as_number(nested(inputs.summary, "sparsity", key), where=f"{source} key 'sparsity.{key}'")

    def macs(key: str) -> MacCount | None:
        value = nested(inputs.summary, "sparsity", key)
        if value is None:
            return None
        kept, dense = nested(value, "kept"), nested(value, "dense")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (kept, dense)) or kept > dense:
            raise ReportError(f"{source} key 'sparsity.{key}' must be {{\"kept\": int, \"dense\": int}} with"
                              f" 0 <= kept <= dense. Found {value!r:.60}; regenerate {SUMMARY_FILE} or delete it.")
        return MacCount(kept=kept, dense=dense)

    return TicketSize(conv=number("conv"), model=number("model"), paths=number("paths"),
                      conv_macs=macs("conv-macs"), model_macs=macs("model-macs"))
