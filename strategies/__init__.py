"""Flower server strategies that turn validated votes into pattern tickets.

Imports kernels, privacy and Flower only (DESIGN.md section 6); works on arrays, tensors and
tickets, never on ``nn.Module`` s. Public API:

- :class:`PatternSearch` (the plain search strategy), :class:`PrivacyGate` (the accounting wrapper
  around it) and :func:`run_search` (the one loop), :class:`SearchOutcome`.
- Settings: :class:`SearchSettings`, :class:`PrivacySettings`, :class:`DensitySchedule`.
- Domains and accounting plan: :class:`VoteDomain`, :func:`build_domains`, :func:`plan_round_events`,
  :func:`domain_epsilon` (a domain's ε in a round, as charged).
- Replies: :func:`collect_votes`, :func:`parse_reply`, :class:`ReplyIssue`.
- Aggregation: :func:`release_domain`, :func:`build_next_ticket`, :func:`plain_topk`.
- Wire format: :mod:`strategies.keys` (message type and record keys), :func:`ticket_record`,
  :func:`round_config_record`.
- Errors: :class:`StrategyError`, :class:`SearchStopped`.
"""

from strategies import keys
from strategies.aggregation import DomainRelease, build_next_ticket, plain_topk, release_domain, ticket_change
from strategies.domains import (
    KERNELS_PREFIX,
    PATTERNS_DOMAIN,
    VoteDomain,
    build_domains,
    check_split,
    domain_delta,
    domain_epsilon,
    domain_names,
    kernel_domain_name,
    plan_round_events,
)
from strategies.errors import SearchStopped, StrategyError
from strategies.pattern_search import STATE_SCHEMA, PatternSearch
from strategies.payload import round_config_record, ticket_record
from strategies.privacy_gate import GatedSearch, PrivacyGate
from strategies.rounds import Releaser, RoundPlan, RoundVotes
from strategies.schedule import DensitySchedule
from strategies.search_loop import SearchOutcome, SearchRunner, run_search
from strategies.settings import (
    CENTRAL_NOISE_KINDS,
    LOCAL_MECHANISMS,
    NO_CENTRAL_NOISE,
    SCORE_DATA_FREE,
    SCORE_RECORD,
    SCORE_SOURCES,
    PrivacySettings,
    SearchSettings,
)
from strategies.votes import ReplyIssue, VoteCollection, client_id, collect_votes, parse_reply

__all__ = [
    "CENTRAL_NOISE_KINDS",
    "KERNELS_PREFIX",
    "LOCAL_MECHANISMS",
    "NO_CENTRAL_NOISE",
    "PATTERNS_DOMAIN",
    "SCORE_DATA_FREE",
    "SCORE_RECORD",
    "SCORE_SOURCES",
    "STATE_SCHEMA",
    "DensitySchedule",
    "DomainRelease",
    "GatedSearch",
    "PatternSearch",
    "PrivacyGate",
    "PrivacySettings",
    "Releaser",
    "ReplyIssue",
    "RoundPlan",
    "RoundVotes",
    "SearchOutcome",
    "SearchRunner",
    "SearchSettings",
    "SearchStopped",
    "StrategyError",
    "VoteCollection",
    "VoteDomain",
    "build_domains",
    "build_next_ticket",
    "check_split",
    "client_id",
    "collect_votes",
    "domain_delta",
    "domain_epsilon",
    "domain_names",
    "kernel_domain_name",
    "keys",
    "parse_reply",
    "plain_topk",
    "plan_round_events",
    "release_domain",
    "round_config_record",
    "run_search",
    "ticket_change",
    "ticket_record",
]
