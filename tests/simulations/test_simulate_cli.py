"""The `dppt` command line: help, config errors (exit 2, nothing written) and a real simulation."""

from __future__ import annotations

import json

import pytest

from federation.layout import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, TICKET_FILE
from simulations.cli import main
from simulations.report.outputs import MARKDOWN_FILE

from .run_checks import dppt as _dppt
from .run_checks import ledger_epsilon_per_client, missing_run_files, smoke_args


@pytest.mark.parametrize("sub", [[], ["simulate"], ["report"], ["sweep"], ["config"]])
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
        (["--set", "patterns=100"], "patterns must be at most the 56 candidate patterns of pattern-entries = 4"),
        (["--set", "patterns=9", "--set", "pattern-entries=2"], "patterns must be at most the 8 candidate patterns"),
        (["--set", "clip-bound=0.5"], "clip-bound must be 1.0 under clip-mode=normalise"),
        (["--set", "score=grasp"], "score must be one of magnitude, snip, synflow. Found 'grasp'."),
        (["--set", "clip-mode=clamp"], "clip-mode must be one of clip, normalise with mechanism=laplace-topk. Found 'clamp'."),
        (["--set", "clip-mode=l2"], "clip-mode must be one of clip, normalise with mechanism=laplace-topk. Found 'l2'."),
        (["--set", "mechanism=gaussian-topk"], "clip-mode must be one of l2 with mechanism=gaussian-topk. Found 'normalise'."),
        (["--set", "budget-accountant=rdp"], "budget-accountant must be basic unless mechanism=gaussian-topk"),
        (["--set", "delta=0"], "delta must be in (0, 1). Found 0.0."),
        (["--set", "other-layers=pattern"], "other-layers must be one of dense, unstructured. Found 'pattern'."),
        (["--set", "dataset=imagenet"], "dataset must be one of"),
        (["--set", "bogus=1"], "Unknown config key 'bogus'"),
        (["--set", "train-privacy=dp-sgd", "--set", "train-epsilon=1e-7"], "train-epsilon must be large enough for DP-SGD"),
        (["--set", "train-privacy=dp-secagg"], "train-privacy must be one of none, dp-sgd, dp-fedavg. Found 'dp-secagg'."),
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
    (out / METRICS_FILE).write_text('{"old": 1}\n')
    code = main(["simulate", "--out", str(out), "--data-dir", str(data_dir)])
    assert code == 2 and "already holds files" in capsys.readouterr().err
    assert (out / METRICS_FILE).read_text() == '{"old": 1}\n'


