"""Stopping a run on Ctrl-C (SIGINT) or SIGTERM: promptly, and leaving no process behind.

The first signal raises :class:`~glade.cli.exit_codes.Interrupted` in the main thread, so the
runtime unwinds and shuts its backend down; further signals are ignored so that they cannot
interrupt that clean-up. A watchdog makes sure the process ends ``grace_s`` seconds after the
first signal even if the clean-up hangs: it kills this process's descendants and exits.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from glade.cli.exit_codes import Interrupted

__all__ = ["StopRequest", "kill_descendants", "stop_on_signals"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(slots=True)
class StopRequest:
    """Which stop signal arrived while the block ran (``None``: none)."""

    signum: int | None = None


@contextmanager
def stop_on_signals(*, grace_s: float, on_overdue: Callable[[int], None]) -> Iterator[StopRequest]:
    """Turn SIGINT/SIGTERM into :class:`Interrupted` while the block runs.

    If the block is still running ``grace_s`` seconds after the first signal,
    ``on_overdue(signum)`` is called from a watchdog thread; it must end the process.
    Outside the main thread (where signals cannot be handled) this only yields.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    finished = threading.Event()
    fired = threading.Event()

    def watchdog(signum: int) -> None:
        if not finished.wait(grace_s):
            on_overdue(signum)

    def handler(signum: int, frame: FrameType | None) -> None:
        if fired.is_set() or finished.is_set():
            return
        fired.set()
        request.signum = signum
        threading.Thread(target=watchdog, args=(signum,), name="glade-stop", daemon=True).start()
        raise Interrupted(signum)

    previous = {signum: signal.signal(signum, handler) for signum in _SIGNALS}
    try:
        yield request
    finally:
        finished.set()
        for signum, old in previous.items():
            signal.signal(signum, old)


def kill_descendants() -> None:
    """SIGKILL every process started by this one (and theirs), best effort."""
    pids = set(_descendants(os.getpid()))
    for child in multiprocessing.active_children():
        if child.pid is not None:
            pids.add(child.pid)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    """Child processes from ``/proc`` (Linux), depth first; empty where unavailable."""
    found: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        for children in Path(f"/proc/{parent}/task").glob("*/children"):
            try:
                kids = [int(p) for p in children.read_text().split()]
            except (OSError, ValueError):
                continue
            found.extend(kids)
            stack.extend(kids)
    return found
