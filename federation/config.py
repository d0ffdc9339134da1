"""The one typed configuration object of a dppt run.

Built once (from a TOML file, ``--set KEY=VALUE`` overrides, or Flower's ``run_config``), validated
up front, and passed down. Config keys are kebab-case and map one to one onto snake_case fields
(``num-clients`` <-> ``num_clients``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from federation.errors import ConfigError
from federation.layout import VARIANTS
from privacy import ENFORCE_RDP, ENFORCEMENTS, GAUSSIAN_TOPK, GUMBEL_TOPK, LAPLACE_TOPK, NOISE_KINDS, UNIT_CLIENT, UNIT_RECORD

DATASETS = ("mnist", "fashion-mnist", "cifar10")
PARTITIONS = ("iid", "dirichlet", "pathological")
UNIT_BOTH = "both"  # the record unit on the clients and the client unit on the server
UNITS = (UNIT_RECORD, UNIT_CLIENT, UNIT_BOTH)
MECHANISMS = (LAPLACE_TOPK, GUMBEL_TOPK, GAUSSIAN_TOPK)  # the clients' local noisy top-k (privacy owns them)
CENTRAL_NOISES = NOISE_KINDS  # the server's noise on the vote counts (privacy owns them)
NOISE_SEED_KEY: Final = "noise-seed"
RAY_ADDRESS_KEY: Final = "ray-address"
TRAIN_PRIVACY_NONE: Final = "none"
TRAIN_PRIVACY_DP_SGD: Final = "dp-sgd"
TRAIN_PRIVACY_DP_FEDAVG: Final = "dp-fedavg"
TRAIN_PRIVACIES: Final = (TRAIN_PRIVACY_NONE, TRAIN_PRIVACY_DP_SGD, TRAIN_PRIVACY_DP_FEDAVG)
"""``train-privacy``: plain local SGD (ε = inf) or record-level DP-SGD on the device (DESIGN.md 5.8)."""
SERVER_ONLY_KEYS: Final = frozenset({NOISE_SEED_KEY})
"""Config keys that stay on the server: the config a client receives never holds them
(:func:`federation.pipeline.config_record`). DESIGN.md 5.4b: nothing the server sends may lower the
noise, and a seed would (whoever knows it can subtract every draw)."""
# Names owned by the registries of models/ and kernels/ (model, score, clip mode) and the library
# size are checked by `check_names`, lazily: those packages load torch, which `dppt --help` and the
# report do without.



def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True, kw_only=True)
class Config:
    """Every setting of a run. Defaults give the README's main job."""

    dataset: str = field(default="mnist", metadata=_help(f"one of {', '.join(DATASETS)}"))
    model: str = field(default="conv4", metadata=_help("architecture name from the models registry"))
    width: float = field(default=0.0, metadata=_help("model width multiplier; 0 = the model's default"))
    num_clients: int = field(default=10, metadata=_help("number of clients (partitions / SuperNodes)"))
    partition: str = field(default="dirichlet", metadata=_help(f"one of {', '.join(PARTITIONS)}"))
    alpha: float = field(default=0.5, metadata=_help("Dirichlet concentration (partition=dirichlet); smaller = more skew"))
    classes_per_client: int = field(default=2, metadata=_help("labels per client (partition=pathological)"))
    search_rounds: int = field(default=5, metadata=_help("rounds of the DP ticket search (density schedule, then hold)"))
    hold_rounds: int = field(default=2, metadata=_help("last search rounds that hold the target density (< search-rounds)"))
    train_rounds: int = field(default=5, metadata=_help("FedAvg rounds of ticket training (and of the dense reference)"))
    sparsity: float = field(default=0.98, metadata=_help("target weight sparsity of the 3x3 conv (pattern) layers (0.98: where tickets differ; at 0.9 even a random ticket lands within 2 points of the DP one)"))
    epsilon: float = field(default=1.0, metadata=_help("record-level ε budget of each client for the whole search; inf = non-private"))
    unit: str = field(default="record", metadata=_help(f"privacy unit, one of {', '.join(UNITS)}"))
    client_epsilon: float = field(default=1.0, metadata=_help("the server's client-level ε budget for the whole search (unit client or both)"))
    central_noise: str = field(default="discrete-laplace", metadata=_help(f"central noise of the client unit, one of {', '.join(CENTRAL_NOISES)}"))
    score: str = field(default="snip", metadata=_help("mask score, a name of the models.scores registry (snip reads data; magnitude, synflow do not)"))
    mechanism: str = field(default="laplace-topk", metadata=_help(f"clients' local noisy top-k, one of {', '.join(MECHANISMS)} (gaussian-topk: (ε, δ), needs clip-mode=l2; its noise does not grow with k)"))
    delta: float = field(default=1e-5, metadata=_help("record-level δ budget of each client for the whole search (mechanism=gaussian-topk; the Laplace and Gumbel votes have δ = 0)"))
    budget_accountant: str = field(default="basic", metadata=_help(f"what the record-level ε budget is enforced on, one of {', '.join(ENFORCEMENTS)} (rdp: Rényi DP at δ = delta, gaussian-topk only; basic composition is reported either way)"))
    patterns: int = field(default=8, metadata=_help("P: patterns in the library"))
    pattern_entries: int = field(default=4, metadata=_help("m: kept entries of each 3x3 pattern (centre included)"))
    prior: str = field(default="synflow", metadata=_help("data-free score at θ0 that ranks each conv layer's kernels (the free prior, ε = 0): synflow (iterative SynFlow, computed by the server) or magnitude (the energy of the public weights)"))
    layer_allocation: str = field(default="erk", metadata=_help("per-layer density of the 3x3 conv layers: uniform or erk (erk: Erdős–Rényi-Kernel, small layers keep more; the conv layers' mean stays 1 - sparsity)"))
    ticket_init: str = field(default="rescaled", metadata=_help("how a ticket's kept weights start its training: rescaled (each sparse layer's θ0 weights times one factor that gives its output on a Gaussian probe the dense model's scale: a 98%-sparse ticket otherwise starts from vanishing signal) or theta0 (as drawn); data-free, ε = 0"))
    kernel_votes: bool = field(default=False, metadata=_help("also vote each pattern layer's kernel connectivity (else post-processing of public weights)"))
    other_layers: str = field(default="dense", metadata=_help("policy of the layers that are not 3x3 convolutions (linear, other convs): dense, or unstructured (the largest |w| of the public weights at the round's density; ε = 0)"))
    pattern_share: float = field(default=0.5, metadata=_help("with kernel-votes: share of each round's ε spent on the pattern vote (rest split evenly over layers)"))
    score_examples: int = field(default=512, metadata=_help("examples each client scores per round (a fresh random subset); clients with fewer abstain"))
    clip_mode: str = field(default="normalise", metadata=_help("per-example score bounding: normalise (each example's vector divided by its max, C = 1), clip (clamped to [0, clip-bound]) or l2 (each vector scaled to L2 norm <= clip-bound; gaussian-topk only)"))
    clip_bound: float = field(default=1.0, metadata=_help("C: per-example scores lie in [0, C]; must stay 1 under clip-mode=normalise"))
    score_train_epochs: int = field(default=0, metadata=_help("local epochs before scoring; only sound with unit=client"))
    min_replies: int = field(default=2, metadata=_help("replies a search round needs to update the ticket (else retried, then stopped)"))
    reference_search: bool = field(default=True, metadata=_help("also run the non-private (ε = inf) search as a simulation-only reference"))
    baselines: bool = field(default=True, metadata=_help("also train the dense model and a random ticket of the same structure as references"))
    train_variants: str = field(default="", metadata=_help(f"the models ticket training trains, comma-separated from {', '.join(VARIANTS)}; empty = dp_ticket, nonprivate_ticket (with reference-search) and, with baselines, dense and random_ticket; a non-private search has one ticket, trained once. Under train-privacy=dp-sgd every model a device trains shares its train-epsilon: train only the model you deploy to give it the whole budget"))
    noise_seed: int = field(default=-1, metadata=_help("seed of all DP noise, simulation only (refused under flwr run); -1 = OS entropy. A seed makes the run NOT PRIVATE: whoever knows it can remove the noise"))
    fraction_train: float = field(default=1.0, metadata=_help("fraction of clients sampled each round (search and training)"))
    local_epochs: int = field(default=1, metadata=_help("local epochs per training round"))
    batch_size: int = field(default=32, metadata=_help("local mini-batch size"))
    lr: float = field(default=0.01, metadata=_help("local SGD learning rate"))
    momentum: float = field(default=0.9, metadata=_help("local SGD momentum"))
    weight_decay: float = field(default=0.0, metadata=_help("local SGD weight decay"))
    grad_clip_norm: float = field(default=20.0, metadata=_help("local SGD: each step's mini-batch gradient is scaled to L2 norm <= this (torch clip_grad_norm_); 0 = off. A stability bound, not privacy: without it a 98%-sparse ticket's first steps (gradient norms near 100) can kill every ReLU and leave training at chance. Plain training only: DP-SGD bounds each example by train-clip"))
    train_privacy: str = field(default="none", metadata=_help(f"local training of ticket training, one of {', '.join(TRAIN_PRIVACIES)} (none: plain SGD, the weights are an ε = inf release; dp-sgd: record-level DP-SGD with Opacus on each device, DESIGN.md 5.8; dp-fedavg: client-level DP-FedAvg, Flower's server-side fixed-clipping wrapper: the server clips each client's update and noises the average, DESIGN.md 5.9)"))
    train_epsilon: float = field(default=1.0, metadata=_help("train-privacy=dp-sgd: record-level ε of each client for the whole ticket training (every model it trains, every round), at δ = train-delta by RDP; dp-fedavg: the client-level ε of the whole ticket training"))
    train_delta: float = field(default=1e-5, metadata=_help("train-privacy=dp-sgd or dp-fedavg: δ of the whole ticket training"))
    train_clip: float = field(default=1.0, metadata=_help("train-privacy=dp-sgd: C, the L2 bound of each example's gradient; dp-fedavg: C, the L2 bound of each client's model update"))
    seed: int = field(default=0, metadata=_help("seed of the model init, the partition and the client sampling (not of DP noise)"))
    max_examples_per_client: int = field(default=2000, metadata=_help("cap on each client's training examples; 0 = no cap"))
    max_test_examples: int = field(default=0, metadata=_help("cap on the server's test set; 0 = the whole test set"))
    client_cpus: float = field(default=1.0, metadata=_help("CPU cores reserved per simulated client (Ray)"))
    ray_address: str = field(default="", metadata=_help("dppt simulate only: HOST:PORT of a running Ray cluster's head (`ray start --head --port=PORT`), or auto (the cluster `ray start` last started on this machine); empty = a private local Ray started by dppt"))
    round_timeout: float = field(default=600.0, metadata=_help("seconds to wait for client replies in a round"))
    data_dir: str = field(default="", metadata=_help("dataset root; empty = $DPPT_DATA, else the per-user cache"))
    out_dir: str = field(default="runs", metadata=_help("parent folder of run directories (when --out is not given)"))
    delta_target: float = field(default=1e-5, metadata=_help("the δ at which the report quotes RDP/PLD figures"))

    def __post_init__(self) -> None:
        _check(self.dataset in DATASETS, "dataset", f"one of {', '.join(DATASETS)}", self.dataset)
        _check(self.partition in PARTITIONS, "partition", f"one of {', '.join(PARTITIONS)}", self.partition)
        _check(math.isfinite(self.width) and self.width >= 0, "width", "0 (default) or a positive number", self.width)
        _check(self.num_clients >= 1, "num-clients", "at least 1", self.num_clients)
        _check(math.isfinite(self.alpha) and self.alpha > 0, "alpha", "a finite number > 0", self.alpha)
        _check(self.classes_per_client >= 1, "classes-per-client", "at least 1", self.classes_per_client)
        _check(self.search_rounds >= 1, "search-rounds", "at least 1", self.search_rounds)
        _check(0 <= self.hold_rounds < self.search_rounds, "hold-rounds", f"in [0, search-rounds = {self.search_rounds})", self.hold_rounds)
        _check(self.train_rounds >= 1, "train-rounds", "at least 1", self.train_rounds)
        _check(not math.isnan(self.epsilon) and self.epsilon > 0, "epsilon", "a number > 0 (inf = non-private)", self.epsilon)
        _check(not math.isnan(self.client_epsilon) and self.client_epsilon > 0, "client-epsilon", "a number > 0 (inf = no central noise)", self.client_epsilon)
        _check(self.unit in UNITS, "unit", f"one of {', '.join(UNITS)}", self.unit)
        _check(self.central_noise in CENTRAL_NOISES, "central-noise", f"one of {', '.join(CENTRAL_NOISES)}", self.central_noise)
        _check(self.mechanism in MECHANISMS, "mechanism", f"one of {', '.join(MECHANISMS)}", self.mechanism)
        _check(0 < self.delta < 1, "delta", "in (0, 1)", self.delta)
        _check(self.budget_accountant in ENFORCEMENTS, "budget-accountant", f"one of {', '.join(ENFORCEMENTS)}", self.budget_accountant)
        _check(
            self.budget_accountant != ENFORCE_RDP or self.mechanism == GAUSSIAN_TOPK, "budget-accountant",
            "basic unless mechanism=gaussian-topk (Rényi DP composes the Gaussian votes; the pure ε-DP votes"
            " gain nothing from it)", self.budget_accountant,
        )
        _check(1 <= self.pattern_entries <= 9, "pattern-entries", "an int in [1, 9]", self.pattern_entries)
        _check(self.patterns >= 1, "patterns", "at least 1", self.patterns)
        max_density = self.pattern_entries / 9
        _check(
            math.isfinite(self.sparsity) and 1 - max_density <= self.sparsity < 1, "sparsity",
            f"in [1 - m/9, 1) = [{1 - max_density:.4f}, 1) for pattern-entries m = {self.pattern_entries}"
            " (an m-entry pattern keeps at most m of 9 weights)", self.sparsity,
        )
        _check(0 < self.pattern_share < 1, "pattern-share", "in (0, 1)", self.pattern_share)
        _check(self.score_examples >= 1, "score-examples", "at least 1", self.score_examples)
        _check(math.isfinite(self.clip_bound) and self.clip_bound > 0, "clip-bound", "a finite number > 0", self.clip_bound)
        _check(self.score_train_epochs >= 0, "score-train-epochs", ">= 0", self.score_train_epochs)
        # DESIGN.md 4: local training before scoring makes every score depend on every example through
        # the trained weights, so the record-level bound Δ = C/n no longer holds.
        _check(
            self.score_train_epochs == 0 or self.unit == UNIT_CLIENT, "score-train-epochs",
            "0 unless unit=client (training before scoring voids the record-level sensitivity C/n;"
            " DP-SGD before scoring is not available yet)", self.score_train_epochs,
        )
        _check(self.min_replies >= 1, "min-replies", "at least 1", self.min_replies)
        _check(self.noise_seed >= -1, "noise-seed", "-1 (OS entropy) or a seed >= 0", self.noise_seed)
        _check(0 < self.fraction_train <= 1, "fraction-train", "in (0, 1]", self.fraction_train)
        _check(self.local_epochs >= 1, "local-epochs", "at least 1", self.local_epochs)
        _check(self.batch_size >= 1, "batch-size", "at least 1", self.batch_size)
        _check(math.isfinite(self.lr) and self.lr > 0, "lr", "a finite number > 0", self.lr)
        _check(0 <= self.momentum < 1, "momentum", "in [0, 1)", self.momentum)
        _check(self.weight_decay >= 0, "weight-decay", ">= 0", self.weight_decay)
        _check(math.isfinite(self.grad_clip_norm) and self.grad_clip_norm >= 0, "grad-clip-norm",
               "0 (off) or a finite number > 0", self.grad_clip_norm)
        names = [name.strip() for name in self.train_variants.split(",")] if self.train_variants.strip() else []
        _check(
            all(name in VARIANTS for name in names) and len(set(names)) == len(names), "train-variants",
            f"empty or a comma-separated list, without repeats, of {', '.join(VARIANTS)}", self.train_variants,
        )
        _check(self.train_privacy in TRAIN_PRIVACIES, "train-privacy", f"one of {', '.join(TRAIN_PRIVACIES)}",
               self.train_privacy)
        _check(math.isfinite(self.train_epsilon) and self.train_epsilon > 0, "train-epsilon", "a finite number > 0",
               self.train_epsilon)
        _check(0 < self.train_delta < 1, "train-delta", "in (0, 1)", self.train_delta)
        _check(math.isfinite(self.train_clip) and self.train_clip > 0, "train-clip", "a finite number > 0",
               self.train_clip)
        _check(self.max_examples_per_client >= 0, "max-examples-per-client", ">= 0 (0 = no cap)", self.max_examples_per_client)
        _check(self.max_test_examples >= 0, "max-test-examples", ">= 0 (0 = no cap)", self.max_test_examples)
        _check(self.client_cpus > 0, "client-cpus", "> 0", self.client_cpus)
        _check(is_ray_address(self.ray_address), RAY_ADDRESS_KEY, RAY_ADDRESS_FORM, self.ray_address)
        _check(self.round_timeout > 0, "round-timeout", "> 0", self.round_timeout)
        per_round = self.clients_per_round()
        _check(
            self.min_replies <= per_round, "min-replies",
            f"<= the {per_round} clients sampled per round (num-clients x fraction-train)", self.min_replies,
        )
        _check(0 < self.delta_target < 1, "delta-target", "in (0, 1)", self.delta_target)
        # The names the registries own are checked by `check_names` (lazily: torch).

    # ----------------------------------------------------------------------------------------------
    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """All config keys, kebab-case."""
        return tuple(_to_key(f.name) for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, base: Config | None = None) -> Config:
        """Build a config from kebab-case keys (unknown keys and wrong types raise `ConfigError`)."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        current = dataclasses.asdict(base) if base is not None else {}
        for key, raw in values.items():
            name = _to_field(str(key))
            if name not in fields:
                raise ConfigError(
                    f"Unknown config key '{key}'. Valid keys: {', '.join(cls.keys())}."
                )
            current[name] = _coerce(key, raw, fields[name].type, fields[name].default)
        try:
            return cls(**current)
        except TypeError as err:  # pragma: no cover - all fields have defaults
            raise ConfigError(str(err)) from err

    @classmethod
    def from_toml(cls, path: str | Path, *, base: Config | None = None) -> Config:
        """Read a TOML file of kebab-case keys (top level, or under a ``[dppt]`` table)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Config file '{path}' does not exist. Pass an existing TOML file to --config.")
        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"Config file '{path}' is not valid TOML: {err}.") from err
        if "dppt" in data and isinstance(data["dppt"], dict):
            data = data["dppt"]
        return cls.from_mapping(data, base=base)

    @classmethod
    def from_overrides(cls, pairs: list[str], *, base: Config | None = None) -> Config:
        """Apply ``KEY=VALUE`` strings (as given to ``--set``)."""
        values: dict[str, Any] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--set needs KEY=VALUE. Found '{pair}'.")
            values[key.strip()] = value.strip()
        return cls.from_mapping(values, base=base)

    def to_dict(self) -> dict[str, Any]:
        """The resolved config with kebab-case keys (what ``config.json`` holds)."""
        return {_to_key(k): v for k, v in dataclasses.asdict(self).items()}

    def non_default(self) -> dict[str, Any]:
        """Only the keys that differ from their defaults (run names hash these, as open_lth does)."""
        default = Config()
        return {k: v for k, v in self.to_dict().items() if getattr(default, _to_field(k)) != v}

    def run_hash(self) -> str:
        """Short hash of the non-default settings that change results (paths and resources excluded)."""
        ignore = {"data-dir", "out-dir", "client-cpus", RAY_ADDRESS_KEY, "round-timeout"}
        payload = {k: v for k, v in self.non_default().items() if k not in ignore}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:10]

    def clients_per_round(self) -> int:
        """Clients sampled per round: ``round(fraction-train x num-clients)``, at least 1."""
        return max(1, round(self.fraction_train * self.num_clients))

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


