"""One exception family. The CLI turns any of these into one line and exit code 2."""

from __future__ import annotations


class SepflowError(Exception):
    """Base of every error sepflow raises on purpose (bad input, bad config, refused action)."""


class ConfigError(SepflowError):
    """params.yaml (or a CLI flag) holds a value sepflow cannot use."""


class DataValidationError(SepflowError):
    """An input table breaks its schema; the message names file, column, count and example rows."""


class SourceFormatError(SepflowError):
    """An input file's shape is not one sepflow knows how to read."""


class Terminated(BaseException):  # noqa: N818 (a signal, like KeyboardInterrupt, not an error)
    """SIGTERM arrived (DVC, a queue or a scheduler stopping us). Raised by the CLI's handler so the
    process unwinds as on Ctrl-C: temporary files go, MLflow runs end KILLED; then exit 143."""
