import tomllib
from pathlib import Path

import pytest

from federation.config import Config, ConfigError, check_names, reads_client_data

REPO = Path(__file__).resolve().parents[2]


def test_defaults_are_the_main_job():
    c = Config()
    assert (c.dataset, c.model, c.num_clients, c.partition, c.alpha) == ("mnist", "conv4", 10, "dirichlet", 0.5)


def test_pyproject_run_config_matches_config_defaults():
    """`flwr run .` reads [tool.flwr.app.config]: it must hold every key, with Config's defaults except
    the documented deployment defaults (DEPLOYMENT_DEFAULTS), and nothing else may differ."""
    from federation.server_app import DEPLOYMENT_DEFAULTS, DEPLOYMENT_KEYS

    table = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert set(table) == set(Config.keys()) | set(DEPLOYMENT_KEYS)
    assert {key: table[key] for key in DEPLOYMENT_KEYS} == DEPLOYMENT_KEYS
    assert {key: table[key] for key in DEPLOYMENT_DEFAULTS} == DEPLOYMENT_DEFAULTS
    assert set(DEPLOYMENT_DEFAULTS) <= set(Config.keys()) and not set(DEPLOYMENT_DEFAULTS) & set(DEPLOYMENT_KEYS)
    deployed = Config.from_mapping({k: v for k, v in table.items() if k not in DEPLOYMENT_KEYS})
    assert deployed == Config.from_mapping(DEPLOYMENT_DEFAULTS)
    assert deployed.non_default() == DEPLOYMENT_DEFAULTS  # each one really differs from dppt simulate's


def test_reference_search_is_off_under_flwr_run_and_on_under_dppt_simulate():
    from federation.server_app import config_from_run_config

    table = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    assert Config().reference_search is True  # dppt simulate
    assert config_from_run_config(table).reference_search is False  # flwr run, the FAB's run config
    assert config_from_run_config({}).reference_search is False  # a run config without the key
    assert config_from_run_config({"reference-search": True}).reference_search is True  # --run-config turns it on


def test_flwr_run_refuses_a_noise_seed_in_one_line_before_a_run_directory_exists(tmp_path):
    from federation.server_app import _from_run_config, config_from_run_config

    out = tmp_path / "runs"
    with pytest.raises(ConfigError) as info:
        _from_run_config({"noise-seed": 0, "out-dir": str(out)}, progress=lambda line: None)
    message = str(info.value)
    assert "\n" not in message and message.startswith("noise-seed must be -1")
    assert "simulation-only (dppt simulate)" in message and message.endswith("Found 0.")
    assert not out.exists()
    assert config_from_run_config({"noise-seed": -1}).noise_seed == -1
    assert Config.from_mapping({"noise-seed": 3}).noise_seed == 3  # dppt simulate keeps accepting it


