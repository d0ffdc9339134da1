"""The ServerApp that ``flwr run .`` loads (pyproject ``[tool.flwr.app.components]``).

The same pipeline as ``dppt simulate``, with the config read from ``context.run_config``, and the
privacy-budget report rendered into the run directory at the end.
"""

from __future__ import annotations

from federation.rundir import RunDirectory
from federation.server_app import build_server_app

__all__ = ["app"]


def _render(run_dir: RunDirectory) -> None:
    from simulations.report import render_report

    render_report(run_dir.path)


app = build_server_app(finalize=_render)
