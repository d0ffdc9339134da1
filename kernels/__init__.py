"""Pattern math and pattern tickets (numpy/torch only).

Enumerate candidate 3x3 patterns, measure their energy, select a library from a vote, project
layers onto it (pattern assignment, connectivity pruning, unstructured top-k) and hold the result
as a :class:`Ticket` that saves to a versioned, pickle-free file. This package's exports are its
public API; the modules behind them may change.
"""

from kernels.builders import build_ticket, random_ticket, random_ticket_like
from kernels.connectivity import connect_kernels, count_paths, erk_densities
from kernels.edge_model import CONV_BACKENDS, EdgeModel
from kernels.errors import (
    EdgeFormatError,
    KernelsError,
    TicketFormatError,
    TicketMismatchError,
)
from kernels.export_file import (
    EDGE_FORMAT_NAME,
    EDGE_FORMAT_VERSION,
    read_export_file,
    read_export_header,
    write_export_file,
)
from kernels.layer_ticket import LayerTicket
from kernels.metadata import TicketMetadata
from kernels.pattern_conv import PatternConv2d
from kernels.pattern_conv_cpp import compiled_pattern_conv
from kernels.patterns import (
    CENTRE_POSITION,
    KERNEL_ENTRIES,
    KERNEL_SIZE,
    candidate_count,
    enumerate_candidates,
    pattern_energy,
    select_library,
    validate_library,
)
from kernels.projection import (
    LayerPolicy,
    Scope,
    assign_patterns,
    kept_count,
    kernel_keep_fraction,
    pattern_mask,
    project_onto_library,
    select_kernels,
    unstructured_mask,
)
from kernels.report import LayerSparsity, SparsityReport, compression_ratio
from kernels.ticket import Ticket
from kernels.ticket_file import (
    FORMAT_NAME,
    FORMAT_VERSION,
    read_ticket_file,
    write_ticket_file,
)

__all__ = [
    "CENTRE_POSITION",
    "CONV_BACKENDS",
    "EDGE_FORMAT_NAME",
    "EDGE_FORMAT_VERSION",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "KERNEL_ENTRIES",
    "KERNEL_SIZE",
    "EdgeFormatError",
    "EdgeModel",
    "KernelsError",
    "LayerPolicy",
    "LayerSparsity",
    "LayerTicket",
    "PatternConv2d",
    "Scope",
    "SparsityReport",
    "Ticket",
    "TicketFormatError",
    "TicketMetadata",
    "TicketMismatchError",
    "assign_patterns",
    "build_ticket",
    "connect_kernels",
    "count_paths",
    "erk_densities",
    "candidate_count",
    "compiled_pattern_conv",
    "compression_ratio",
    "enumerate_candidates",
    "kept_count",
    "kernel_keep_fraction",
    "pattern_energy",
    "pattern_mask",
    "project_onto_library",
    "random_ticket",
    "random_ticket_like",
    "read_export_file",
    "read_export_header",
    "read_ticket_file",
    "select_kernels",
    "select_library",
    "unstructured_mask",
    "validate_library",
    "write_export_file",
    "write_ticket_file",
]
