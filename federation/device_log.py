"""A device's own record of what it released, and its own budget (node_config ``privacy-log``, ``max-epsilon``).

The server's ledger charges every release (DESIGN.md 5.4), but a device need not trust the
server for that. With ``privacy-log=PATH`` in its node config, the ClientApp appends one line per
vote it releases to that file on the device (fsynced before the reply leaves, so a reply never
goes out unlogged). With ``max-epsilon=X`` as well, it refuses any vote that would take the sum of
the ε in that file over ``X``: the node abstains (an error reply, which the server never charges).
The sum covers every run logged in the file (sequential composition, basic: Σε), so one file is
one device's lifetime budget across runs.

A vote's ε is the sum of its domains' ε (sequential composition within a round). A data-free
vote reads no example (ε = 0); a vote without noise (ε = inf: the non-private reference search,
or the client unit, whose noise is central) counts as inf, so a device with ``max-epsilon``
refuses it.

A ``train`` reply (plain weights after local SGD) is logged too, as an ε = inf release
(DESIGN.md 5.4b), so the log tells the truth; under ``max-epsilon`` the device refuses it
(:mod:`federation.device_policy`).

Line (JSON): ``schema``, ``time`` (UTC, ISO), ``run`` (the run's config hash), ``round``,
``attempt``, ``kind`` (``vote`` or ``train``; lines written before it existed are votes),
``epsilon`` (``"inf"`` for inf) and ``domains`` (ε per domain; ``{"train": "inf"}`` for training).
A request the device's policy refused is noted too (:meth:`DeviceLog.note_refusal`): ``kind``
``refused``, ``request`` (vote or train), ``rule``, ``reason``, and ε = 0 (nothing left the device).
"""

from __future__ import annotations

import datetime
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from federation.errors import DeviceLogError
from federation.messages import NODE_MAX_EPSILON, NODE_PRIVACY_LOG
from privacy import PrivacyError, fits
from storage import append_durably, decode_float, encode_float

__all__ = ["DEVICE_LOG_SCHEMA", "DeviceLog", "DeviceLogError", "device_log_of"]

DEVICE_LOG_SCHEMA: Final = 1



def _number(value: object) -> float:
    return float(decode_float(value))  # type: ignore[arg-type]


