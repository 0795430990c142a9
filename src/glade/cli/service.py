"""What the long-running commands share: data folders, logging, TLS flags, stop signals."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from glade.cli.console import glade_logs, timed_formatter
from glade.cli.interrupt import kill_descendants

__all__ = ["StopSignals", "data_home", "warn_insecure", "service_logging"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def data_home() -> Path:
    """Where Glade keeps state by default: ``$XDG_DATA_HOME/glade`` (``~/.local/share``)."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "glade"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "glade"


def warn_insecure(what: str) -> None:
    """Say loudly, on every start, that a service runs without TLS (``--insecure``)."""
    logging.getLogger("glade.cli").warning(
        "the %s runs WITHOUT TLS (--insecure): traffic is unencrypted and unauthenticated; "
        "use it on a trusted network only",
        what,
    )


@contextmanager
def service_logging(*, verbose: bool) -> Iterator[None]:
    """Log ``glade`` records (INFO and up; DEBUG with ``verbose``) to stderr with times."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(timed_formatter())
    with glade_logs(handler, level=logging.DEBUG if verbose else logging.INFO):
        yield


class StopSignals:
    """Turns SIGINT/SIGTERM into :attr:`received` while in use (``with StopSignals() as s``).

    A second signal while the service stops kills this process's children and exits at once.
    """

    def __init__(self) -> None:
        self.received = threading.Event()
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in _SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, old in self._previous.items():
            signal.signal(signum, old)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received.is_set():
            kill_descendants()
            os._exit(128 + signum)
        self.signum = signum
        self.received.set()

    def wait(self, *, until: Callable[[], bool] = lambda: False, tick: float = 0.25) -> None:
        """Block until a stop signal arrives or ``until()`` becomes true."""
        while not self.received.wait(tick):
            if until():
                return
