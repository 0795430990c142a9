"""`RunManager`: the run queue and lifecycle, one ServerApp process per active run.

pending -> starting (bundle extracted, process spawned) -> running -> finished with
completed (exit code 0) | failed (crash, import error, timeout, SuperLink restart; the reason
holds the last lines of the log) | stopped (StopRun). At most ``max_concurrent_runs`` runs
are starting or running; the others wait as pending, oldest first.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from glade.bundle import extract_bundle
from glade.bundle_policy import BundlePolicy
from glade.errors import AccessDeniedError, InvalidStateError, NotFoundError
from glade.server.events import History, RunEvent
from glade.superlink.bundles import AppBundle
from glade.superlink.config import SuperLinkConfig
from glade.superlink.garbage import APPS_DIR, GarbageCollector
from glade.superlink.launcher import Outcome, ServerAppProcess
from glade.superlink.notify import Notifier
from glade.superlink.object_store import ObjectStore
from glade.superlink.state import RunInfo, RunStatus, State, SubStatus

__all__ = ["RunManager", "log_topic"]

logger = logging.getLogger(__name__)

MAX_LOG_BYTES = 64 * 1024 * 1024
_REASON_LINES = 25


def log_topic(run_id: int) -> tuple[str, int]:
    """Notifier topic of a run's log and status."""
    return ("log", run_id)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class RunManager:
    """Queue, start, supervise and stop runs (see the module docstring)."""

    def __init__(
        self,
        *,
        state: State,
        store: ObjectStore,
        notifier: Notifier,
        garbage: GarbageCollector,
        config: SuperLinkConfig,
        on_finished: Callable[[int], None] = lambda run_id: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._state = state
        self._store = store
        self._notifier = notifier
        self._garbage = garbage
        self._config = config
        self._on_finished = on_finished
        self._clock = clock
        self._lock = threading.Lock()
        self._active: dict[int, ServerAppProcess | None] = {}
        self._stopping: set[int] = set()
        self._threads: list[threading.Thread] = []
        self._histories: dict[int, History] = {}
        self._serverappio = ""
        self._closed = False

    @property
    def bundle_policy(self) -> BundlePolicy:
        """What app bundles must satisfy here (``--max-bundle-size``, ``--bundle-file-types``)."""
        return self._config.bundle_policy

    # -- lifecycle of the manager ----------------------------------------------------------
    def recover(self) -> list[int]:
        """Fail the runs a previous SuperLink left starting or running (call before open)."""
        failed = []
        for status in (RunStatus.STARTING, RunStatus.RUNNING):
            for run in self._state.list_runs(status=status):
                why = f"the SuperLink restarted while the run was {status}"
                self._finish(run.run_id, SubStatus.FAILED, why, log=True)
                failed.append(run.run_id)
        return failed

    def open(self, serverappio_address: str) -> None:
        """Start launching runs; ServerApp processes connect to ``serverappio_address``."""
        self._serverappio = serverappio_address
        self._schedule()

    def close(self, *, grace_s: float) -> None:
        """Stop every active run (failed: the SuperLink stopped) and launch no more.

        ServerApps get SIGTERM, and SIGKILL if they are still there after ``grace_s``.
        """
        with self._lock:
            self._closed = True
            procs = [p for p in self._active.values() if p is not None]
            threads = list(self._threads)
        for proc in procs:
            proc.terminate(grace_s=grace_s, wait=False)
        deadline = time.monotonic() + grace_s
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        for proc in procs:
            proc.kill()
        for thread in threads:
            thread.join(timeout=1.0)

    # -- requests --------------------------------------------------------------------------
    def submit(
        self,
        bundle: AppBundle,
        *,
        run_config: Mapping[str, Any],
        federation_options: Mapping[str, Any],
        owner: str = "",
    ) -> int:
        """Queue a run of ``bundle``; returns its id."""
        if self._closed:
            raise InvalidStateError("the SuperLink is shutting down; submit the run again later")
        run = RunInfo(
            run_id=0,
            status=RunStatus.PENDING,
            bundle_id=bundle.bundle_id,
            server_app=bundle.server_app,
            client_app=bundle.client_app,
            app_publisher=bundle.publisher,
            app_name=bundle.name,
            app_version=bundle.version,
            run_config={**bundle.run_config, **run_config},
            federation_options=dict(federation_options),
            created_at=self._clock(),
            owner=owner,
        )
        run_id = self._state.create_run(run)
        self._log(run_id, f"run {run_id} queued: {bundle.publisher}/{bundle.name} {bundle.version}")
        self._schedule()
        return run_id

    def stop(self, run_id: int) -> bool:
        """Stop a run; False if it had already finished."""
        run = self._get(run_id)
        if run.finished:
            return False
        with self._lock:
            self._stopping.add(run_id)
            active = run_id in self._active
            proc = self._active.get(run_id)
        if not active:  # still pending: it never started
            return self._finish(run_id, SubStatus.STOPPED, "stopped by a user before it started")
        if proc is not None:
            proc.stop(grace_s=self._config.stop_grace_s)
        return True

    def authorize(self, run_id: int, token: str) -> RunInfo:
        """The run if ``token`` is its secret and it is running; else the matching error."""
        run = self._get(run_id)
        expected = self._state.get_run_token(run_id)
        if not token or not expected or not hmac.compare_digest(_token_hash(token), expected):
            raise AccessDeniedError(f"wrong or missing token for run {run_id}")
        if run.status != RunStatus.RUNNING:
            raise InvalidStateError(f"run {run_id} is {run.status} {run.sub_status}".rstrip())
        return run

    def report(self, run_id: int, events: Sequence[RunEvent]) -> None:
        """Add a ServerApp's events to the run's metric history (stored once per call; log
        followers are not woken: the history is not part of the log)."""
        with self._lock:
            history = self._histories.setdefault(run_id, History())
            for event in events:
                history.add(event)
            snapshot = json.dumps(history.to_dict())
        self._state.set_history(run_id, snapshot)

    def _get(self, run_id: int) -> RunInfo:
        run = self._state.get_run(run_id)
        if run is None:
            raise NotFoundError(f"unknown run id {run_id}")
        return run

    # -- scheduling ------------------------------------------------------------------------
    def _schedule(self) -> None:
        with self._lock:
            if self._closed or not self._serverappio:
                return
            free = self._config.max_concurrent_runs - len(self._active)
            if free <= 0:
                return
            pending = [
                r
                for r in self._state.list_runs(status=RunStatus.PENDING)
                if r.run_id not in self._active
            ]
            for run in pending[:free]:
                self._active[run.run_id] = None
                thread = threading.Thread(
                    target=self._run, args=(run,), name=f"glade-run-{run.run_id}", daemon=True
                )
                self._threads = [t for t in self._threads if t.is_alive()] + [thread]
                thread.start()

    def _run(self, run: RunInfo) -> None:
        try:
            outcome = self._launch_and_wait(run)
            if outcome is not None:
                self._record(run.run_id, outcome)
        except Exception as exc:
            logger.exception("run %d: the ServerApp could not be started", run.run_id)
            self._finish(run.run_id, SubStatus.FAILED, f"the ServerApp could not start: {exc}")
        finally:
            with self._lock:
                self._active.pop(run.run_id, None)
                self._stopping.discard(run.run_id)
            self._schedule()

    def _launch_and_wait(self, run: RunInfo) -> Outcome | None:
        run_id = run.run_id
        if not self._state.transition_run(run_id, RunStatus.STARTING, now=self._clock()):
            return None  # stopped while pending
        self._notifier.notify(log_topic(run_id))
        app_dir = extract_bundle(  # once per bundle: a folder there is complete and verified
            self._store.path(run.bundle_id),
            self._app_cache / run.bundle_id,
            bundle_id=run.bundle_id,
        )
        token = secrets.token_urlsafe(32)
        self._state.set_run_token(run_id, _token_hash(token))
        with self._lock:
            if self._closed or run_id in self._stopping:
                why = "stopped by a user" if run_id in self._stopping else "the SuperLink stopped"
                sub = SubStatus.STOPPED if run_id in self._stopping else SubStatus.FAILED
                self._finish(run_id, sub, why)
                return None
            # running before the process exists: its first call must find the run running
            self._state.transition_run(run_id, RunStatus.RUNNING, now=self._clock())
            proc = self._active[run_id] = ServerAppProcess(
                python=self._config.python,
                run_id=run_id,
                token=token,
                serverappio_address=self._serverappio,
                app_dir=app_dir,
                server_app=run.server_app,
                on_output=lambda text: self._append_output(run_id, text),
                object_dir=self._store.root if self._config.local_object_access else None,
                root_certificates=self._config.serverappio_ca,
            )
        self._log(run_id, f"run {run_id} started: ServerApp {run.server_app} (pid {proc.pid})")
        return proc.wait(timeout=self._config.run_timeout_s, grace_s=self._config.stop_grace_s)

    @property
    def _app_cache(self) -> Path:
        return self._store.root / APPS_DIR

    def _record(self, run_id: int, outcome: Outcome) -> None:
        if outcome.stopped:
            self._finish(run_id, SubStatus.STOPPED, "stopped by a user", log=True)
        elif outcome.timed_out:
            why = f"the run took longer than its timeout of {self._config.run_timeout_s:g}s"
            self._finish(run_id, SubStatus.FAILED, self._with_tail(run_id, why), log=True)
        elif outcome.returncode == 0:
            self._finish(run_id, SubStatus.COMPLETED, "", log=True)
        elif self._closed:
            self._finish(run_id, SubStatus.FAILED, "the SuperLink stopped", log=True)
        else:
            code = outcome.returncode
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            why = self._with_tail(run_id, f"the ServerApp process {how}")
            self._finish(run_id, SubStatus.FAILED, why, log=True)

    def _with_tail(self, run_id: int, why: str) -> str:
        size = self._state.log_size(run_id)
        text, _ = self._state.read_log(run_id, offset=max(0, size - 8192))
        lines = [line for line in text.splitlines() if not line.startswith("[superlink]")]
        tail = "\n".join(lines[-_REASON_LINES:])
        return f"{why}; the end of its log:\n{tail}" if tail else why

    def _finish(self, run_id: int, sub_status: str, reason: str, *, log: bool = False) -> bool:
        run = self._state.get_run(run_id)
        if run is None or run.finished:
            return False
        if log or sub_status != SubStatus.COMPLETED:  # before the status: followers see it
            first = reason.splitlines()[0] if reason else ""
            self._log(
                run_id, f"run {run_id} finished: {sub_status}" + (f" ({first})" if first else "")
            )
        done = self._state.transition_run(
            run_id, RunStatus.FINISHED, now=self._clock(), sub_status=sub_status, reason=reason
        )
        if done:
            self._state.delete_run_messages(run_id)
            self._garbage.release(("run", run_id))
            self._garbage.mark_dirty()
            with self._lock:
                self._histories.pop(run_id, None)
            self._notifier.notify(log_topic(run_id), ("run", run_id))
            self._on_finished(run_id)
        return done

    # -- logs ------------------------------------------------------------------------------
    def _append_output(self, run_id: int, text: str) -> None:
        size = self._state.log_size(run_id)
        if size >= MAX_LOG_BYTES:
            return
        if size + len(text.encode()) > MAX_LOG_BYTES:
            text = (
                text[: MAX_LOG_BYTES - size] + "\n[superlink] log limit reached; output dropped\n"
            )
        self._state.append_log(run_id, text)
        self._notifier.notify(log_topic(run_id))

    def _log(self, run_id: int, line: str) -> None:
        self._state.append_log(run_id, f"[superlink] {line}\n")
        self._notifier.notify(log_topic(run_id))
