"""What the deployment commands share: the federation's SuperLink, and runs as documents."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glade.cli.credentials import load_login
from glade.cli.plan import remote_options
from glade.errors import AuthenticationError, ConfigError, TransportError
from glade.project import ProjectConfig
from glade.server import History

if TYPE_CHECKING:  # the gRPC machinery is imported when a command needs it
    from glade.superlink.client import ControlClient
    from glade.superlink.state import RunInfo

__all__ = [
    "Federation",
    "connect",
    "elapsed_s",
    "find_federation",
    "history_from_dict",
    "run_document",
    "run_status",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Federation:
    """A deployment federation: its name, SuperLink (Control API) address and TLS roots.

    ``root_certificates`` None: the connection is unencrypted (``insecure = true``).
    """

    name: str
    address: str
    root_certificates: Path | None = None


def find_federation(app_dir: Path, name: str | None) -> Federation:
    """Federation ``name`` (or the default) of the project in ``app_dir``; it must be remote."""
    project = ProjectConfig.from_dir(app_dir)
    fed = project.federation(name)
    if fed.is_simulation:
        raise ConfigError(
            f"federation {fed.name!r} is a local simulation: it keeps no runs to list, read "
            'or stop. Name a deployment federation (one with address = "HOST:PORT" of a '
            "SuperLink) from [tool.glade.federations] in "
            f"{project.root / 'pyproject.toml'}"
        )
    address, roots = remote_options(fed, root=project.root)
    return Federation(name=fed.name, address=address, root_certificates=roots)


@contextmanager
def connect(federation: Federation, *, login: bool = True) -> Iterator[ControlClient]:
    """A Control API client that sends the login token of ``glade login`` (unless not
    ``login``); an unreachable SuperLink or a missing login becomes one clear error."""
    from glade.superlink.client import ControlClient

    stored = load_login(federation.address) if login else None
    client = ControlClient(
        federation.address,
        root_certificates=federation.root_certificates,
        token=stored.token if stored is not None else "",
    )
    try:
        yield client
    except TransportError as exc:
        raise TransportError(_unreachable(federation, exc)) from None
    except AuthenticationError as exc:
        if not login:
            raise
        raise AuthenticationError(_not_logged_in(federation, exc)) from None
    finally:
        client.close()


def _not_logged_in(federation: Federation, exc: AuthenticationError) -> str:
    why = str(exc).split(": log in with", 1)[0].rstrip(". ")
    return (
        f"the SuperLink of federation {federation.name!r} at {federation.address} refused the "
        f"call ({why}): run 'glade login {federation.name}' to log in, then try again"
    )


def _unreachable(federation: Federation, exc: TransportError) -> str:
    table = f"[tool.glade.federations.{federation.name}]"
    where = f"the SuperLink of federation {federation.name!r} at {federation.address}"
    text = str(exc)
    lowered = text.lower()
    if federation.root_certificates is not None and (
        "certificate_verify_failed" in lowered or "handshake failed" in lowered
    ):
        return (
            f"cannot verify the TLS certificate of {where}: it is not signed by the CA in "
            f"root-certificates ({federation.root_certificates}) or is not valid for this "
            f"address. Point root-certificates in {table} to the CA that signed the "
            f"SuperLink's certificate. ({text})"
        )
    tls = "with TLS" if federation.root_certificates is not None else "without TLS"
    return (
        f"cannot reach {where} ({tls}): {text}. Is it running? Start one with 'glade "
        "superlink' (or 'glade dev-federation' on this machine), or fix the address in "
        f"{table}. If the SuperLink uses TLS, set root-certificates there (and not "
        "insecure = true); if it runs with --insecure, set insecure = true."
    )


def run_status(run: RunInfo) -> str:
    """``pending``, ``starting``, ``running``, or how a finished run ended."""
    return run.sub_status or run.status if run.finished else run.status


def elapsed_s(run: RunInfo, now: float) -> float:
    """Seconds the run has been running (until it finished)."""
    start = run.started_at or run.created_at
    end = run.finished_at or (now if run.started_at else start)
    return max(0.0, end - start)


def history_from_dict(data: dict[str, Any]) -> History:
    """The inverse of :meth:`~glade.server.History.to_dict`."""

    def by_round(name: str) -> dict[str, dict[int, Any]]:
        stages = data.get(name) or {}
        return {stage: {int(r): v for r, v in rounds.items()} for stage, rounds in stages.items()}

    return History(
        metrics=by_round("metrics"), failures=by_round("failures"), replies=by_round("replies")
    )


def run_history(run: RunInfo) -> dict[str, Any]:
    """The run's metric history as a JSON-ready dict (empty stages if none was reported)."""
    if run.history_json:
        loaded: dict[str, Any] = json.loads(run.history_json)
        return loaded
    return History().to_dict()


def run_document(run: RunInfo, now: float) -> dict[str, Any]:
    """One run as JSON: the fields of ``glade run --format json`` plus its lifecycle."""
    return {
        "run_id": run.run_id,
        "status": run_status(run),
        "elapsed_s": round(elapsed_s(run, now), 4),
        "reason": run.reason,
        "history": run_history(run),
        "app": f"{run.app_publisher}/{run.app_name}",
        "app_version": run.app_version,
        "bundle_id": run.bundle_id,
        "owner": run.owner,
        "run_config": dict(run.run_config),
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
    }


def _iso(ts: float) -> str | None:
    if not ts:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))
