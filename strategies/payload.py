"""The server's records of a round: the current ticket and the vote configuration (see
:mod:`strategies.keys` for the layout the ClientApp reads)."""

from __future__ import annotations

from collections.abc import Sequence

from flwr.app import Array, ArrayRecord, ConfigRecord

from kernels import LayerPolicy, Ticket
from privacy import UNIT_RECORD
from strategies import keys
from strategies.domains import VoteDomain, domain_delta, domain_epsilon
from strategies.settings import SCORE_DATA_FREE, PrivacySettings, SearchSettings

__all__ = ["round_config_record", "ticket_record"]


def ticket_record(ticket: Ticket) -> ArrayRecord:
    """The ticket as arrays: the library (bool ``(P, 3, 3)``, if any) and each non-dense mask."""
    arrays: dict[str, Array] = {}
    for name, layer in ticket.layers.items():
        if layer.policy is LayerPolicy.DENSE:
            continue
        if layer.library is not None and keys.LIBRARY_ARRAY not in arrays:
            arrays[keys.LIBRARY_ARRAY] = Array(layer.library.cpu().numpy())
        arrays[keys.MASK_PREFIX + name] = Array(layer.mask().cpu().numpy())
    return ArrayRecord(arrays)


def round_config_record(
    *,
    domains: Sequence[VoteDomain],
    privacy: PrivacySettings,
    settings: SearchSettings,
    server_round: int,
    attempt: int,
    density: float,
) -> ConfigRecord:
    """The vote configuration a client needs to answer ``server_round``."""
    data_free = privacy.score_source == SCORE_DATA_FREE
    values: dict[str, int | float | str | bool | list[str]] = {
        keys.ROUND_FIELD: server_round,
        keys.ATTEMPT_FIELD: attempt,
        keys.DOMAINS_FIELD: [domain.name for domain in domains],
        keys.SCORE_SOURCE_FIELD: privacy.score_source,
        keys.MECHANISM_FIELD: SCORE_DATA_FREE if data_free else privacy.local_mechanism,
        keys.CLIP_MODE_FIELD: privacy.clip_mode,
        keys.CLIP_BOUND_FIELD: privacy.clip_bound,
        keys.SENSITIVITY_FIELD: privacy.sensitivity,
        keys.MIN_EXAMPLES_FIELD: privacy.min_examples,
        keys.DENSITY_FIELD: density,
        keys.PATTERN_ENTRIES_FIELD: settings.pattern_entries,
        keys.CENTRE_FIXED_FIELD: settings.centre_fixed,
    }
    for domain in domains:
        # DESIGN.md 5.4: the domain's ε exactly as planned and charged (strategies.domain_epsilon).
        epsilon = 0.0 if data_free else domain_epsilon(privacy, domain.name, UNIT_RECORD)
        values[keys.domain_field(domain.name, keys.DOMAIN_SIZE_FIELD)] = domain.size
        values[keys.domain_field(domain.name, keys.DOMAIN_TOP_K_FIELD)] = domain.top_k
        values[keys.domain_field(domain.name, keys.DOMAIN_MAX_ENTRIES_FIELD)] = domain.max_entries
        values[keys.domain_field(domain.name, keys.DOMAIN_EPSILON_FIELD)] = epsilon
        values[keys.domain_field(domain.name, keys.DOMAIN_DELTA_FIELD)] = 0.0 if data_free else domain_delta(privacy, domain.name)
        values[keys.domain_field(domain.name, keys.DOMAIN_LAYERS_FIELD)] = list(domain.layers)
    return ConfigRecord(values)  # type: ignore[arg-type]
