"""Mask scores: a scorer computes per-weight scores and their domain vectors; thresholding is separate.

Entry point: :func:`get` (``"magnitude"``, ``"synflow"``, ``"snip"``), then
``scorer.score(model, ScoreRequest(...), data)`` -> :class:`ScoreResult`.
"""

from models.scores.base import DEFAULT_CLIP_BOUND, Batch, Scorer, ScoreRequest, plain_copy, scored_layers
from models.scores.domains import bound_per_example, domain_vectors
from models.scores.magnitude import Magnitude
from models.scores.registry import get, names, reads_data, register
from models.scores.result import VECTOR_KEYS, ClipMode, Domain, ScoreResult
from models.scores.snip import Snip
from models.scores.synflow import SynFlow
from models.scores.thresholding import global_topk_masks

__all__ = [
    "DEFAULT_CLIP_BOUND",
    "VECTOR_KEYS",
    "Batch",
    "ClipMode",
    "Domain",
    "Magnitude",
    "ScoreRequest",
    "ScoreResult",
    "Scorer",
    "Snip",
    "SynFlow",
    "bound_per_example",
    "domain_vectors",
    "get",
    "global_topk_masks",
    "names",
    "plain_copy",
    "reads_data",
    "register",
    "scored_layers",
]
