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
        help="run the whole DP pattern-ticket search on Flower's Simulation Engine (search, training, report)",
        description="Run the federated DP pattern-ticket search, ticket training and the privacy-budget report on"
        " Flower's Simulation Engine (Ray) and write a run directory.",
    )
    _add_config_args(sim)
    sim.add_argument("--resume", metavar="RUN_DIR",
                     help="continue an interrupted run from its checkpoint (its config.json is used; no --set)")
    rep = sub.add_parser("report", help="re-render report.md, report.html and plots/ from a run directory alone",
                         description="Re-render the privacy-budget report of a run from its directory alone.")
    rep.add_argument("run_dir", metavar="RUN_DIR")
    sweep = sub.add_parser(
        "sweep", help="run the search over several ε values and write a table and a plot of accuracy against ε",
        description="One run per ε (record-level budget per client) plus the references; writes sweep.md,"
        " sweep.json and plots/sweep_accuracy.png under --out.",
    )
    _add_config_args(sweep)
    sweep.add_argument("--epsilons", metavar="E1,E2,...", default="0.5,1,2,4,8,inf",
                       help="comma-separated ε values; 'inf' is the non-private pipeline (default: %(default)s)")
    certs = sub.add_parser(
        "certs", help="make a throwaway CA and a server certificate for a test deployment (TLS)",
        description="Write ca.crt, ca.key, server.pem and server.key for the given hosts (tests and demos only;"
        " production uses your organisation's CA, see docs/deployment.md).",
    )
    certs.add_argument("--out", required=True, metavar="DIR")
    certs.add_argument("--host", action="append", default=[], metavar="NAME_OR_IP",
                       help="host name or IP address of the SuperLink (repeatable; default localhost and 127.0.0.1)")
    key = sub.add_parser("node-key", help="make a SuperNode key pair for node authentication",
                         description="Write PATH (private, mode 600) and PATH.pub (register it with"
                         " `flwr supernode register PATH.pub <connection>`).")
    key.add_argument("path", metavar="PATH")
    demo = sub.add_parser(
        "local-deployment", help="start a SuperLink and N SuperNodes on this machine for a demo (Ctrl-C stops them)",
        description="Start a real Flower deployment on localhost (a SuperLink with a state database, N SuperNodes each"
        " with its partition of the dataset, TLS by default) and print the `flwr run` command that runs dppt on it."
        " Every process is stopped on Ctrl-C.",
    )
    demo.add_argument("--nodes", type=int, default=3, help="number of SuperNodes (default %(default)s)")
    demo.add_argument("--work", required=True, metavar="DIR",
                      help="folder for certificates, keys, logs, the state database and runs/")
    demo.add_argument("--data-dir", metavar="DIR", help="dataset root of the nodes and the server's test set")
    demo.add_argument("--insecure", action="store_true", help="no TLS (a trusted machine only; warns)")
    demo.add_argument("--authenticate", action="store_true",
                      help="SuperNode authentication: a registered key per node (needs TLS)")
    check = sub.add_parser(
        "check-node", help="check a SuperNode's --node-config on the device before it joins (id, data, examples)",
        description="Load this node's data exactly as the ClientApp will (partition-id/num-partitions/data-dir, or"
        " image-dir/client-id) and say whether it can take part in a run of the given config. Exit 0 when ready,"
        " 1 when not (the reason is printed), 2 on a bad node config.",
    )
    check.add_argument("--node-config", required=True, metavar="TEXT",
                       help="the SuperNode's --node-config text, e.g. 'partition-id=0 num-partitions=3 data-dir=\"/data\"'")
    _add_config_args(check)
    cfg = sub.add_parser("config", help="print the resolved config (defaults + file + overrides) and exit",
                         description="Validate and print the resolved config as JSON; writes nothing.")
    _add_config_args(cfg)
    export = sub.add_parser(
        "export", help="write a run's trained ticket as a compact dppt-edge file (kept weights only) and check it",
        description="Write only the kept weights of RUN_DIR's ticket (pattern entries per kept kernel, kernel"
        " indices, the library; channels removed where exact) as a safetensors dppt-edge file, read it back and"
        " compare its outputs with the masked model's on the test set.",
    )
    export.add_argument("run_dir", metavar="RUN_DIR")
    export.add_argument("--out", metavar="FILE", help="output file (default: RUN_DIR/model.dppt-edge.safetensors)")
    export.add_argument("--check-examples", type=int, default=256, metavar="N",
                        help="test examples the loaded file is compared on (default 256)")
    return parser


