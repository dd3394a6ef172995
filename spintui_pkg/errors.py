"""The errors every layer shares, and the exit code the command line gives each.

One small module at the package root so that kernels, profiles, algos and tui can all raise them
without importing one another. The CLI prints any of them as one line.
"""

from __future__ import annotations


class SpintuiError(Exception):
    """Base of the errors a user can cause or meet; `exit_code` is what the CLI exits with."""

    exit_code = 1


class ConfigError(SpintuiError, ValueError):
    """A bad option or config value; the message names the option, the value and what is accepted."""

    exit_code = 2


class UsageError(SpintuiError):
    """A bad combination of arguments found after parsing (a taken run name, a missing GPU)."""

    exit_code = 2


class RunError(SpintuiError):
    """A run directory is missing, unreadable, damaged or not a spintui run."""


class CommandFailed(SpintuiError):
    """The command ran but its work failed (a trainer crashed, an evaluation could not load)."""