def test_overrides_coerce_types():
    c = Config.from_overrides(["num-clients=20", "alpha=0.1", "lr=1e-2", "dataset=fashion-mnist"])
    assert c.num_clients == 20 and c.alpha == pytest.approx(0.1) and c.lr == pytest.approx(0.01)
    assert c.dataset == "fashion-mnist"


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["num-clientz=3"], "Unknown config key 'num-clientz'"),
        (["alpha=0"], "alpha must be a finite number > 0. Found 0.0."),
        (["alpha=-1"], "alpha must be a finite number > 0"),
        (["dataset=imagenet"], "dataset must be one of mnist, fashion-mnist, cifar10. Found 'imagenet'."),
        (["partition=weird"], "partition must be one of"),
        (["num-clients=0"], "num-clients must be at least 1"),
        (["num-clients=two"], "num-clients must be a int. Found 'two'."),
        (["train-rounds=1.5"], "train-rounds must be a int"),
        (["score-train-epochs=1"], "score-train-epochs must be 0 unless unit=client"),
        (["min-replies=11"], "min-replies must be <= the 10 clients sampled per round"),
        (["sparsity=0.5"], "sparsity must be in [1 - m/9, 1)"),
        (["hold-rounds=5"], "hold-rounds must be in [0, search-rounds = 5)"),
        (["epsilon=nan"], "epsilon must be a number > 0"),
        (["unit=server"], "unit must be one of record, client, both"),
        (["fraction-train=0"], "fraction-train must be in (0, 1]"),
        (["lr=nan"], "lr must be a finite number > 0"),
        (["grad-clip-norm=-1"], "grad-clip-norm must be 0 (off) or a finite number > 0. Found -1.0."),
        (["grad-clip-norm=inf"], "grad-clip-norm must be 0 (off) or a finite number > 0"),
        (["batch-size=0"], "batch-size must be at least 1"),
        (["max-examples-per-client=-1"], "max-examples-per-client must be >= 0"),
        (["delta-target=0"], "delta-target must be in (0, 1). Found 0.0."),
        (["delta-target=1"], "delta-target must be in (0, 1)"),
        (["delta-target=nan"], "delta-target must be in (0, 1)"),
        (["novalue"], "--set needs KEY=VALUE. Found 'novalue'."),
    ],
)
def test_bad_values_have_one_line_messages(pairs, message):
    with pytest.raises(ConfigError) as info:
        Config.from_overrides(pairs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_toml_file_and_errors(tmp_path):
    good = tmp_path / "run.toml"
    good.write_text('num-clients = 4\nalpha = 1.0\n')
    assert Config.from_toml(good).num_clients == 4
    nested = tmp_path / "nested.toml"
    nested.write_text('[dppt]\ntrain-rounds = 7\n')
    assert Config.from_toml(nested).train_rounds == 7
    with pytest.raises(ConfigError, match="does not exist"):
        Config.from_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("num-clients = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Config.from_toml(bad)


def test_run_hash_ignores_defaults_and_paths():
    assert Config().run_hash() == Config(data_dir="/x", out_dir="/y").run_hash()
    assert Config().run_hash() != Config(num_clients=11).run_hash()


def test_to_dict_round_trips():
    c = Config(num_clients=3, alpha=2.0, seed=5)
    assert Config.from_mapping(c.to_dict()) == c


def test_check_names_takes_the_registries_names_and_refuses_what_would_be_ignored():
    check_names(Config())  # the defaults pass
    check_names(Config.from_overrides(["clip-mode=clip", "clip-bound=0.5", "patterns=56"]))
    for pairs, message in [
        (["clip-bound=2"], "clip-bound must be 1.0 under clip-mode=normalise"),
        (["patterns=57"], "patterns must be at most the 56 candidate patterns"),
        (["score=grasp"], "score must be one of magnitude, snip, synflow"),
    ]:
        with pytest.raises(ConfigError, match=message):
            check_names(Config.from_overrides(pairs))


def test_data_free_is_the_scorer_registry_s_word():
    from models.scores import names, reads_data

    assert {name: reads_data(name) for name in names()} == {"magnitude": False, "snip": True, "synflow": False}
    assert reads_client_data(Config()) and not reads_client_data(Config.from_overrides(["score=synflow"]))


def test_readme_config_reference_lists_every_key_once():
    import re

    from federation.server_app import DEPLOYMENT_KEYS

    text = (REPO / "README.md").read_text()
    table = text.split("## Config reference", 1)[1].split("\n## ", 1)[0]
    listed = [key for row in table.splitlines() if row.startswith("| `")
              for key in re.findall(r"`([a-z][a-z0-9-]*)`", row.split("|")[1])]
    assert sorted(listed) == sorted([*Config.keys(), *DEPLOYMENT_KEYS])


def test_flwr_run_does_not_resume_a_seeded_run_started_by_dppt_simulate(tmp_path):
    import json

    from federation.layout import CONFIG_FILE, LEDGER_FILE
    from federation.server_app import RESUME_KEY, _from_run_config

    run = tmp_path / "run"
    run.mkdir()
    (run / CONFIG_FILE).write_text(json.dumps(Config(noise_seed=3).to_dict()))
    (run / LEDGER_FILE).write_text("")
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(ConfigError, match="noise-seed must be -1"):
        _from_run_config({RESUME_KEY: str(run)}, progress=lambda line: None)
    assert sorted(p.name for p in run.iterdir()) == before


def test_the_prior_and_the_layer_allocation_are_checked_before_anything_runs():
    from federation.config import check_names

    with pytest.raises(ConfigError, match="prior must be one of magnitude, synflow"):
        check_names(Config(prior="snip"))  # a prior reads no data: snip is not one
    with pytest.raises(ConfigError, match="layer-allocation must be one of uniform, erk"):
        check_names(Config(layer_allocation="even"))
