"""The error a script reports as one line naming the file and the problem (exit code 2)."""

from __future__ import annotations


class UsageError(Exception):
    """A problem with the command line or its files, reported as one line with exit code 2."""
