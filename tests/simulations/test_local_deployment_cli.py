"""``dppt local-deployment``: a SuperLink and N SuperNodes for a demo, every process stopped on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from simulations.deploy.local import CONNECTION, _processes

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_local_deployment_prints_the_run_command_and_stops_every_process_on_ctrl_c(tmp_path, data_dir):
    work = tmp_path / "demo"
    process = subprocess.Popen(
        [sys.executable, "-m", "simulations.cli", "local-deployment", "--nodes", "2", "--work", str(work),
         "--data-dir", str(data_dir)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.time() + 240
        while not any("Ctrl-C stops" in line for line in lines):
            assert process.poll() is None, "".join(lines)
            assert time.time() < deadline, "".join(lines)
            time.sleep(0.5)
        command = next(line for line in lines if "flwr run" in line).strip()
        home = command.split()[0].removeprefix("FLWR_HOME=")
        assert f"flwr run . {CONNECTION}" in command and "num-clients=2" in command
        assert command.split()[1] == str(Path(sys.executable).parent / "flwr")  # works without an activated venv
        listed = subprocess.run(
            [str(Path(sys.executable).parent / "flwr"), "supernode", "ls", CONNECTION, "--format", "json"],
            env={**os.environ, "FLWR_HOME": home}, capture_output=True, text=True, timeout=120,
        )
        nodes = json.loads(listed.stdout)["nodes"]
        assert [node["status"] for node in nodes] == ["online", "online"]  # over TLS, the default
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 0
        reader.join(timeout=10)
        assert "stopped the SuperLink and every SuperNode" in "".join(lines)
        assert [cmd for _, _, _, cmd in _processes() if str(work) in cmd] == []  # nothing left running
    finally:  # a failed or timed-out run must not leave its SuperLink and SuperNodes behind (own sessions)
        if process.poll() is None:
            process.kill()
        for _, _, group, cmd in _processes():
            if str(work) in cmd and group != os.getpgrp():  # never this test's own group
                try:
                    os.killpg(group, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
