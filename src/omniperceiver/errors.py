"""Errors a user can cause and fix: a bad option, file, folder or saved model.

Every one is an :class:`OmniPerceiverError` (a :class:`ValueError`), so a program can catch
them all with one ``except``; the command line prints them as one message, without a
traceback, and exits with status 1. Messages name the option or file at fault and say what
was expected and what was found.
"""


class OmniPerceiverError(ValueError):
    """Base class of the errors a user can fix."""


class ConfigError(OmniPerceiverError):
    """An option (of a config, a preset or the command line) that cannot work."""


class UnknownModelError(ConfigError):
    """A model name that is not registered."""


class CommandError(OmniPerceiverError):
    """A mistake on the command line or in the files it names."""


class ModelFileError(OmniPerceiverError):
    """A saved model or checkpoint that cannot be read or rebuilt."""


class HubError(ModelFileError):
    """A model in a Hugging Face Hub repository that cannot be read or published: no such
    repository or revision, not in the cache while offline, no permission, or huggingface_hub
    not installed (the message names the repository and the revision)."""


class InputFileError(OmniPerceiverError):
    """A file given to ``predict`` that the model cannot take."""


class DatasetError(OmniPerceiverError):
    """A data file or folder that cannot be used."""


class MissingProgramError(OmniPerceiverError, RuntimeError):
    """An external program a data set needs is not installed (the message says how)."""


class NonFiniteLossError(OmniPerceiverError, FloatingPointError):
    """Training produced a NaN or infinite loss (the message says where and what to try)."""


__all__ = ["OmniPerceiverError", "ConfigError", "UnknownModelError", "CommandError",
           "ModelFileError", "HubError", "InputFileError", "DatasetError", "MissingProgramError",
           "NonFiniteLossError"]
