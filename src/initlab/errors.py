"""The errors that are bad input, in one torch-free module.

Each is one line that names the bad value and what is allowed. The command line turns any of them
into ``initlab: error: <line>`` and exit status 2 (``BAD_INPUT``); importing this module costs
nothing, so a refusal never waits for torch or Lightning to load.
"""

from __future__ import annotations


class BadInput(ValueError):
    """One line saying what in the command line is wrong and what is allowed."""


class DataError(RuntimeError):
    """The data cannot be loaded as configured; the message says what to fix."""


class RunMismatch(ValueError):
    """The output dir holds another run than the one asked for (one line: what differs, and
    how to proceed). Nothing there was changed."""


class RunDirBusy(RuntimeError):
    """Another live process owns the run (or sweep) dir; nothing there was touched."""


def bad_input_errors() -> tuple[type[Exception], ...]:
    """The exception classes whose message is the one line of a refusal (exit status 2)."""
    from initlab.config import ConfigError

    return (BadInput, ConfigError, DataError, RunMismatch, RunDirBusy)
