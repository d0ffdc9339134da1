"""Architectures, forward-masked application of tickets, parameter/MAC counts and mask scores.

Public API: the model registry (:func:`get`, :func:`names`, :func:`register`), layer selection
(:func:`prunable_layers`, :func:`default_policies`), masking (:func:`apply_masks`,
:func:`apply_ticket`, :func:`remove_masks`, :func:`current_masks`, :func:`plain_state_dict`,
:func:`load_plain_state_dict`), counts (:func:`count_model`) and the ``models.scores`` subpackage.
Layer names are qualified module names of ``Conv2d`` / ``Linear`` modules; the masked tensor is
the module's ``.weight``.
"""

from models import scores
from models.conv4 import DEFAULT_WIDTH as CONV4_DEFAULT_WIDTH
from models.conv4 import Conv4
from models.counts import LayerCounts, ModelCounts, count_model
from models.errors import (
    MaskError,
    ModelConfigError,
    ModelsError,
    RegistrationError,
    ScoreError,
    StateDictError,
    UnknownNameError,
)
from models.layers import default_policies, input_shape_of, is_pattern_layer, prunable_layers
from models.lenet5 import LeNet5
from models.masking import (
    TicketLike,
    WeightMask,
    apply_masks,
    apply_ticket,
    current_masks,
    load_plain_state_dict,
    plain_state_dict,
    remove_masks,
)
from models.norms import Norm
from models.registry import get, names, register
from models.resnet20 import ResNet20

__all__ = [
    "CONV4_DEFAULT_WIDTH",
    "Conv4",
    "LayerCounts",
    "LeNet5",
    "MaskError",
    "ModelConfigError",
    "ModelCounts",
    "ModelsError",
    "Norm",
    "RegistrationError",
    "ResNet20",
    "ScoreError",
    "StateDictError",
    "TicketLike",
    "UnknownNameError",
    "WeightMask",
    "apply_masks",
    "apply_ticket",
    "count_model",
    "current_masks",
    "default_policies",
    "get",
    "input_shape_of",
    "is_pattern_layer",
    "load_plain_state_dict",
    "names",
    "plain_state_dict",
    "prunable_layers",
    "register",
    "remove_masks",
    "scores",
]