def check_names(config: Config) -> None:
    """Check what the lower packages' registries own; call it before anything runs or is written.

    - ``model``: a name of the models registry; ``score``: of the models.scores registry;
      ``clip-mode``: a :class:`models.scores.ClipMode`, ``l2`` exactly when the vote is Gaussian; ``other-layers``: ``dense`` or
      ``unstructured`` (:class:`kernels.LayerPolicy`).
    - ``prior``: a data-free score of the models.scores registry (magnitude, synflow).
    - ``layer-allocation``: a :data:`strategies.settings.ALLOCATIONS` rule.
    - ``ticket-init``: one of :data:`models.initialisation.TICKET_INITS`.
    - ``clip-bound``: under ``clip-mode=normalise`` every example's scores are divided by their
      maximum, so they lie in ``[0, 1]`` and C is 1 (DESIGN.md 5.1, Δ = C / n): any other value
      would be silently replaced, so it is refused.
    - ``score-train-epochs``: 0 with a data-free score (trained weights read the examples).
    - ``train-epsilon`` under ``train-privacy=dp-sgd``: large enough that DP-SGD finds a noise
      multiplier at all (:func:`_check_dp_sgd_budget`).
    - ``patterns``: at most the number of candidate patterns of ``pattern-entries`` entries with
      the centre kept (:func:`kernels.candidate_count`, 56 for m = 4).

    The imports are local: torch is heavy and neither ``dppt --help`` nor the report needs it.

    Raises
    ------
    ConfigError
        On the first value that fails, in one line.
    """
    from kernels import LayerPolicy, candidate_count
    from models import registry
    from models.scores import ClipMode
    from models.scores import names as score_names

    from strategies.settings import ALLOCATIONS

    from models.initialisation import TICKET_INITS

    _check(config.ticket_init in TICKET_INITS, "ticket-init", f"one of {', '.join(TICKET_INITS)}", config.ticket_init)
    _check(config.layer_allocation in ALLOCATIONS, "layer-allocation", f"one of {', '.join(ALLOCATIONS)}",
           config.layer_allocation)
    from models.scores import reads_data

    priors = [name for name in score_names() if not reads_data(name)]  # the registry's data-free scores
    _check(config.prior in priors, "prior", f"one of {', '.join(priors)} (data-free scores)", config.prior)
    _check(config.model in registry.names(), "model", f"one of {', '.join(registry.names())}", config.model)
    _check(config.score in score_names(), "score", f"one of {', '.join(score_names())}", config.score)
    others = [LayerPolicy.DENSE.value, LayerPolicy.UNSTRUCTURED.value]
    _check(config.other_layers in others, "other-layers", f"one of {', '.join(others)}", config.other_layers)
    # ClipMode.L2 bounds scores for the Gaussian noisy top-k (its Δ₂ = √2·C/n is an L2 figure), and
    # the Gaussian vote needs it; under Laplace/Gumbel an L2 bound would fail every vote.
    if config.mechanism == GAUSSIAN_TOPK and reads_data(config.score):
        modes = [ClipMode.L2.value]
    else:
        modes = [mode.value for mode in ClipMode if mode is not ClipMode.L2]
    _check(config.clip_mode in modes, "clip-mode", f"one of {', '.join(modes)} with mechanism={config.mechanism}",
           config.clip_mode)
    _check(
        config.clip_mode != ClipMode.NORMALISE or config.clip_bound == 1.0, "clip-bound",
        "1.0 under clip-mode=normalise (normalised scores lie in [0, 1]); set clip-mode=clip to clamp scores to"
        f" [0, {config.clip_bound:g}]", config.clip_bound,
    )

    # B1 of the device's threat model (DESIGN.md 5.4b): after local training, even a data-free score
    # of the trained weights depends on the client's examples; planned as data-free it would be
    # charged ε = 0 and sent without noise.
    _check(
        config.score_train_epochs == 0 or reads_data(config.score), "score-train-epochs",
        f"0 with the data-free score {config.score!r} (after local training its top-k reads the client's"
        " examples and would be charged ε = 0); use score=snip with unit=client", config.score_train_epochs,
    )
    from federation.statement import noised_units

    has_nonprivate = config.reference_search or (reads_data(config.score) and not noised_units(config))
    _check(
        not config.train_variants.strip() or "nonprivate_ticket" not in trained_variants(config) or has_nonprivate,
        "train-variants",
        "without nonprivate_ticket unless reference-search=true (a private search has no non-private ticket)",
        config.train_variants,
    )
    if config.train_privacy == TRAIN_PRIVACY_DP_SGD:
        _check_dp_sgd_budget(config)
    if config.train_privacy == TRAIN_PRIVACY_DP_FEDAVG:
        from federation.dp_fedavg import noise_multiplier, releases

        try:
            noise_multiplier(config)
        except ValueError:
            _check(False, "train-epsilon", f"large enough for DP-FedAvg at train-delta {config.train_delta:g}: no"
                   f" noise multiplier up to 1e6 reaches it for {releases(config)} releases", config.train_epsilon)
    candidates = candidate_count(config.pattern_entries, centre_fixed=True)
    _check(
        config.patterns <= candidates, "patterns",
        f"at most the {candidates} candidate patterns of pattern-entries = {config.pattern_entries} (centre kept)",
        config.patterns,
    )