def resolve_config(args: argparse.Namespace) -> Any:
    from federation.config import Config, check_names

    config = Config()
    if args.config:
        config = Config.from_toml(args.config, base=config)
    config = Config.from_overrides(list(args.overrides), base=config)
    if args.data_dir:
        config = config.replace(data_dir=str(args.data_dir))
    check_names(config)
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
    from federation.config import reads_client_data

    if not reads_client_data(config):
        return  # data-free scores: every client can vote
    sizes = [min(p.size, config.max_examples_per_client or p.size) for p in parts]
    short = sum(1 for size in sizes if size < config.score_examples)
    if len(sizes) - short < config.min_replies:
        raise UsageError(
            f"score-examples must be at most the examples of at least min-replies = {config.min_replies} clients"
            f" (only {len(sizes) - short} have {config.score_examples}). Lower score-examples or min-replies."
        )
    if short:
        print(f"dppt: warning: {short} of {len(sizes)} clients hold fewer than score-examples ="
              f" {config.score_examples} examples; they abstain from the search (and are not charged).",
              file=sys.stderr, flush=True)


def join_cluster(config: Any) -> Any:
    """The Ray cluster at ``ray-address`` (``None`` when empty), probed before a run directory is written.

    A bad address is a config error (exit 2, one line naming the key): nothing is written.
    """
    if not config.ray_address:
        return None
    from simulations.engine import join_ray_cluster

    cluster = join_ray_cluster(config.ray_address)
    print(f"dppt: joining the Ray cluster at {cluster.address}: {cluster.nodes} nodes, {cluster.cpus:g} CPUs"
          f" (Ray {cluster.ray_version})", flush=True)
    return cluster


def default_run_dir(config: Any) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path(config.out_dir) / f"{config.dataset}-{config.model}-{config.run_hash()}-{stamp}"


def print_summary(summary: dict[str, Any]) -> None:
    rows: list[tuple[str, str]] = []
    for variant, value in summary.get("accuracy", {}).items():
        rows.append((f"accuracy {variant}", "n/a" if value is None else f"{value:.4f}"))
    sparsity = summary.get("sparsity", {}).get("conv")
    rows.append(("conv sparsity", "n/a" if sparsity is None else f"{sparsity:.4f}"))
    eps = summary.get("epsilon", {})
    record, client = eps.get("record", {}), eps.get("client", {})
    rows.append(("ε record (max / mean)", f"{record.get('max')} / {record.get('mean')} of {record.get('budget')}"))
    if eps.get("rdp"):  # budget-accountant=rdp: the figure the budget was enforced on
        rows.append(("ε record RDP (max)", f"{eps['rdp'].get('record-max')} at δ {eps['rdp'].get('delta')} of {record.get('budget')}"))
    rows.append(("ε client (total)", f"{client.get('total')} of {client.get('budget')}"))
    search = summary.get("search", {})
    rows.append(("search rounds", f"{search.get('rounds-completed')}/{search.get('rounds-planned')}"))
    rows.append(("stop reason", str(search.get("stop-reason"))))
    rows.append(("wall time", f"{summary.get('wall-time-s')} s"))
    rows.append(("run directory", str(summary.get("run-dir"))))
    width = max(len(k) for k, _ in rows)
    print("\n" + "-" * (width + 40))
    if summary.get("guarantee"):  # what is private and what is not, before any figure (federation.statement)
        print(summary["guarantee"])
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    print("-" * (width + 40), flush=True)


def _run(config: Any, run_dir: Any, *, cluster: Any, verbose: bool) -> int:
    """Run the pipeline on the Simulation Engine into ``run_dir``, then render the report."""
    from federation.client_app import build_client_app
    from federation.device_policy import simulation_node_config
    from federation.layout import SUMMARY_FILE
    from federation.rundir import read_json
    from federation.server_app import build_server_app
    from simulations.engine import run_on_simulation_engine
    from simulations.report import render_report

    print(f"dppt: run directory {run_dir.path}", flush=True)
    try:
        # Every virtual node's policy is the one the run config implies (DESIGN.md 5.4b).
        client_app = build_client_app(simulation_node_config(config))
        run_on_simulation_engine(build_server_app(config, run_dir), client_app, config, cluster=cluster,
                                 verbose=verbose)
    except Exception as err:  # noqa: BLE001 - reported in one line; files written so far are kept
        print(f"dppt: the run failed: {type(err).__name__}: {err}. Files written so far are in {run_dir.path};"
              f" continue it with: dppt simulate --resume {run_dir.path}", file=sys.stderr)
        return EXIT_FAILED
    if not run_dir.file(SUMMARY_FILE).exists():
        print(f"dppt: the run did not complete; see the log above. Continue it with: dppt simulate --resume"
              f" {run_dir.path}", file=sys.stderr)
        return EXIT_FAILED
    paths = render_report(run_dir.path)
    print_summary(read_json(run_dir.file(SUMMARY_FILE)))
    print(f"dppt: report {paths.markdown} and {paths.html}", flush=True)
    return EXIT_OK