def test_resume_refuses_what_it_cannot_resume(tmp_path, capsys):
    assert main(["simulate", "--resume", str(tmp_path / "nothing")]) == 2
    assert "needs the folder of an earlier run" in capsys.readouterr().err
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / CONFIG_FILE).write_text("{}")
    assert main(["simulate", "--resume", str(fresh)]) == 2
    assert "never started a search round" in capsys.readouterr().err
    (fresh / SUMMARY_FILE).write_text("{}")
    assert main(["simulate", "--resume", str(fresh)]) == 2
    assert "already finished" in capsys.readouterr().err
    assert main(["simulate", "--resume", str(fresh), "--set", "epsilon=2"]) == 2
    assert "drop --config, --set and --out" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "message"), [("1,x", "Found 'x'"), ("1,1", "distinct"), ("0,1", "Found '0'"), ("-1", "Found '-1'")]
)
def test_sweep_refuses_bad_epsilon_lists_before_writing(tmp_path, capsys, text, message):
    out = tmp_path / "sweep"
    assert main(["sweep", "--epsilons", text, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_report_needs_a_run_directory(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "report needs a run directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2  # a folder without a run: one line naming the file
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and CONFIG_FILE in err


@pytest.mark.integration
def test_simulation_engine_smoke_run_writes_a_complete_run_directory(tmp_path, data_dir):
    out = tmp_path / "run"
    proc = _dppt(*smoke_args(out, data_dir))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert missing_run_files(out) == []
    # progress shows phase, round, ε spent and accuracy
    assert "[search] round   2/2" in proc.stdout and "ε record max 2/2" in proc.stdout
    assert "[train dp_ticket        ] round   1/1  accuracy" in proc.stdout
    from kernels import LayerPolicy, Ticket
    from simulations.report import privacy_totals

    ticket = Ticket.load(out / TICKET_FILE)
    summary = json.loads((out / SUMMARY_FILE).read_text())
    from federation.config import Config

    assert summary["sparsity"]["conv"] == pytest.approx(Config().sparsity, abs=0.01)  # the default target
    assert summary["sparsity"]["paths"] == ticket.kernel_paths() > 0  # connected (issue 12)
    for layer in ticket.layers.values():
        if layer.policy is LayerPolicy.PATTERN:
            kept = layer.mask().reshape(-1, 9)
            library = layer.library.reshape(-1, 9)
            connected = kept[kept.any(dim=1)]
            assert bool((connected[:, None, :] == library[None]).all(-1).any(-1).all())
    # every ε figure of the summary and the report is the ledger's sum
    per_client = ledger_epsilon_per_client(out)
    assert sorted(per_client) == ["partition-0", "partition-1", "partition-2"]
    totals = privacy_totals(out)
    assert totals.record_epsilon_max == pytest.approx(max(per_client.values()), rel=1e-12)
    assert summary["epsilon"]["record"]["max"] == totals.record_epsilon_max
    assert summary["epsilon"]["record"]["mean"] == pytest.approx(totals.record_epsilon_mean, rel=1e-12)
    report = (out / MARKDOWN_FILE).read_text()
    # the budget table row: unit | budget | spent (the ledger's largest Σε) | remaining
    assert f"| record (per client, largest Σε) | 2 | {totals.record_epsilon_max:.6g} | 0 |" in report
    # the report opens with the guarantee, then the overview of accuracy, rounds to accuracy, sparsity and ε
    assert report.startswith(summary["guarantee"]) and report.index("## At a glance") < report.index("## 1. Run")
    assert summary["rounds-to-accuracy"]["variants"]["dense"]["rounds-evaluated"] == 1
    assert 0 < summary["sparsity"]["conv-macs"]["kept"] < summary["sparsity"]["conv-macs"]["dense"]
    # `dppt report` re-renders the same report from the run directory alone
    first = report
    (out / MARKDOWN_FILE).unlink()
    again = _dppt("report", str(out))
    assert again.returncode == 0, again.stderr
    assert (out / MARKDOWN_FILE).read_text() == first


def test_a_dp_sgd_smoke_run_on_the_simulation_engine_charges_every_training_reply(tmp_path, data_dir):
    """train-privacy=dp-sgd on Ray: Opacus runs in the actors, every reply is charged, RDP stays in budget."""
    from federation.layout import PHASE_TRAIN, TRAIN_LEDGER_FILE, VARIANTS
    from privacy import DP_SGD, Ledger

    out = tmp_path / "run"
    proc = _dppt(*smoke_args(out, data_dir, "train-privacy=dp-sgd", "train-epsilon=4"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    events = Ledger(out / TRAIN_LEDGER_FILE).events
    assert {(event.phase, event.mechanism) for event in events} == {(PHASE_TRAIN, DP_SGD)}
    assert len(events) == 3 * len(VARIANTS)  # 3 clients x 1 round x every model
    train = json.loads((out / SUMMARY_FILE).read_text())["train-epsilon"]
    assert 3.9 < train["rdp"]["record-max"] <= 4.0 < train["record"]["max"]  # RDP exact, basic Σ looser
    assert "record-level DP-SGD" in proc.stdout


def test_too_few_clients_able_to_vote_exits_2_before_writing(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    code = main(["simulate", "--out", str(out), "--data-dir", str(data_dir), "--set", "max-examples-per-client=100",
                 "--set", "score-examples=101"])
    assert code == 2 and "score-examples must be at most the examples of" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.integration
def test_sweep_writes_a_table_and_a_plot_of_accuracy_against_epsilon(tmp_path, data_dir):
    out = tmp_path / "sweep"
    proc = _dppt(
        "sweep", "--epsilons", "1,inf", "--out", str(out), "--data-dir", str(data_dir),
        "--set", "num-clients=2", "--set", "search-rounds=1", "--set", "hold-rounds=0", "--set", "train-rounds=1",
        "--set", "max-examples-per-client=200", "--set", "score-examples=100", "--set", "max-test-examples=500",
        "--set", "partition=iid",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert len(rows) == 2
    assert (out / "sweep.md").is_file() and (out / "plots" / "sweep_accuracy.png").is_file()
    finite = json.loads((out / "epsilon-1" / SUMMARY_FILE).read_text())
    reference = json.loads((out / "epsilon-inf" / SUMMARY_FILE).read_text())
    # the references are trained once, by the ε = inf run; the ε = 1 run spends exactly its budget
    assert finite["accuracy"]["dense"] is None and reference["accuracy"]["dense"] is not None
    assert finite["epsilon"]["record"]["max"] == pytest.approx(1.0)


def test_the_printed_summary_states_the_guarantee_before_any_figure(capsys):
    from simulations.cli import print_summary

    print_summary({"guarantee": "NOT PRIVATE: noise-seed=2 makes every noise draw reproducible.",
                   "accuracy": {"dp_ticket": 0.5}, "epsilon": {"record": {"max": 1.0}}})
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert lines[1].startswith("NOT PRIVATE: noise-seed=2") and lines[2].startswith("accuracy dp_ticket")
