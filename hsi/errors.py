"""User-facing errors.

Every problem a user can fix (a missing file, a wrong band count, a split made for
another cube) is raised as :class:`HsiError` with a one-line message that names the
problem and the fix. The CLI prints these as ``error: ...`` without a traceback;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class HsiError(Exception):
    """A problem with the user's input, configuration or files (not a bug in hsi)."""


class DataError(HsiError):
    """Input data is missing, corrupt, or inconsistent with what was asked for."""


class ConfigError(HsiError):
    """A configuration value is invalid or inconsistent with the data."""