def _check_dp_sgd_budget(config: Config) -> None:
    """Refuse a ``train-epsilon`` no device could train at: Opacus finds no noise multiplier (up to
    its 1e6) for even the fewest steps a device can take (one full-batch step per epoch, q = 1).

    A device with more examples takes more, sampled steps and computes its own multiplier
    (:func:`federation.dp_training.plan_round`); one that finds none refuses the round by name.
    """
    from opacus.accountants.utils import get_noise_multiplier

    from federation.dp_training import models_trained
    from privacy.dp_sgd import RDP_ORDERS

    steps = models_trained(config) * config.train_rounds * config.local_epochs
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Opacus' note on the largest order: the error stays one line
            get_noise_multiplier(target_epsilon=config.train_epsilon, target_delta=config.train_delta,
                                 sample_rate=1.0, steps=steps, accountant="rdp", alphas=list(RDP_ORDERS))
    except ValueError:
        _check(False, "train-epsilon", f"large enough for DP-SGD at train-delta {config.train_delta:g}: no noise"
               f" multiplier up to 1e6 reaches it for the {steps} steps of the fewest a device takes", config.train_epsilon)


def trained_variants(config: Config) -> tuple[str, ...]:
    """The models ticket training trains, in :data:`federation.layout.VARIANTS` order.

    ``train-variants`` when set; else the DP ticket, the non-private ticket (when the run has one)
    and, with ``baselines``, the dense model and the random ticket.
    """
    if config.train_variants.strip():
        chosen = {name.strip() for name in config.train_variants.split(",")}
        return tuple(variant for variant in VARIANTS if variant in chosen)
    return tuple(variant for variant in VARIANTS if config.baselines or variant not in ("dense", "random_ticket"))


