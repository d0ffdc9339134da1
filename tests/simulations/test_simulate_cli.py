"""The `dppt` command line: help, config errors (exit 2, nothing written) and a real simulation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulations.cli import main

REPO = Path(__file__).resolve().parents[2]


def _dppt(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "simulations.cli", *args],
        capture_output=True, text=True, cwd=cwd or REPO, timeout=timeout,
    )


@pytest.mark.parametrize("sub", [[], ["simulate"], ["config"]])
def test_help_on_every_subcommand(sub, capsys):
    with pytest.raises(SystemExit) as info:
        main([*sub, "--help"])
    assert info.value.code == 0
    assert "usage: dppt" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "alpha=0"], "alpha must be a finite number > 0"),
        (["--set", "model=vgg99"], "model must be one of conv4, lenet5, resnet20. Found 'vgg99'."),
        (["--set", "dataset=imagenet"], "dataset must be one of"),
        (["--set", "bogus=1"], "Unknown config key 'bogus'"),
        (["--config", "missing.toml"], "does not exist"),
    ],
)
def test_bad_config_exits_2_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    code = main(["simulate", "--out", str(out), "--data-dir", str(tmp_path / "nodata"), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_missing_data_exits_2_before_writing(tmp_path, capsys, monkeypatch):
    import torchvision

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("no network")))
    out = tmp_path / "run"
    code = main(["simulate", "--out", str(out), "--data-dir", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert code == 2 and "--data-dir" in err and "MNIST/raw" in err
    assert not out.exists()


def test_more_clients_than_examples_exits_2(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    code = main(["simulate", "--out", str(out), "--data-dir", str(data_dir), "--set", "num-clients=70000"])
    assert code == 2 and "num-clients must be at most" in capsys.readouterr().err
    assert not out.exists()


def test_refuses_to_overwrite_an_earlier_run(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"old": 1}\n')
    code = main(["simulate", "--out", str(out), "--data-dir", str(data_dir)])
    assert code == 2 and "already holds files" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_text() == '{"old": 1}\n'


@pytest.mark.integration
def test_two_round_three_client_simulation(tmp_path, data_dir):
    out = tmp_path / "run"
    proc = _dppt(
        "simulate", "--out", str(out), "--data-dir", str(data_dir),
        "--set", "num-clients=3", "--set", "rounds=2", "--set", "max-examples-per-client=600",
        "--set", "max-test-examples=2000", "--set", "partition=iid",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("config.json", "metrics.jsonl", "summary.json", "weights.safetensors"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["num-clients"] == 3 and config["rounds"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rounds-completed"] == 2
    assert summary["accuracy"] > 0.5, summary  # chance is 0.1
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if r["kind"] == "server-eval"]
    assert [r["round"] for r in evals] == [0, 1, 2]
    assert evals[-1]["accuracy"] > evals[0]["accuracy"]
    parts = [r for r in rows if r["kind"] == "partitions"][0]
    assert sum(parts["sizes"]) == 60000 and len(parts["label-histograms"]) == 3
    trains = [r for r in rows if r["kind"] == "client-train"]
    assert len(trains) == 2 and all(r["replies"] == 3 for r in trains)
    assert "round   2/2" in proc.stdout  # progress was shown
    from safetensors.torch import load_file

    weights = load_file(str(out / "weights.safetensors"))
    assert "conv1.weight" in weights
