"""User-facing errors: each says what is wrong and how to fix it.

The CLI prints any `CoincastError` on one line and exits with status 2; anything else
is a bug and keeps its traceback.
"""


class CoincastError(Exception):
    """A mistake in the user's input, data or settings (never an internal bug)."""


class DataError(CoincastError):
    """The data cannot be read or does not meet the frame contract."""


class ConfigError(CoincastError):
    """A setting is out of range or unknown."""


class ModelFileError(CoincastError):
    """A saved model is missing, corrupt or does not fit the data given to it."""


class OutputError(CoincastError):
    """The output folder cannot be written."""
