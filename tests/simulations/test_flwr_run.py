"""``flwr run .`` as the README gives it, from a fresh Flower home: it completes, and a federation
sized unlike ``num-clients`` ends the run at once with one line.

Flower 1.41 starts a managed local SuperLink (``flower-superlink --simulation``) on first use and
leaves it running; here it gets its own ``FLWR_HOME`` and port, and is stopped at the end (only
the processes whose command line names this test's Flower home). ``FLWR_DISABLE_RUNTIME_
DEPENDENCY_INSTALLATION=1`` runs the app in this environment instead of a ``uv sync``-ed copy.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MISMATCH = "num-clients must equal the federation's num-partitions."
TINY = ("partition='iid' search-rounds=2 hold-rounds=0 train-rounds=1 max-examples-per-client=200"
        " max-test-examples=500 score-examples=64 reference-search=false baselines=false")

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _processes_naming(text: str) -> dict[int, str]:
    """pid -> command line of every process whose command line contains ``text`` (and its SuperExec)."""
    found: dict[int, str] = {}
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if proc.name.isdigit() and text in cmdline:
            found[int(proc.name)] = cmdline
    return found


@pytest.fixture
def flower_home(tmp_path: Path):
    """Environment of a machine that never ran Flower, and the teardown that stops its SuperLink."""
    home = tmp_path / "flwr-home"
    env = {
        **os.environ, "FLWR_HOME": str(home), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(_free_port()), "FLWR_LOCAL_CONTROL_API_PORT": str(_free_port()),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1", "PYTHONUNBUFFERED": "1",
    }
    yield env
    superlinks = _processes_naming(f"--log-file {home}")
    children = {pid for link in superlinks for pid in _processes_naming(f"--parent-pid {link}")}
    for pid in superlinks:
        os.kill(pid, signal.SIGTERM)
    deadline = time.time() + 30
    while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in [*superlinks, *children]):
        for pid in [*superlinks, *children]:
            try:
                os.waitpid(pid, os.WNOHANG)  # not our children in general; harmless when not
            except ChildProcessError:
                pass
        time.sleep(0.5)
    survivors = [pid for pid in [*superlinks, *children] if _alive(pid)]
    for pid in survivors:
        os.kill(pid, signal.SIGKILL)
    assert superlinks, "flwr run started no managed SuperLink under this Flower home"
    assert not survivors, f"processes survived SIGTERM of their SuperLink: {survivors}"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _flwr_run(env: dict[str, str], *args: str, timeout: float = 540) -> tuple[str, float]:
    start = time.monotonic()
    done = subprocess.run([str(Path(sys.executable).parent / "flwr"), "run", ".", *args, "--stream"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=timeout)
    return done.stdout + done.stderr, time.monotonic() - start


def test_flwr_run_from_a_fresh_flower_home(flower_home, data_dir, tmp_path):
    out = tmp_path / "runs"
    paths = f"data-dir='{data_dir}' out-dir='{out}'"
    # The README's command: Flower's default federation has 2 SuperNodes since 1.32, so the
    # command sets the size the run expects.
    log, _ = _flwr_run(flower_home, "--federation-config", "num-supernodes=3 client-resources-num-cpus=1",
                       "--run-config", f"num-clients=3 {TINY} {paths}")
    summaries = list(out.glob("*/summary.json"))
    assert len(summaries) == 1, log[-3000:]
    assert (summaries[0].parent / "report.md").is_file()
    assert MISMATCH not in log
    assert "uv sync" not in log  # the app ran in this environment, no runtime copy was installed

    # Flower's default size (2) under num-clients = 3: one line, before any data is read or vote sent.
    log, seconds = _flwr_run(flower_home, "--run-config", f"num-clients=3 {TINY} {paths}", timeout=300)
    lines = [line for line in log.splitlines() if MISMATCH in line]
    assert lines and "Found num-clients = 3, num-partitions = 2" in lines[0], log[-3000:]
    assert 'flwr run . --federation-config "num-supernodes=3"' in lines[0]
    assert "train.vote" not in log and "must equal the run's num-clients" not in log  # no failed votes
    assert len(list(out.glob("*/summary.json"))) == 1
    assert all(path.stat().st_size == 0 for path in out.glob("*/ledger.jsonl") if path.parent != summaries[0].parent)
    print(f"mismatch ended the run {seconds:.0f} s after flwr run started")
