"""Checks shared by the tests that run ``dppt simulate`` end to end (a local Ray, a Ray cluster)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from federation.layout import (
    CHECKPOINT_FILE, CONFIG_FILE, LEDGER_FILE, METRICS_FILE, SUMMARY_FILE, TICKET_FILE, WEIGHTS_FILE,
)
from privacy import Ledger
from simulations.report.outputs import HTML_FILE, MARKDOWN_FILE

REPO = Path(__file__).resolve().parents[2]

SMOKE_SETTINGS = (
    "num-clients=3", "search-rounds=2", "hold-rounds=1", "train-rounds=1", "max-examples-per-client=300",
    "score-examples=128", "max-test-examples=1000", "partition=iid", "epsilon=2",
)
"""A run of seconds: 3 clients, 2 search rounds, 1 training round, ε = 2 per client."""

RUN_FILES = (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, WEIGHTS_FILE, TICKET_FILE, LEDGER_FILE, CHECKPOINT_FILE,
             MARKDOWN_FILE, HTML_FILE)
"""What a complete run directory holds (beside plots/*.png)."""


def dppt(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The ``dppt`` command line in a fresh Python process."""
    return subprocess.run(
        [sys.executable, "-m", "simulations.cli", *args],
        capture_output=True, text=True, cwd=cwd or REPO, timeout=timeout,
    )


def smoke_args(out: Path, data_dir: Path, *settings: str) -> list[str]:
    """``simulate`` arguments of the smoke run into ``out``, with extra ``KEY=VALUE`` settings."""
    return ["simulate", "--out", str(out), "--data-dir", str(data_dir),
            *[arg for setting in (*SMOKE_SETTINGS, *settings) for arg in ("--set", setting)]]


def missing_run_files(run: Path) -> list[str]:
    """The files of a complete run directory that ``run`` lacks (plots included)."""
    missing = [name for name in RUN_FILES if not (run / name).is_file()]
    return missing + ([] if list((run / "plots").glob("*.png")) else ["plots/*.png"])


def ledger_epsilon_per_client(run: Path) -> dict[str, float]:
    """Σε per client id, summed from the run's ledger."""
    per_client: dict[str, float] = {}
    for event in Ledger(run / LEDGER_FILE).events:
        for client in event.charged_clients():
            per_client[client] = per_client.get(client, 0.0) + event.epsilon
    return per_client
