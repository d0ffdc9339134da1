"""Nothing dppt reads from the wire or from disk is unpickled: no pickle-based loader in its packages."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("federation", "strategies", "privacy", "models", "kernels", "simulations")
# Every way a Python program commonly unpickles: the modules themselves, torch.load (pickle-based),
# numpy/pandas loaders with pickling allowed.
FORBIDDEN = re.compile(
    r"^\s*(import|from)\s+(pickle|cPickle|dill|joblib|cloudpickle|shelve)\b"
    r"|torch\.load\(|allow_pickle\s*=\s*True|pd\.read_pickle|\.read_pickle\(",
    re.MULTILINE,
)


def test_no_package_module_uses_a_pickle_based_loader():
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for match in FORBIDDEN.finditer(path.read_text()):
                line = path.read_text()[: match.start()].count("\n") + 1
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {match.group(0).strip()}")
    assert offenders == []


def test_the_scan_finds_what_it_looks_for():
    for text in ("import pickle", "from dill import loads", "x = torch.load(f)", "np.load(f, allow_pickle=True)"):
        assert FORBIDDEN.search(text), text
    assert not FORBIDDEN.search("np.load(f, allow_pickle=False)")