def cmd_simulate(args: argparse.Namespace) -> int:
    from federation.layout import CONFIG_FILE
    from federation.rundir import RunDirectory

    if args.resume:
        if args.overrides or args.config or args.out:
            raise UsageError(f"--resume takes the run's own {CONFIG_FILE}: drop --config, --set and --out.")
        from federation.server_app import resume_target

        run_dir, config = resume_target(Path(args.resume), data_dir=args.data_dir)
        preflight(config)
        return _run(config, run_dir, cluster=join_cluster(config), verbose=args.verbose)
    config = resolve_config(args)
    preflight(config)
    cluster = join_cluster(config)
    run_dir = RunDirectory.create(Path(args.out) if args.out else default_run_dir(config))
    run_dir.write_config(config.to_dict())
    return _run(config, run_dir, cluster=cluster, verbose=args.verbose)


def cmd_report(args: argparse.Namespace) -> int:
    from simulations.report import render_report
    from simulations.report.outputs import PLOTS_DIR

    path = Path(args.run_dir)
    if not path.is_dir():
        raise UsageError(f"report needs a run directory. Found no folder '{path}'.")
    paths = render_report(path)
    print(f"dppt: wrote {paths.markdown}, {paths.html} and the plots in {path / PLOTS_DIR}")
    return EXIT_OK


def parse_epsilons(text: str) -> list[float]:
    """``"0.5,1,inf"`` -> ``[0.5, 1.0, inf]``; each value > 0, no duplicates."""
    values: list[float] = []
    for part in text.split(","):
        try:
            value = float(part.strip())
        except ValueError as err:
            raise UsageError(f"--epsilons must be comma-separated numbers or inf. Found '{part.strip()}'.") from err
        if not value > 0 or value in values:
            raise UsageError(f"--epsilons must be distinct numbers > 0 (or inf). Found '{part.strip()}'.")
        values.append(value)
    return values


def cmd_sweep(args: argparse.Namespace) -> int:
    import math

    from federation.layout import SUMMARY_FILE
    from federation.rundir import RunDirectory, read_json
    from simulations.report import render_sweep

    base = resolve_config(args)
    epsilons = parse_epsilons(args.epsilons)
    preflight(base)
    cluster = join_cluster(base)
    out = Path(args.out) if args.out else Path(base.out_dir) / f"sweep-{base.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    RunDirectory.create(out)  # refuses a folder that holds an earlier run
    # The references (dense, random ticket, non-private ticket) are trained once: by the ε = inf run
    # if there is one, else by the first run.
    reference_at = epsilons.index(math.inf) if math.inf in epsilons else 0
    summaries = []
    for i, epsilon in enumerate(epsilons):
        label = "inf" if math.isinf(epsilon) else f"{epsilon:g}"
        config = base.replace(
            epsilon=epsilon, baselines=i == reference_at,
            reference_search=i == reference_at and not math.isinf(epsilon),
        )
        run_dir = RunDirectory.create(out / f"epsilon-{label}")
        run_dir.write_config(config.to_dict())
        print(f"dppt sweep: ε = {label} ({i + 1}/{len(epsilons)})", flush=True)
        code = _run(config, run_dir, cluster=cluster, verbose=args.verbose)
        if code != EXIT_OK:
            return code
        summary = read_json(run_dir.file(SUMMARY_FILE))
        if math.isinf(epsilon):  # the ε = inf run is itself the non-private ticket
            summary["accuracy"]["nonprivate_ticket"] = summary["accuracy"]["dp_ticket"]
        summaries.append({**summary, "sweep-epsilon": epsilon, "run-dir": str(run_dir.path)})
    paths = render_sweep(summaries, out)
    print(f"dppt sweep: wrote {paths.markdown} and {paths.plot}", flush=True)
    return EXIT_OK


def cmd_certs(args: argparse.Namespace) -> int:
    from simulations.deploy import make_test_certificates

    hosts = args.host or ["localhost", "127.0.0.1"]
    try:
        out = make_test_certificates(args.out, hosts=hosts)
    except (FileExistsError, ValueError) as err:
        raise UsageError(str(err)) from err
    print(f"dppt: wrote {out}/ca.crt, ca.key, server.pem, server.key for {', '.join(hosts)} (test CA: keep ca.key private)")
    return EXIT_OK


def cmd_node_key(args: argparse.Namespace) -> int:
    from simulations.deploy import make_node_key

    try:
        public = make_node_key(args.path)
    except FileExistsError as err:
        raise UsageError(str(err)) from err
    print(f"dppt: wrote {args.path} and {public}; register it with: flwr supernode register {public} <connection>")
    return EXIT_OK


