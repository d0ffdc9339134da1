"""Error hierarchy, noise-generator policy and the package's import boundary."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import privacy
from privacy import BudgetExceededError, LedgerError, PrivacyError, SeededNoiseWarning, TornLedgerError, make_rng


def test_error_hierarchy() -> None:
    assert issubclass(PrivacyError, ValueError)
    assert issubclass(BudgetExceededError, PrivacyError)
    assert issubclass(LedgerError, PrivacyError)
    assert issubclass(TornLedgerError, LedgerError)


def test_budget_error_carries_its_fields() -> None:
    err = BudgetExceededError(unit="record", client_id="c7", quantity="epsilon", spent=0.9, requested=0.2, budget=1.0)
    assert (err.unit, err.client_id, err.quantity, err.spent, err.requested, err.budget) == (
        "record", "c7", "epsilon", 0.9, 0.2, 1.0,
    )
    assert "\n" not in err.message and "c7" in err.message and str(err) == err.message


def test_default_rng_uses_os_entropy_without_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first, second = make_rng(), make_rng()
    assert isinstance(first, np.random.Generator)
    assert first.integers(0, 2**62) != second.integers(0, 2**62)


def test_user_seed_warns_that_it_must_stay_secret() -> None:
    with pytest.warns(SeededNoiseWarning, match="secret"):
        rng = make_rng(123)
    with pytest.warns(SeededNoiseWarning):
        again = make_rng(123)
    assert rng.random() == again.random()


@pytest.mark.parametrize("seed", [-1, 1.5, "7", True])
def test_invalid_seed_is_refused(seed: object) -> None:
    with pytest.raises(PrivacyError, match="seed must be"):
        make_rng(seed)  # type: ignore[arg-type]


def test_privacy_never_imports_torch_or_flower() -> None:
    code = (
        "import sys, privacy; bad = [m for m in ('torch', 'flwr') if m in sys.modules];"
        " print(bad); sys.exit(bool(bad))"
    )
    root = Path(privacy.__file__).resolve().parent.parent
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_public_api_is_exported() -> None:
    for name in privacy.__all__:
        assert hasattr(privacy, name), name
