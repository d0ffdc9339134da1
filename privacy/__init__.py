"""Differential privacy for dppt: mechanisms, vote validation, accountant and ledger.

numpy, scipy and dp_accounting only (DESIGN.md section 6): no torch, no Flower.

- Record level, on the client (DESIGN.md 5.1): :func:`laplace_topk`, :func:`gumbel_topk`,
  :func:`gaussian_topk` (calibration: :func:`gaussian_noise_multiplier`).
- Client level, on the server (5.2): :func:`tally_votes`, :func:`noisy_topk_histogram`.
- Enforced sensitivity (5.3): :func:`validate_vote`.
- Accounting (5.4): :class:`PrivacyEvent`, :class:`Ledger`, :class:`Accountant` (its
  :meth:`~Accountant.totals`: the :class:`PrivacyTotals` a run quotes), exact budget arithmetic
  (:func:`fits`, :func:`share`, :func:`total`, :func:`exact`),
  :class:`ReleaseJournal` (write-ahead record of asked releases, for crashes),
  :func:`compare_composition`.
- DP-SGD training (5.8): :func:`dp_sgd_event`, :func:`dp_sgd_epsilon` (RDP of Poisson-sampled
  Gaussian steps, Opacus' orders).
- Noise (5.5): :func:`make_rng`, :func:`discrete_laplace_noise`.
- Honest utility (5.6): :func:`signal_to_noise`.
- Auditing: :func:`epsilon_lower_bound`.
"""

from privacy.accountant import ENFORCE_BASIC, ENFORCE_RDP, ENFORCEMENTS, Accountant
from privacy.audit import AuditResult, clopper_pearson, epsilon_lower_bound
from privacy.budget import exact, fits, share, total
from privacy.comparison import CompositionComparison, compare_composition, gaussian_rdp_round_epsilon, rdp_epsilon
from privacy.diagnostics import NoiseDiagnostic, histogram_diagnostic, score_diagnostic, signal_to_noise
from privacy.discrete_laplace import discrete_laplace_noise, rational_scale
from privacy.errors import BudgetExceededError, LedgerError, PrivacyError, TornLedgerError
from privacy.dp_sgd import dp_sgd_epsilon, dp_sgd_event, dp_sgd_steps
from privacy.events import (
    DATA_FREE,
    DP_SGD,
    UNACCOUNTED,
    DEVICE_BOUND,
    DISCRETE_LAPLACE_HISTOGRAM,
    GAUSSIAN,
    GAUSSIAN_TOPK,
    GUMBEL_TOPK,
    LAPLACE,
    LAPLACE_HISTOGRAM,
    LAPLACE_MONOTONE_TOPK,
    LAPLACE_TOPK,
    UNIT_CLIENT,
    UNIT_RECORD,
    UNITS,
    MechanismSpec,
    PrivacyEvent,
    data_free_spec,
)
from privacy.gaussian import (
    draw_gaussian_topk,
    gaussian_delta,
    gaussian_epsilon,
    gaussian_noise_multiplier,
    gaussian_record_sensitivity,
    gaussian_topk,
    gaussian_topk_spec,
)
from privacy.histogram import (
    NOISE_KINDS,
    CentralRelease,
    HistogramCalibration,
    draw_noisy_histogram,
    histogram_calibration,
    noisy_topk_histogram,
    tally_votes,
)
from privacy.journal import JOURNAL_SCHEMA, ReleaseAsk, ReleaseJournal
from privacy.ledger import LEDGER_SCHEMA, Ledger, TornRepair
from privacy.noisy_topk import (
    TopKRelease,
    draw_gumbel_topk,
    draw_laplace_topk,
    gumbel_topk,
    gumbel_topk_noise_scale,
    laplace_topk,
    laplace_topk_noise_scale,
    topk_spec,
)
from privacy.rng import SeededNoiseWarning, make_rng
from privacy.totals import PrivacyTotals, RoundTotal
from privacy.sensitivity import clipped_mean, record_sensitivity
from privacy.validation import RejectReason, VoteCheck, validate_vote

__all__ = [
    "DATA_FREE",
    "DP_SGD",
    "UNACCOUNTED",
    "DEVICE_BOUND",
    "DISCRETE_LAPLACE_HISTOGRAM",
    "GAUSSIAN",
    "GAUSSIAN_TOPK",
    "GUMBEL_TOPK",
    "LAPLACE",
    "LAPLACE_HISTOGRAM",
    "LAPLACE_MONOTONE_TOPK",
    "LAPLACE_TOPK",
    "LEDGER_SCHEMA",
    "NOISE_KINDS",
    "UNITS",
    "UNIT_CLIENT",
    "UNIT_RECORD",
    "ENFORCEMENTS",
    "ENFORCE_BASIC",
    "ENFORCE_RDP",
    "Accountant",
    "AuditResult",
    "BudgetExceededError",
    "CentralRelease",
    "CompositionComparison",
    "HistogramCalibration",
    "JOURNAL_SCHEMA",
    "Ledger",
    "LedgerError",
    "MechanismSpec",
    "NoiseDiagnostic",
    "PrivacyError",
    "PrivacyEvent",
    "PrivacyTotals",
    "RejectReason",
    "SeededNoiseWarning",
    "TopKRelease",
    "ReleaseAsk",
    "ReleaseJournal",
    "RoundTotal",
    "TornLedgerError",
    "TornRepair",
    "VoteCheck",
    "clipped_mean",
    "clopper_pearson",
    "compare_composition",
    "dp_sgd_epsilon",
    "dp_sgd_event",
    "dp_sgd_steps",
    "data_free_spec",
    "discrete_laplace_noise",
    "draw_gaussian_topk",
    "draw_gumbel_topk",
    "draw_laplace_topk",
    "draw_noisy_histogram",
    "epsilon_lower_bound",
    "exact",
    "fits",
    "gaussian_delta",
    "gaussian_epsilon",
    "gaussian_noise_multiplier",
    "gaussian_rdp_round_epsilon",
    "gaussian_record_sensitivity",
    "gaussian_topk",
    "gaussian_topk_spec",
    "gumbel_topk",
    "gumbel_topk_noise_scale",
    "histogram_calibration",
    "histogram_diagnostic",
    "laplace_topk",
    "laplace_topk_noise_scale",
    "make_rng",
    "noisy_topk_histogram",
    "rational_scale",
    "rdp_epsilon",
    "record_sensitivity",
    "score_diagnostic",
    "share",
    "signal_to_noise",
    "tally_votes",
    "topk_spec",
    "total",
    "validate_vote",
]
