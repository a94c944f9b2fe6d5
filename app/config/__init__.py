"""How accessbot is configured: environment settings, the YAML config file and its reloadable source."""

from app.config.model import Config, TailnetConfig, load_config
from app.config.source import ConfigSource
from app.core.errors import ConfigError

__all__ = ["Config", "ConfigError", "ConfigSource", "TailnetConfig", "load_config"]
