"""The one error family of the package, caught once in ``cli.main``.

Every error carries the exit code the CLI returns for it, so that code paths never
pick exit codes themselves:

* 2 -- bad input: nothing was touched (no host contacted, nothing written on a host);
* 1 -- a run happened and a host failed, was unreachable or failed verification;
* 130 -- interrupted by the user.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_HOST_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class TfgpuError(Exception):
    """An error with a message meant for the user and the exit code it maps to."""

    exit_code = EXIT_HOST_FAILED

    def __init__(self, message: str, *, fix: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        if self.fix:
            return f"{self.message} Fix: {self.fix}"
        return self.message


class BadInput(TfgpuError):
    """The user's input (inventory, option, version string) is wrong; no host was touched."""

    exit_code = EXIT_BAD_INPUT


class RunFailed(TfgpuError):
    """A run completed but at least one host failed or was unreachable."""

    exit_code = EXIT_HOST_FAILED


class Interrupted(TfgpuError):
    """The user pressed Ctrl-C; the run was cancelled and a partial summary written."""

    exit_code = EXIT_INTERRUPTED
