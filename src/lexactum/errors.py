"""Errors the user can act on.

Anything raised as a :class:`LexactumError` is the user's input being wrong (a missing file, a bad value),
not a bug: the command line prints its message on one line and exits with status 2, no traceback
(unless ``--debug``). Messages name the file or value and say what is wrong.
"""


class LexactumError(Exception):
    """A problem with the user's input, reported as one clear line."""


class DataError(LexactumError):
    """A dataset, catalog or image that cannot be read as challenge data."""


class ModelFileError(LexactumError):
    """A model file that is missing, corrupt, or does not fit what was asked for."""
