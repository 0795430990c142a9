"""Drive the real ``glade`` command in subprocesses and watch the processes it starts."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest


def glade_executable() -> list[str]:
    """The ``glade`` console script of this environment (``python -m glade.cli`` if absent)."""
    script = Path(sys.executable).with_name("glade")
    if script.is_file():
        return [str(script)]
    found = shutil.which("glade")
    return [found] if found else [sys.executable, "-m", "glade.cli"]


class GladeProcess:
    """A running ``glade`` command: its output, and every descendant process it ever had."""

    def __init__(self, args: list[str], *, cwd: Path) -> None:
        self.popen = subprocess.Popen(
            [*glade_executable(), *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # our own group: cleaned up as one, never by the terminal
        )
        self.stdout = ""
        self._stderr: list[str] = []
        self.descendants: dict[int, psutil.Process] = {}
        self._root = psutil.Process(self.popen.pid)
        self._threads = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._watch, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def _read_stderr(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self._stderr.append(line)

    def _read_stdout(self) -> None:
        assert self.popen.stdout is not None
        self.stdout = self.popen.stdout.read()

    def _watch(self) -> None:
        while self.popen.poll() is None:
            with contextlib.suppress(psutil.Error):
                for child in self._root.children(recursive=True):
                    self.descendants.setdefault(child.pid, child)
            time.sleep(0.05)

    def wait_for_stderr(self, text: str, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr:
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"glade never printed {text!r}; stderr:\n{self.stderr}")
            time.sleep(0.02)

    def wait(self, timeout: float) -> int:
        code = self.popen.wait(timeout)
        for thread in self._threads:
            thread.join(5)
        return code

    def living_descendants(self, *, grace: float = 2.0) -> list[int]:
        """Descendants still running ``grace`` seconds from now (zombies count as gone)."""
        deadline = time.monotonic() + grace
        while True:
            alive = [pid for pid, proc in self.descendants.items() if _running(proc)]
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.05)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        for proc in self.descendants.values():
            with contextlib.suppress(psutil.Error):
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)
        for thread in self._threads:
            thread.join(5)
        for pipe in (self.popen.stdout, self.popen.stderr):
            if pipe is not None:
                pipe.close()


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.fixture
def start_glade() -> Iterator[Callable[..., GladeProcess]]:
    """``start_glade(*args, cwd=...)``: run ``glade ARGS``; killed at the end if still alive."""
    started: list[GladeProcess] = []

    def start(*args: str, cwd: Path) -> GladeProcess:
        proc = GladeProcess(list(args), cwd=cwd)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