DEMO_RUN_CONFIG = "search-rounds=3 hold-rounds=1 train-rounds=2 max-examples-per-client=500 score-examples=256"


def cmd_local_deployment(args: argparse.Namespace) -> int:
    import warnings

    from federation.data import resolve_data_dir
    from simulations.deploy import DeploymentError, LocalDeployment
    from simulations.deploy.local import CONNECTION

    if args.nodes < 1:
        raise UsageError(f"--nodes must be at least 1. Found {args.nodes}.")
    if args.authenticate and args.insecure:
        raise UsageError("--authenticate needs TLS: drop --insecure (Flower refuses node authentication without TLS).")
    work = Path(args.work).resolve()
    data = resolve_data_dir(args.data_dir).resolve()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deployment = LocalDeployment(work, data_dir=data, num_partitions=args.nodes, secure=not args.insecure,
                                     authenticate=args.authenticate)
    if args.insecure:
        print("dppt: warning: no TLS; use this only on a trusted machine.", file=sys.stderr)
    try:
        with deployment:
            deployment.start()
            for pid in range(args.nodes):
                key = deployment.new_key(f"node{pid}") if args.authenticate else None
                deployment.start_node(pid, key=key)
            deployment.wait_for_nodes(args.nodes)
            print(f"dppt: SuperLink on 127.0.0.1:{deployment.port} with {args.nodes} SuperNodes online"
                  f" (logs in {deployment.logs}). Run dppt on it from this repository's root, in another shell"
                  f" (a short demo: {DEMO_RUN_CONFIG}; drop those settings for the full default job):\n"
                  f"  FLWR_HOME={deployment.cli_home} {deployment.bin / 'flwr'} run . {CONNECTION} --run-config"
                  f" '{DEMO_RUN_CONFIG} num-clients={args.nodes} data-dir=\"{data}\" out-dir=\"{work / 'runs'}\"'\n"
                  f"dppt: Ctrl-C stops every process.", flush=True)
            while True:
                processes = {"superlink": deployment.link, **deployment.nodes}
                dead = [name for name, process in processes.items() if process is not None and process.poll() is not None]
                if dead:
                    print(f"dppt: {', '.join(dead)} exited; see {deployment.logs}. Stopping.", file=sys.stderr)
                    return EXIT_FAILED
                time.sleep(1)
    except KeyboardInterrupt:
        print("dppt: stopped the SuperLink and every SuperNode.", flush=True)
        return EXIT_OK
    except DeploymentError as err:
        print(f"dppt: error: {err}", file=sys.stderr)
        return EXIT_FAILED


def cmd_check_node(args: argparse.Namespace) -> int:
    from flwr.common.config import parse_config_args

    from federation.node_check import check_node, format_node_check

    try:
        node_config = parse_config_args([args.node_config])
    except Exception as err:  # noqa: BLE001 - Flower raises ValueError or click's exception (as flower-supernode would)
        raise UsageError(f"--node-config must be space-separated key=value pairs with strings in double quotes, as"
                         f" flower-supernode reads it (e.g. image-dir=\"/data/mine\"). Found {args.node_config!r}.") from err
    if not node_config:
        raise UsageError(f"--node-config must hold key=value pairs. Found {args.node_config!r}.")
    report = check_node(node_config, resolve_config(args))  # a DeviceLogError is bad input: exit 2 (main)
    print(format_node_check(report))
    return EXIT_OK if report.ready else EXIT_FAILED


def cmd_config(args: argparse.Namespace) -> int:
    import json

    print(json.dumps(resolve_config(args).to_dict(), indent=2))
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from simulations.edge_export import ExportError, export_run

    try:
        summary = export_run(args.run_dir, out=args.out, check_examples=args.check_examples)
    except ExportError as err:
        raise UsageError(str(err)) from err
    kept = sum(k for k, _ in summary.channels.values())
    total = sum(t for _, t in summary.channels.values())
    print(f"dppt: wrote {summary.path} ({summary.size_bytes} bytes; weights.safetensors {summary.dense_bytes} bytes,"
          f" {summary.dense_bytes / summary.size_bytes:.1f}x larger); {kept} of {total} output channels kept;"
          f" outputs equal the masked model's to {summary.max_difference:.2g} on {summary.checked_on}")
    return EXIT_OK


COMMANDS = {
    "simulate": cmd_simulate, "report": cmd_report, "sweep": cmd_sweep, "certs": cmd_certs, "node-key": cmd_node_key,
    "local-deployment": cmd_local_deployment, "check-node": cmd_check_node, "config": cmd_config,
    "export": cmd_export,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    from federation.errors import FederationError
    from simulations.report import ReportError

    try:
        return COMMANDS[args.command](args)
    except (FederationError, ReportError, UsageError) as err:
        print(f"dppt: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dppt: interrupted; files written so far are kept.", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
