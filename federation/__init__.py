"""Flower glue: the ServerApp and ClientApp, data and partitions, the message schema, the run config."""

from federation.config import Config
from federation.errors import ConfigError, FederationError

__all__ = ["Config", "ConfigError", "FederationError"]
