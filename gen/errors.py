"""Errors that the CLI reports as one clear line and exit status 2."""


class TilefabError(Exception):
    """A user-facing error: bad config, bad argument, missing tool."""


class ConfigError(TilefabError):
    """A config value out of range; the message names the YAML path and what is allowed."""

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class OperandError(TilefabError, ValueError):
    """A job's operand the hardware cannot take (a shape, a K above max_k); the message
    names the operand and what is allowed."""
