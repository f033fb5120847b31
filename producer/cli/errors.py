"""How a command ends: its exit code, or a ``CliError`` that ``main`` reports in one line."""

from __future__ import annotations

EXIT_OK = 0
"""Done as asked (README, CLI: the table of exit codes)."""
EXIT_ERROR = 1
"""Bad input or settings, Redis unreachable, no such run, or the run did not succeed."""
EXIT_TIMEOUT = 124
"""``--wait`` ended first; the run goes on."""
EXIT_INTERRUPTED = 130
"""Ctrl-C."""


class CliError(Exception):
    """A user error or a run that did not succeed: one line (a JSON error document under
    ``--json``), exit code 1, no traceback. ``code`` is the HTTP API's ``error.code``."""

    def __init__(self, message: str, *, code: str = "invalid", run_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.run_id = run_id
