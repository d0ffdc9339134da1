"""One error hierarchy in federation: the CLI catches its base, so a new error class must join it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import federation
from federation.errors import FederationError
from simulations.cli import EXIT_USAGE, main


def _federation_error_classes():
    for info in pkgutil.iter_modules(federation.__path__):
        if info.name == "client_app":  # builds a ClientApp at import; its errors come from the modules below
            continue
        module = importlib.import_module(f"federation.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith("federation"):
                yield obj


def test_every_federation_error_derives_from_the_one_base():
    classes = set(_federation_error_classes())
    assert len(classes) >= 8  # the base and its seven kinds
    stray = sorted(c.__qualname__ for c in classes if not issubclass(c, FederationError))
    assert stray == []


def test_every_federation_error_is_defined_once_in_federation_errors():
    assert {c.__module__ for c in _federation_error_classes()} == {"federation.errors"}


@pytest.mark.parametrize("name", ["DataError", "PartitionError", "PipelineError", "RunDirError", "DeviceLogError"])
def test_cli_reports_any_federation_error_in_one_line_with_exit_2(name, monkeypatch, capsys):
    import federation.errors as errors
    import simulations.cli as cli

    def failing(args):
        raise getattr(errors, name)("thing must be fixed. Found broken.")

    monkeypatch.setitem(cli.COMMANDS, "config", failing)
    assert main(["config"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err == "dppt: error: thing must be fixed. Found broken.\n"
