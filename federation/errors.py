"""The errors of the federation package: one base, one subclass per kind of problem.

Every message is one line that names what is wrong and how to fix it. Callers that only need to
report a problem (the ``dppt`` command line) catch :class:`FederationError`; the subclasses also
derive from the built-in error a caller would expect (``ValueError`` for a bad value,
``RuntimeError`` for a state that cannot go on), so existing ``except ValueError`` code still works.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "DeviceLogError",
    "FederationError",
    "PartitionError",
    "PipelineError",
    "PolicyRefusal",
    "RunDirError",
    "TrainingStopped",
    "VoteError",
]


class FederationError(Exception):
    """Base of every federation error (a one-line message that says how to fix it)."""


class ConfigError(FederationError, ValueError):
    """A configuration value, key or file is wrong."""


class DataError(FederationError, RuntimeError):
    """A dataset cannot be found or read; the message names the folder and files."""


class PartitionError(FederationError, ValueError):
    """A partition scheme cannot be built for these settings."""


class RunDirError(FederationError, RuntimeError):
    """The run directory cannot be created or would overwrite an earlier run."""


class PipelineError(FederationError, RuntimeError):
    """A run cannot start or resume."""


class VoteError(FederationError, ValueError):
    """The round's vote configuration cannot be answered (the reply is an error; nothing is released)."""


class DeviceLogError(FederationError, ValueError):
    """The device's log is unreadable, or a vote would exceed the device's own budget."""


class TrainingStopped(FederationError, RuntimeError):
    """A model's ticket training ends before ``train-rounds``: a DP-SGD budget refusal (the message says which)."""


class PolicyRefusal(FederationError, PermissionError):
    """A request outside the device's own privacy policy (DESIGN.md 5.4b); nothing is released.

    The message starts with :data:`strategies.keys.POLICY_REFUSAL` and the rule's name, so the
    server can count the refusal (an error reply is never charged) and a person can read why.
    """

    def __init__(self, rule: str, detail: str) -> None:
        # Local: importing strategies loads torch, which the torch-free report (it imports these errors) avoids.
        from strategies.keys import POLICY_REFUSAL

        self.rule = rule
        super().__init__(f"{POLICY_REFUSAL} ({rule}): {detail}")
