"""Errors every layer may raise about how accessbot is set up (not about what a user asked)."""


class ConfigError(Exception):
    """The YAML config file or the environment is invalid; the message says where and why."""
