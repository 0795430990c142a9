"""Helpers every test folder shares: waiting, ports, ``glade`` processes, tiny app projects.

``pythonpath = ["tests"]`` (pyproject.toml) puts this module on ``sys.path``, so any test
module imports it as ``from glade_testing import ...``. ``conftest.py`` files hold fixtures
only: several of them are loaded in one session and none is importable by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import psutil

if TYPE_CHECKING:
    from click.testing import Result

    from glade.superlink import SuperLink, SuperLinkConfig

T = TypeVar("T")

STARTUP_S = 60.0  # how long a service may take to write its ready file


# -- waiting ---------------------------------------------------------------------------------
def wait_for(predicate: Callable[[], T], timeout: float, *, interval: float = 0.05) -> T:
    """Call ``predicate`` until it returns something true (returned) or ``timeout`` passes
    (its last, false value is returned): ``assert wait_for(lambda: ..., 5)``."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()) and time.monotonic() < deadline:
        time.sleep(interval)
    return value


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nobody listened on a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_ready_file(
    path: Path, *, proc: subprocess.Popen[Any], what: str, timeout: float = STARTUP_S
) -> dict[str, Any]:
    """The JSON a service writes once it is ready; fails if the process exits first."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ValueError):
            data: dict[str, Any] = json.loads(path.read_text())
            return data
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} was not ready within {timeout:g} s")
        time.sleep(0.05)


def one_json_document(stdout: str) -> dict[str, Any]:
    """The one line of JSON ``--format json`` prints on stdout (anything else fails)."""
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, f"expected exactly one line of JSON on stdout, got {stdout!r}"
    doc = json.loads(lines[0])
    assert isinstance(doc, dict)
    return doc


# -- processes -------------------------------------------------------------------------------
def glade_executable() -> list[str]:
    """The ``glade`` console script of this environment (``python -m glade.cli`` if absent)."""
    script = Path(sys.executable).with_name("glade")
    if script.is_file():
        return [str(script)]
    found = shutil.which("glade")
    return [found] if found else [sys.executable, "-m", "glade.cli"]


def run_glade(*args: str, cwd: Path, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run ``glade ARGS`` to its end (output captured as text)."""
    return subprocess.run(
        [*glade_executable(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def glade_in_process(*args: str, input: str | None = None) -> Result:
    """Invoke ``glade ARGS`` in this process; the result keeps stdout and stderr apart."""
    from typer.testing import CliRunner

    from glade.cli.main import app

    return CliRunner().invoke(app, list(args), input=input, catch_exceptions=False)


def is_running(proc: psutil.Process | int) -> bool:
    """Whether the process runs (a zombie counts as gone)."""
    try:
        proc = proc if isinstance(proc, psutil.Process) else psutil.Process(proc)
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def living(procs: Iterable[psutil.Process | int], *, grace: float = 0.0) -> list[int]:
    """The pids of ``procs`` still running ``grace`` seconds from now (or once none is)."""
    procs = list(procs)

    def alive() -> list[int]:
        return [p if isinstance(p, int) else p.pid for p in procs if is_running(p)]

    wait_for(lambda: not alive(), grace)
    return alive()


class GladeProcess:
    """A ``glade`` command running in its own process group (never signalled by a terminal).

    Its stdout and stderr go to ``log`` (one file) or, without one, into :attr:`stdout` and
    :attr:`stderr`. With ``watch``, every descendant process it ever had is remembered in
    :attr:`descendants`. :meth:`kill` ends the group and every descendant seen.
    """

    def __init__(
        self, args: list[str], *, cwd: Path, log: Path | None = None, watch: bool = False
    ) -> None:
        self.args = args
        self.log = log
        self.stdout = ""
        self._stderr: list[str] = []
        self.descendants: dict[int, psutil.Process] = {}
        out: Any = open(log, "ab") if log is not None else subprocess.PIPE  # noqa: SIM115
        try:
            self.popen = subprocess.Popen(
                [*glade_executable(), *args],
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT if log is not None else subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=log is None,
                start_new_session=True,
            )
        finally:
            if log is not None:
                out.close()
        self._threads = []
        if log is None:
            self._threads += [self._thread(self._read_stdout), self._thread(self._read_stderr)]
        if watch:
            self._threads.append(self._thread(self._watch))

    def _thread(self, target: Callable[[], None]) -> threading.Thread:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        return thread

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def stderr(self) -> str:
        """What it wrote on stderr (with ``log``: everything it wrote)."""
        if self.log is not None:
            return self.log.read_text(errors="replace")
        return "".join(self._stderr)

    def _read_stdout(self) -> None:
        assert self.popen.stdout is not None
        self.stdout = self.popen.stdout.read()

    def _read_stderr(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self._stderr.append(line)

    def _watch(self) -> None:
        root = psutil.Process(self.popen.pid)
        while self.popen.poll() is None:
            with contextlib.suppress(psutil.Error):
                for child in root.children(recursive=True):
                    self.descendants.setdefault(child.pid, child)
            time.sleep(0.05)

    def wait_for_stderr(self, text: str, *, timeout: float) -> None:
        """Wait until ``text`` appears on stderr; fails if the process ends first."""
        if not wait_for(lambda: text in self.stderr or self.popen.poll() is not None, timeout):
            raise AssertionError(f"glade never printed {text!r}; stderr:\n{self.stderr}")
        if text not in self.stderr:
            raise AssertionError(f"glade ended without printing {text!r}:\n{self.stderr}")

    def wait(self, timeout: float) -> int:
        code = self.popen.wait(timeout)
        for thread in self._threads:
            thread.join(5)
        return code

    def terminate(self, timeout: float = 10.0) -> float:
        """SIGTERM; returns how long the process took to exit."""
        started = time.monotonic()
        self.popen.send_signal(signal.SIGTERM)
        self.popen.wait(timeout)
        return time.monotonic() - started

    def living_descendants(self, *, grace: float = 2.0) -> list[int]:
        """Descendants (seen with ``watch``) still running ``grace`` seconds from now."""
        return living(self.descendants.values(), grace=grace)

    def kill(self) -> None:
        """SIGKILL the group and every descendant seen; then reap and close the pipes."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        for proc in self.descendants.values():
            with contextlib.suppress(psutil.Error):
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)
        for thread in self._threads:
            thread.join(5)
        for pipe in (self.popen.stdout, self.popen.stderr):
            if pipe is not None:
                pipe.close()


# -- app projects ----------------------------------------------------------------------------
def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def toml_tables(tables: Mapping[str, Mapping[str, Any]]) -> str:
    """``{"a.b": {"k": 1}}`` as TOML (``[a.b]`` then ``k = 1``); nested mappings become
    sub-tables."""
    out: list[str] = []
    for name, table in tables.items():
        out.append(f"[{name}]")
        out += [f"{k} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, Mapping)]
        out.append("")
        subtables = {f"{name}.{k}": v for k, v in table.items() if isinstance(v, Mapping)}
        if subtables:
            out.append(toml_tables(subtables))
    return "\n".join(out)


def app_files(
    package: str,
    *,
    server: str,
    client: str,
    config: Mapping[str, Any],
    name: str | None = None,
    version: str = "1.0.0",
    modules: tuple[str, str] = ("server", "client"),
    server_ref: str | None = None,
    client_ref: str | None = None,
    federations: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The files of a Glade project (path -> text): a package with a server and a client
    module (``modules``), and a ``pyproject.toml`` naming them with the run ``config``."""
    server_module, client_module = modules
    tables: dict[str, Mapping[str, Any]] = {
        "project": {"name": name or package, "version": version},
        "tool.glade.app": {
            "server-app": server_ref or f"{package}.{server_module}:app",
            "client-app": client_ref or f"{package}.{client_module}:app",
        },
        "tool.glade.app.config": config,
    }
    if federations is not None:
        tables["tool.glade.federations"] = federations
    return {
        "pyproject.toml": toml_tables(tables),
        f"{package}/__init__.py": "",
        f"{package}/{server_module}.py": textwrap.dedent(server),
        f"{package}/{client_module}.py": textwrap.dedent(client),
    }


def write_files(root: Path, files: Mapping[str, str | bytes]) -> Path:
    """Write ``files`` (relative path -> content) below ``root``; returns ``root``."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


# -- an in-process SuperLink -----------------------------------------------------------------
def superlink_config(**options: Any) -> SuperLinkConfig:
    """A SuperLink config for tests: free ports on 127.0.0.1, quick heartbeats and stops."""
    from glade.superlink import SuperLinkConfig

    defaults: dict[str, Any] = {
        "control_address": "127.0.0.1:0",
        "fleet_address": "127.0.0.1:0",
        "serverappio_address": "127.0.0.1:0",
        "heartbeat_interval_s": 0.5,
        "node_offline_timeout_s": 2.0,
        "stop_grace_s": 1.0,
    }
    return SuperLinkConfig(**{**defaults, **options})


def start_superlink(**options: Any) -> SuperLink:
    """A started SuperLink (:func:`superlink_config` with ``options``); stop it yourself."""
    from glade.superlink import SuperLink

    link = SuperLink(superlink_config(**options))
    link.start()
    return link


def start_mutual_tls_superlink(certs: Any) -> SuperLink:
    """A started SuperLink with a bulk port, TLS from ``certs`` (DevCertificates) and client
    certificates required, without user or node accounts; stop it yourself."""
    return start_superlink(
        bulk=True,
        insecure=False,
        ssl_certfile=certs.server_cert,
        ssl_keyfile=certs.server_key,
        ssl_ca_certfile=certs.ca_cert,
        node_auth=False,
        user_auth=False,
    )
