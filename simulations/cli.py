"""The ``dppt`` command line.

Exit codes: 0 success; 1 the run failed while running; 2 bad input (config, files, data), caught
before anything was written.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input: one line, exit code 2."""


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE.toml", help="TOML file of config keys (see the README's config reference)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                   help="override one config key (repeatable), e.g. --set num-clients=20")
    p.add_argument("--data-dir", metavar="DIR", help="dataset root (default: $DPPT_DATA, else ~/.cache/dppt/data)")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory to create (default: runs/<dataset>-<model>-<hash>-<time>)")
    p.add_argument("--verbose", action="store_true", help="show Flower's and Ray's own logs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dppt",
        description="Federated search for differentially private pattern tickets on Flower.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sim = sub.add_parser(
        "simulate",
        help="run a local multi-client simulation (dense FedAvg baseline) on Flower's Simulation Engine",
        description="Run a local multi-client simulation on Flower's Simulation Engine (Ray) and write a run directory.",
    )
    _add_config_args(sim)
    cfg = sub.add_parser("config", help="print the resolved config (defaults + file + overrides) and exit",
                         description="Validate and print the resolved config as JSON; writes nothing.")
    _add_config_args(cfg)
    return parser


def resolve_config(args: argparse.Namespace) -> Any:
    from federation.config import Config, check_model_name

    config = Config()
    if args.config:
        config = Config.from_toml(args.config, base=config)
    config = Config.from_overrides(list(args.overrides), base=config)
    if args.data_dir:
        config = config.replace(data_dir=str(args.data_dir))
    check_model_name(config)
    return config


def preflight(config: Any) -> None:
    """Checks that need the data: fail with exit 2 before the run directory is created."""
    from federation.data import load_tensors

    _, labels = load_tensors(config.dataset, data_dir=config.data_dir or None, train=True)
    load_tensors(config.dataset, data_dir=config.data_dir or None, train=False)
    if config.num_clients > labels.shape[0]:
        raise UsageError(
            f"num-clients must be at most the number of training examples ({labels.shape[0]}). Found {config.num_clients}."
        )
    from federation.client_data import partition_spec
    from federation.partitions import partition_indices

    parts = partition_indices(labels.numpy(), partition_spec(config))
    empty = [i for i, p in enumerate(parts) if p.size == 0]
    if empty:
        raise UsageError(
            f"partition gives no examples to client(s) {empty[:5]}: raise alpha, lower num-clients or use"
            " partition=iid."
        )


def default_run_dir(config: Any) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(config.out_dir) / f"{config.dataset}-{config.model}-{config.run_hash()}-{stamp}"


def print_summary(summary: dict[str, Any]) -> None:
    width = max(len(k) for k in summary)
    print("\n" + "-" * (width + 30))
    for key, value in summary.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")
    print("-" * (width + 30), flush=True)


def cmd_simulate(args: argparse.Namespace) -> int:
    config = resolve_config(args)
    preflight(config)
    from federation.client_app import app as client_app
    from federation.rundir import SUMMARY_FILE, RunDirectory
    from federation.server_app import build_server_app
    from simulations.engine import run_on_simulation_engine

    run_dir = RunDirectory.create(Path(args.out) if args.out else default_run_dir(config))
    run_dir.write_config(config.to_dict())
    print(f"dppt: run directory {run_dir.path}", flush=True)
    try:
        run_on_simulation_engine(build_server_app(config, run_dir), client_app, config, verbose=args.verbose)
    except Exception as err:  # noqa: BLE001 - reported in one line; files written so far are kept
        print(f"dppt: the run failed: {type(err).__name__}: {err}. Files written so far are in {run_dir.path}.",
              file=sys.stderr)
        return EXIT_FAILED
    summary_path = run_dir.file(SUMMARY_FILE)
    if not summary_path.exists():
        print(f"dppt: the run did not complete; see the log above and {run_dir.path}", file=sys.stderr)
        return EXIT_FAILED
    import json

    print_summary(json.loads(summary_path.read_text()))
    return EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    import json

    print(json.dumps(resolve_config(args).to_dict(), indent=2))
    return EXIT_OK


COMMANDS = {"simulate": cmd_simulate, "config": cmd_config}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    from federation.config import ConfigError
    from federation.data import DataError
    from federation.partitions import PartitionError
    from federation.rundir import RunDirError

    try:
        return COMMANDS[args.command](args)
    except (ConfigError, DataError, PartitionError, RunDirError, UsageError) as err:
        print(f"dppt: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dppt: interrupted; files written so far are kept.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
