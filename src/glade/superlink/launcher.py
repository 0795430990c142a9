"""`ServerAppProcess`: one run's ServerApp in its own process, its output in the run's log.

The process runs ``python -u -m glade.superlink.serverapp`` in its own session (so user code
and anything it starts can be stopped as one group), receives the run's secret token on
stdin (never on the command line), connects to ServerAppIO with TLS when given the CA to
trust (``root_certificates``), and has its stdout and stderr captured into the run's log
through ``on_output``. :meth:`ServerAppProcess.wait` ends it after a timeout;
:meth:`ServerAppProcess.terminate` ends it on request (SIGTERM, then SIGKILL after a grace).
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Outcome", "ServerAppProcess", "local_address"]

logger = logging.getLogger(__name__)

_READ = 64 * 1024


def local_address(address: str) -> str:
    """How a process on this machine reaches a server bound to ``address``."""
    host, _, port = address.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    return f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How the process ended: its exit code, and whether we ended it (and why)."""

    returncode: int
    stopped: bool
    timed_out: bool


class ServerAppProcess:
    """A started ServerApp process (see the module docstring)."""

    def __init__(
        self,
        *,
        python: str,
        run_id: int,
        token: str,
        serverappio_address: str,
        app_dir: Path,
        server_app: str,
        on_output: Callable[[str], None],
        object_dir: Path | None = None,
        root_certificates: Path | None = None,
    ) -> None:
        command = [
            python,
            "-u",
            "-m",
            "glade.superlink.serverapp",
            "--run-id",
            str(run_id),
            "--serverappio",
            local_address(serverappio_address),
            "--app-dir",
            str(app_dir),
            "--server-app",
            server_app,
        ]
        if object_dir is not None:
            command += ["--object-dir", str(object_dir)]
        if root_certificates is not None:  # ServerAppIO speaks TLS
            command += ["--root-certificates", str(root_certificates)]
        self._lock = threading.Lock()
        self._stopped = False
        self._timed_out = False
        self._proc = subprocess.Popen(
            command,
            cwd=app_dir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write(token.encode() + b"\n")
            self._proc.stdin.close()
        except BrokenPipeError:
            pass  # it died at once; wait() reports how
        self._reader = threading.Thread(
            target=self._read_output,
            args=(self._proc.stdout.fileno(), on_output),
            name=f"glade-run-{run_id}-log",
            daemon=True,
        )
        self._reader.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _read_output(self, fd: int, on_output: Callable[[str], None]) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        while True:
            try:
                data = os.read(fd, _READ)
            except OSError:
                data = b""
            text = decoder.decode(data, final=not data)
            if text:
                try:
                    on_output(text)
                except Exception:  # the log must not kill the reader (or the run)
                    logger.exception("cannot store the output of ServerApp pid %d", self.pid)
            if not data:
                return

    def wait(self, *, timeout: float | None, grace_s: float) -> Outcome:
        """Wait for the process to end (ending it after ``timeout`` seconds)."""
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with self._lock:
                self._timed_out = not self._stopped
            self.terminate(grace_s=grace_s, wait=True)
        self._proc.wait()
        self._kill_group(signal.SIGKILL)  # whatever user code left behind
        self._reader.join(timeout=5.0)
        if not self._reader.is_alive():
            assert self._proc.stdout is not None
            self._proc.stdout.close()
        with self._lock:
            return Outcome(self._proc.returncode, self._stopped, self._timed_out)

    def stop(self, *, grace_s: float) -> None:
        """End the process on request (its outcome reports ``stopped``); returns at once."""
        with self._lock:
            if self._timed_out:
                return
            self._stopped = True
        threading.Thread(
            target=self.terminate, kwargs={"grace_s": grace_s, "wait": True}, daemon=True
        ).start()

    def terminate(self, *, grace_s: float, wait: bool) -> None:
        """SIGTERM the process group; SIGKILL it if it is still there after ``grace_s``."""
        if self._proc.poll() is not None:
            return
        self._kill_group(signal.SIGTERM)
        if not wait:
            return
        try:
            self._proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            logger.warning("ServerApp pid %d ignored SIGTERM; killing it", self.pid)
            self._kill_group(signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the process group at once (if it is still there)."""
        if self._proc.poll() is None:
            self._kill_group(signal.SIGKILL)

    def _kill_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)