@dataclass(frozen=True, kw_only=True)
class DeviceLog:
    """The release log of one device, and its optional budget.

    Parameters
    ----------
    path
        The log file (created on the first release; its folder too).
    max_epsilon
        The device's own budget over the whole file, ``None`` = no budget (log only).
    """

    path: Path = field(metadata={"help": "the log file"})
    max_epsilon: float | None = field(default=None, metadata={"help": "the device's Σε budget, None = none"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path).expanduser())
        if self.max_epsilon is not None and not (self.max_epsilon >= 0 and not math.isnan(self.max_epsilon)):
            raise DeviceLogError(f"max-epsilon must be a number >= 0. Found {self.max_epsilon!r}.")

    def _read(self) -> tuple[bytes, list[dict[str, Any]]]:
        """The file's bytes and its complete lines, parsed (a torn last line is skipped)."""
        if not self.path.is_file():
            return b"", []
        data = self.path.read_bytes()
        *complete, _torn = data.split(b"\n")
        entries = []
        for number, raw in enumerate(complete, start=1):
            try:
                entry = json.loads(raw)
                _number(entry["epsilon"])
            except (ValueError, KeyError, TypeError) as err:
                raise DeviceLogError(f"{self.path} line {number} must be a dppt release line. Found {raw[:80]!r}"
                                     f" ({err}). Restore the file: it is this device's privacy record.") from None
            entries.append(entry)
        return data, entries

    def entries(self) -> list[dict[str, Any]]:
        """Every complete line of the log (a torn last line, from a crash while writing, is skipped)."""
        return self._read()[1]

    def spent(self) -> float:
        """Σε of every release in the log."""
        return _spent(self.entries())

    def _refuse_over_budget(self, entries: list[dict[str, Any]], epsilon: float) -> None:
        if self.max_epsilon is None or epsilon == 0:
            return
        spent = _spent(entries)
        try:  # exact over every logged ε, no slack (DESIGN.md 5.4)
            fit = fits([_number(entry["epsilon"]) for entry in entries], epsilon, self.max_epsilon)
        except PrivacyError as err:
            raise DeviceLogError(f"{self.path} must hold ε >= 0 on every line ({err}). Restore the file: it is this"
                                 " device's privacy record.") from None
        if not fit:
            raise DeviceLogError(
                f"this device's own budget would be exceeded: spent {spent:g} + this release {epsilon:g} > max-epsilon"
                f" {self.max_epsilon:g} (its log {self.path}); the node refuses it"
            )

    def check(self, epsilon: float) -> None:
        """Raise :class:`DeviceLogError` if releasing ``epsilon`` more would exceed ``max_epsilon``."""
        if self.max_epsilon is not None and epsilon != 0:
            self._refuse_over_budget(self.entries(), epsilon)

    def record(
        self, *, run: str, server_round: int, attempt: int, domains: dict[str, float], kind: str = "vote"
    ) -> float:
        """Check the budget, then append the release (fsynced); return its ε. The log is read once.

        ``kind`` is ``vote`` (noisy top-k indices; ``domains`` holds each domain's ε) or ``train``
        (plain trained weights, ε = inf).
        """
        epsilon = math.fsum(domains.values())
        data, entries = self._read()
        self._refuse_over_budget(entries, epsilon)
        line = {
            "schema": DEVICE_LOG_SCHEMA,
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "run": run, "round": server_round, "attempt": attempt, "kind": kind,
            "epsilon": encode_float(epsilon),
            "domains": {name: encode_float(value) for name, value in domains.items()},
        }
        self._append(data, line)
        return epsilon

    def note_refusal(self, *, run: str, server_round: int, attempt: int, kind: str, rule: str, reason: str) -> None:
        """Append a request the device refused under its policy (ε = 0: nothing was released).

        DESIGN.md 5.4b: a request outside the policy is refused with a reason and logged, so the
        device's own record shows what the server asked for as well as what it released.
        """
        data, _ = self._read()
        self._append(data, {
            "schema": DEVICE_LOG_SCHEMA,
            "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "run": run, "round": server_round, "attempt": attempt, "kind": "refused", "request": kind,
            "rule": rule, "reason": reason[:300], "epsilon": encode_float(0.0), "domains": {},
        })

    def _append(self, data: bytes, line: dict[str, Any]) -> None:
        if data and not data.endswith(b"\n"):  # a torn last line (crash while writing: its reply never left)
            os.truncate(self.path, data.rfind(b"\n") + 1)
        append_durably(self.path, (json.dumps(line, sort_keys=True) + "\n").encode("utf-8"), mode=0o600)


def _spent(entries: list[dict[str, Any]]) -> float:
    return math.fsum(_number(entry["epsilon"]) for entry in entries)


def device_log_of(node_config: Mapping[str, Any]) -> DeviceLog | None:
    """The node's :class:`DeviceLog` from ``privacy-log`` / ``max-epsilon``, or ``None`` without a log.

    Raises
    ------
    DeviceLogError
        If ``max-epsilon`` is given without ``privacy-log`` (the budget needs the log) or is not a number.
    """
    path = str(node_config.get(NODE_PRIVACY_LOG, "") or "").strip()
    raw = node_config.get(NODE_MAX_EPSILON)
    if not path:
        if raw is not None:
            raise DeviceLogError(f"{NODE_MAX_EPSILON} needs {NODE_PRIVACY_LOG}=PATH in the node config: the device"
                                 " counts its spending in that file.")
        return None
    try:
        budget = None if raw is None or str(raw).strip() == "" else float(raw)
    except (TypeError, ValueError):
        raise DeviceLogError(f"{NODE_MAX_EPSILON} must be a number >= 0. Found {raw!r}.") from None
    return DeviceLog(path=Path(path), max_epsilon=budget)
