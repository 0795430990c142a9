"""The one table from exceptions to exit codes, and how the CLI reports an error.

=====  ===========================================================================
code   meaning
=====  ===========================================================================
0      success
1      the run failed (:class:`~glade.RunError`) or another Glade error
2      bad command line or configuration (:class:`~glade.ConfigError`, usage errors)
3      the ServerApp or ClientApp cannot be loaded (:class:`~glade.AppLoadError`)
4      a peer is unreachable (:class:`~glade.TransportError`)
5      not logged in, token expired, or not allowed (:class:`~glade.errors.AccessDeniedError`)
70     an unexpected exception: a bug in Glade (``EX_SOFTWARE``)
130    stopped by Ctrl-C (128 + the signal number; 143 for SIGTERM)
=====  ===========================================================================
"""

from __future__ import annotations

import signal
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.text import Text

from glade.errors import (
    AccessDeniedError,
    AppLoadError,
    ConfigError,
    GladeError,
    RunError,
    TransportError,
)

__all__ = [
    "EXIT_CODES",
    "EXIT_FAILED",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Interrupted",
    "exit_code_for",
    "reported_errors",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_APP_LOAD = 3
EXIT_TRANSPORT = 4
EXIT_ACCESS = 5
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 128 + signal.SIGINT


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGINT or SIGTERM) turned into an exception; remembers which."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# Checked in order: the first matching type wins, so subclasses come before their bases.
EXIT_CODES: tuple[tuple[type[BaseException], int], ...] = (
    (typer.Abort, EXIT_FAILED),
    (KeyboardInterrupt, EXIT_INTERRUPTED),
    (AppLoadError, EXIT_APP_LOAD),
    (ConfigError, EXIT_USAGE),
    (TransportError, EXIT_TRANSPORT),
    (AccessDeniedError, EXIT_ACCESS),
    (RunError, EXIT_FAILED),
    (GladeError, EXIT_FAILED),
)


def exit_code_for(exc: BaseException) -> int:
    """The exit code for ``exc`` according to :data:`EXIT_CODES` (70 if none matches)."""
    if isinstance(exc, Interrupted):
        return 128 + exc.signum
    for kind, code in EXIT_CODES:
        if isinstance(exc, kind):
            return code
    return EXIT_INTERNAL


def error_paragraph(exc: BaseException) -> str:
    """One paragraph that says what went wrong and what to do."""
    if isinstance(exc, typer.Abort):
        return "Aborted: no answer was given (pass all arguments to run without prompts)."
    if isinstance(exc, KeyboardInterrupt):
        return "Stopped (interrupted) before the run started."
    if isinstance(exc, GladeError):
        return f"Error: {_one_paragraph(str(exc))}"
    return (
        f"Internal error: {type(exc).__name__}: {_one_paragraph(str(exc))}. This is a bug in "
        "Glade; rerun with --verbose to see the traceback and include it in a bug report."
    )


def _one_paragraph(text: str) -> str:
    return " ".join(line.strip() for line in text.strip().splitlines() if line.strip())


@contextmanager
def reported_errors(
    console: Console,
    *,
    verbose: bool,
    on_error: Callable[[BaseException, int], None] | None = None,
) -> Iterator[None]:
    """Turn any exception into a paragraph on ``console`` and ``typer.Exit(code)``.

    With ``verbose`` the traceback is printed first. ``on_error(exc, code)`` runs before
    the exit (``glade run --format json`` prints its JSON document there).
    """
    try:
        yield
    except typer.Exit:
        raise
    except (Exception, KeyboardInterrupt) as exc:
        if verbose and not isinstance(exc, KeyboardInterrupt | typer.Abort):
            console.print(Text("".join(traceback.format_exception(exc)).rstrip()))
        console.print(Text(error_paragraph(exc), style="red"))
        code = exit_code_for(exc)
        if on_error is not None:
            on_error(exc, code)
        raise typer.Exit(code) from None
