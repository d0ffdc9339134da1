"""A device (SuperNode) needs no Ray, Opacus or dp-accounting: the ClientApp votes and trains without them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SERVER_ONLY = ("ray", "opacus", "dp_accounting")  # requirements-device.txt leaves these out


@pytest.mark.integration
def test_the_client_app_votes_and_trains_with_the_server_only_packages_missing():
    blocked = "; ".join(f"sys.modules[{name!r}] = None" for name in SERVER_ONLY)  # import of each raises
    target = f"{HERE / 'test_federation_node_check.py'}::test_the_client_app_votes_and_trains_on_an_image_folder"
    script = (f"import sys; {blocked}; import pytest; "
              f"sys.exit(pytest.main([{target!r}, '-q', '-p', 'no:cacheprovider', '-W', 'ignore']))")
    result = subprocess.run([sys.executable, "-c", script], cwd=HERE.parents[1], capture_output=True, text=True,
                            env=dict(os.environ), timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout


def test_the_device_requirements_are_the_package_requirements_minus_the_server_only_ones():
    import tomllib

    root = HERE.parents[1]
    package = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    device = [line.strip() for line in (root / "requirements-device.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    left_out = {"ray", "opacus", "dp-accounting", "matplotlib", "cryptography"}  # the last two come with flwr(-datasets)

    def name(requirement: str) -> str:
        return requirement.split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip()

    assert {name(r) for r in device} == {name(r) for r in package} - left_out
    assert "flwr>=1.41,<1.42" in device  # without the [simulation] extra (which brings Ray)
