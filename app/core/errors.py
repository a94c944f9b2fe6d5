"""Errors every layer may raise about how accessbot is set up (not about what a user asked)."""


class ConfigError(Exception):
    """The YAML config file or the environment is invalid; the message says where and why."""


class EnvironmentProblem(Exception):
    """Something outside accessbot keeps it from working (a database it cannot reach or open, a port in use).

    ``problem`` is one line for a person: the cause and what to check. Entry points print it instead of a
    traceback; a subclass may also be an error class of a library (so ``except`` clauses written for that
    library still catch it).
    """

    problem: str = "the environment is not usable"
