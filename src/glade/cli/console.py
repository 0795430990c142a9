"""Where the CLI writes: rich consoles for stdout/stderr, logging set-up, JSON output."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.text import Text

__all__ = [
    "JsonOutput",
    "configure_logging",
    "glade_logs",
    "stderr_console",
    "stdout_console",
    "timed_formatter",
]


def stderr_console() -> Console:
    """Progress, logs, prompts and errors."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def stdout_console() -> Console:
    """Results (the summary table in text mode)."""
    return Console(highlight=False, soft_wrap=True)


class _Brief(logging.Filter):
    """Without --verbose: one line per message, each distinct line once, no tracebacks.

    A failed run is reported by the CLI itself, so the runtime's log of it is left out.
    """

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "glade.simulation.run" and record.levelno >= logging.ERROR:
            return False
        line = _first_line(record)
        if line in self._seen:
            return False
        self._seen.add(line)
        return True


class _BriefFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {_first_line(record)}"


def _first_line(record: logging.LogRecord) -> str:
    """The message's first line; if it holds a traceback, with the exception line added."""
    lines = [line for line in record.getMessage().strip().splitlines() if line.strip()]
    if not lines:
        return ""
    if len(lines) > 2 and any(line.startswith("Traceback (most recent") for line in lines):
        return f"{lines[0]} {lines[-1].strip()}"
    return lines[0]


_STYLES = {logging.WARNING: "yellow", logging.ERROR: "red", logging.CRITICAL: "bold red"}


class _ConsoleHandler(logging.Handler):
    """Writes log records through a rich console (so they print above a live display)."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = Text(self.format(record), style=_STYLES.get(record.levelno, "dim"))
            self.console.print(text)
        except Exception:
            self.handleError(record)


@contextmanager
def configure_logging(console: Console, *, verbose: bool) -> Iterator[None]:
    """Send the ``glade`` loggers to ``console`` while the block runs.

    With ``verbose``: DEBUG and up, with timestamps and tracebacks; otherwise warnings only,
    one line each. The logger's previous level is restored afterwards (this matters when
    the CLI is invoked in-process, e.g. by tests).
    """
    handler = _ConsoleHandler(console)
    if verbose:
        handler.setFormatter(timed_formatter())
    else:
        handler.addFilter(_Brief())
        handler.setFormatter(_BriefFormatter())
    with glade_logs(handler, level=logging.DEBUG if verbose else logging.WARNING):
        yield


def timed_formatter() -> logging.Formatter:
    """``12:03:04 INFO glade.superlink: ...``: the format of verbose and service logs."""
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")


@contextmanager
def glade_logs(handler: logging.Handler, *, level: int) -> Iterator[None]:
    """Send the ``glade`` loggers' records from ``level`` up to ``handler`` while the block
    runs; the handler goes and the previous level comes back afterwards."""
    logger = logging.getLogger("glade")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


class JsonOutput:
    """Writes exactly one JSON document to stdout, whichever thread asks first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def emit(self, document: dict[str, Any]) -> bool:
        """Print ``document``; returns False (and prints nothing) if one was printed already."""
        with self._lock:
            if self._done:
                return False
            self._done = True
            sys.stdout.write(json.dumps(document, allow_nan=False) + "\n")
            sys.stdout.flush()
            return True
