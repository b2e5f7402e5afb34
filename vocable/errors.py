"""Errors that vocable reports to users as one line (the CLI prints them and exits with code 2)."""


class VocableError(Exception):
    """Base class: a problem with the user's input, not a bug in vocable."""


class AudioError(VocableError):
    """Audio that cannot be read, is empty, or is not audio at all."""


class ConfigError(VocableError):
    """A malformed config file or option; the message names the file and field."""


class DataError(VocableError):
    """A malformed manifest, dataset folder or transcript."""


class ModelError(VocableError):
    """A model file that is missing, corrupt or of an unknown version."""


class AudioWarning(UserWarning):
    """Audio that can be read but not all of it (a file cut short): transcribed, and the user told."""