def reads_client_data(config: Config) -> bool:
    """Whether ``config.score`` reads the clients' examples (``False``: data-free, ε = 0; torch)."""
    from models.scores import reads_data

    return reads_data(config.score)


RAY_ADDRESS_AUTO: Final = "auto"
RAY_ADDRESS_FORM: Final = (
    "empty (a private local Ray), auto, or HOST:PORT of a Ray cluster's head as `ray start --head --port=PORT`"
    " printed it (Ray Client addresses, ray://, are not supported: run dppt on a node of the cluster)"
)


def is_ray_address(text: str) -> bool:
    """Whether ``text`` is a ``ray-address`` dppt accepts: empty, ``auto`` or ``HOST:PORT`` (port 1-65535).

    ``ray://`` (Ray Client, a driver outside the cluster) is refused: dppt's driver joins as a
    process on a node of the cluster, the only way tested with Flower's Ray backend. Whether a
    cluster answers at the address is checked before a run directory is written
    (:func:`simulations.engine.join_ray_cluster`), not here.
    """
    if text in ("", RAY_ADDRESS_AUTO):
        return True
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [IPv6]:PORT
    return (bool(sep) and bool(host) and "/" not in host and not any(c.isspace() for c in host)
            and port.isdigit() and 1 <= int(port) <= 65535)


def _check(ok: bool, key: str, constraint: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key} must be {constraint}. Found {value!r}.")


def _to_key(name: str) -> str:
    return name.replace("_", "-")


def _to_field(key: str) -> str:
    return key.strip().replace("-", "_")


def _coerce(key: str, raw: Any, kind: Any, default: Any) -> Any:
    """Turn a TOML/CLI/run-config value into the field's type, or raise a one-line `ConfigError`."""
    target = type(default)
    try:
        if target is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ValueError
        if target is int:
            if isinstance(raw, bool):
                raise ValueError
            if isinstance(raw, float):
                if not raw.is_integer():
                    raise ValueError
                return int(raw)
            return int(str(raw).strip())
        if target is float:
            if isinstance(raw, bool):
                raise ValueError
            return float(str(raw).strip()) if not isinstance(raw, (int, float)) else float(raw)
        if target is str:
            return str(raw).strip().strip('"').strip("'")
    except ValueError as err:
        raise ConfigError(f"{key} must be a {target.__name__}. Found {raw!r}.") from err
    raise ConfigError(f"{key} has an unsupported type {kind!r}.")  # pragma: no cover
