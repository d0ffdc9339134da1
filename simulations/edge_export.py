"""``dppt export``: a run directory's ticket and weights as a compact ``dppt-edge`` file, checked.

The run's ``config.json`` builds the model, ``ticket.safetensors`` masks it and
``weights.safetensors`` fills it; :func:`models.compaction.lower_to_edge_graph` keeps only what
the ticket keeps (removing channels where exact) and :func:`kernels.write_export_file` writes
it. The file is then read back and its outputs compared with the masked model's on the run's
test set (random inputs when the data cannot be found), so a file that would not reproduce the
trained model is never left behind unreported.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

EDGE_FILE = "model.dppt-edge.safetensors"
# Outputs of the loaded file must equal the masked model's to this, relative to the largest
# output (float32 sums taken in another order differ by a few ulps, never by more).
OUTPUT_TOLERANCE = 1e-5


class ExportError(ValueError):
    """A run directory cannot be exported, or its export does not reproduce the model (one line)."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExportSummary:
    path: Path = dataclasses.field(metadata={"help": "the dppt-edge file written"})
    size_bytes: int = dataclasses.field(metadata={"help": "its size"})
    dense_bytes: int = dataclasses.field(metadata={"help": "size of the run's weights.safetensors"})
    max_difference: float = dataclasses.field(metadata={"help": "max |loaded - masked| over the checked outputs"})
    checked_on: str = dataclasses.field(metadata={"help": "what the outputs were compared on"})
    channels: dict[str, tuple[int, int]] = dataclasses.field(metadata={"help": "layer -> (kept, total) channels"})


def _check_inputs(config: object, input_shape: tuple[int, ...], examples: int) -> tuple[torch.Tensor, str]:
    from federation.data import load_tensors

    try:
        images, _ = load_tensors(config.dataset, data_dir=config.data_dir or None, train=False)  # type: ignore[attr-defined]
        return images[:examples], f"{min(examples, images.shape[0])} {config.dataset} test examples"  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - no data here: random inputs still test the arithmetic
        generator = torch.Generator().manual_seed(0)
        return torch.randn(
            examples, *input_shape, generator=generator
        ), f"{examples} random inputs (no test data found)"


def export_run(run_dir: str | Path, *, out: str | Path | None = None, check_examples: int = 256) -> ExportSummary:
    """Export the trained ticket of ``run_dir`` to ``out`` (default ``RUN_DIR/model.dppt-edge.safetensors``).

    Raises
    ------
    ExportError
        In one line, naming the file and what is wrong: a missing or damaged file, a ticket that
        does not fit the weights, or an export whose outputs differ from the masked model's.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from federation.config import Config
    from federation.model_io import build_model
    from federation.pipeline import TICKET_FILE
    from federation.rundir import CONFIG_FILE, WEIGHTS_FILE, read_json
    from kernels import KernelsError, Ticket, read_export_file, write_export_file
    from models import ModelsError, apply_ticket, load_plain_state_dict, prunable_layers
    from models.compaction import lower_to_edge_graph

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ExportError(f"export needs a run directory. Found no folder '{run_dir}'.")
    if isinstance(check_examples, bool) or not isinstance(check_examples, int) or check_examples < 1:
        raise ExportError(f"check-examples must be a positive int. Found {check_examples!r}.")
    config = Config.from_mapping(read_json(run_dir / CONFIG_FILE))
    model = build_model(config)
    shapes = {name: tuple(module.weight.shape) for name, module in prunable_layers(model).items()}
    for name in (TICKET_FILE, WEIGHTS_FILE):
        if not (run_dir / name).is_file():
            raise ExportError(f"'{run_dir / name}' does not exist: export needs a finished run with a ticket.")
    try:
        ticket = Ticket.load(run_dir / TICKET_FILE, shapes=shapes)
        apply_ticket(model, ticket)
        load_plain_state_dict(model, load_file(str(run_dir / WEIGHTS_FILE)))
    except (KernelsError, ModelsError, SafetensorError) as err:
        raise ExportError(f"{run_dir}: {err}") from err
    model.eval()
    with torch.no_grad():
        graph = lower_to_edge_graph(model, ticket)
        target = Path(out) if out is not None else run_dir / EDGE_FILE
        source = {
            "config-hash": config.run_hash(),
            "dataset": config.dataset,
            "model": config.model,
            "ticket-round": ticket.metadata.round,
            "ticket-density": ticket.density(),
        }
        size = write_export_file(
            target,
            nodes=graph.nodes,
            tensors=graph.tensors,
            input_shape=graph.input_shape,
            source=source,
        )
        inputs, checked_on = _check_inputs(config, graph.input_shape, check_examples)
        expected = model(inputs)
        difference = float((read_export_file(target)(inputs) - expected).abs().max())
    scale = max(1.0, float(expected.abs().max()))
    if not difference <= OUTPUT_TOLERANCE * scale:
        raise ExportError(
            f"outputs of {target} must equal the masked model's to {OUTPUT_TOLERANCE:g} x {scale:.3g}. "
            f"Found a difference of {difference:.3g} on {checked_on}."
        )
    return ExportSummary(
        path=target,
        size_bytes=size,
        dense_bytes=(run_dir / WEIGHTS_FILE).stat().st_size,
        max_difference=difference,
        checked_on=checked_on,
        channels=graph.channels,
    )
