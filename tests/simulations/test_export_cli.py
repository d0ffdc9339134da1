"""`dppt export`: a run directory's ticket as a dppt-edge file, checked; bad run directories exit 2 in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from federation.config import Config
from federation.model_io import build_model, plain_weights, ticket_policies
from federation.pipeline import TICKET_FILE
from federation.rundir import WEIGHTS_FILE, RunDirectory
from kernels import enumerate_candidates, random_ticket, read_export_file
from models import apply_ticket, prunable_layers
from simulations.cli import main
from simulations.edge_export import EDGE_FILE


def _run_dir(path: Path, *, model: str = "conv4", data_dir: Path | None = None) -> tuple[Path, torch.nn.Module]:
    config = Config().replace(model=model, data_dir=str(data_dir or path / "no-data"))
    net = build_model(config, seed=0)
    shapes = {name: tuple(m.weight.shape) for name, m in prunable_layers(net).items()}
    policies = ticket_policies(net)
    density = {name: 0.05 for name, policy in policies.items() if policy.value != "dense"}
    ticket = random_ticket(shapes, policies=policies, density=density, library=enumerate_candidates(4)[:8],
                           generator=torch.Generator().manual_seed(0))
    apply_ticket(net, ticket)
    run = RunDirectory.create(path)
    run.write_config(config.to_dict())
    ticket.save(run.file(TICKET_FILE))
    run.save_weights(plain_weights(net))
    return path, net.eval()


def test_export_writes_a_smaller_file_with_the_models_outputs(tmp_path, capsys, data_dir):
    run, net = _run_dir(tmp_path / "run", data_dir=data_dir)
    assert main(["export", str(run), "--check-examples", "32"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {run / EDGE_FILE}" in out and "on 32 mnist test examples" in out
    # conv4 keeps its linear layers dense (other-layers = dense): they dominate what is left
    assert (run / EDGE_FILE).stat().st_size * 1.5 < (run / WEIGHTS_FILE).stat().st_size
    x = torch.randn(4, *net.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(read_export_file(run / EDGE_FILE)(x), net(x), atol=1e-5, rtol=1e-5)


def test_export_to_another_file_on_random_inputs_without_data(tmp_path, capsys, monkeypatch):
    import federation.data

    def no_data(*args, **kwargs):
        raise federation.data.DataError("no data here")

    monkeypatch.setattr(federation.data, "load_tensors", no_data)
    run, _ = _run_dir(tmp_path / "run")
    assert main(["export", str(run), "--out", str(tmp_path / "m.edge"), "--check-examples", "4"]) == 0
    assert "4 random inputs (no test data found)" in capsys.readouterr().out
    assert (tmp_path / "m.edge").is_file() and not (run / EDGE_FILE).exists()


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_a_ticket_of_another_model_is_refused(tmp_path, capsys):
    run, _ = _run_dir(tmp_path / "run")
    other, _ = _run_dir(tmp_path / "other", model="resnet20")
    (run / TICKET_FILE).write_bytes((other / TICKET_FILE).read_bytes())
    assert main(["export", str(run)]) == 2
    assert "must be in the ticket. Found them missing." in _error(capsys)
    assert not (run / EDGE_FILE).exists()


def test_a_damaged_ticket_or_missing_weights_is_refused(tmp_path, capsys):
    run, _ = _run_dir(tmp_path / "run")
    data = bytearray((run / TICKET_FILE).read_bytes())
    data[-2] ^= 0xFF
    (run / TICKET_FILE).write_bytes(bytes(data))
    assert main(["export", str(run)]) == 2
    assert "the file is damaged" in _error(capsys)
    (run / WEIGHTS_FILE).unlink()
    assert main(["export", str(run)]) == 2
    assert f"'{run / WEIGHTS_FILE}' does not exist" in _error(capsys)
    assert main(["export", str(tmp_path / "nowhere")]) == 2
    assert "export needs a run directory" in _error(capsys)


@pytest.mark.parametrize("sub", [["export"]])
def test_help(sub, capsys):
    with pytest.raises(SystemExit) as info:
        main([*sub, "--help"])
    assert info.value.code == 0
    assert "dppt-edge" in capsys.readouterr().out
