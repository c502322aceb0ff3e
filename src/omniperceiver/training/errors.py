"""Errors a user fixes in a config or on the command line (printed without a traceback)."""


class ConfigError(ValueError):
    """An option of a training config that cannot work (reported before training starts)."""


__all__ = ["ConfigError"]
