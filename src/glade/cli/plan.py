"""What ``glade run`` will do, resolved and checked before anything starts: a :class:`RunPlan`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glade.client import ClientApp
from glade.errors import ConfigError
from glade.project import FederationConfig, ProjectConfig, load_app, parse_run_config
from glade.server import ServerApp

__all__ = ["RemotePlan", "RunPlan", "merge_run_config", "plan_remote", "plan_run"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPlan:
    """A checked simulation run: the project, the federation and the final run config."""

    project: ProjectConfig
    federation: FederationConfig
    run_config: Mapping[str, Any]
    num_supernodes: int
    backend: str
    backend_config: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RemotePlan:
    """A checked run on a deployment: the project, the SuperLink and the final run config."""

    project: ProjectConfig
    federation: FederationConfig
    run_config: Mapping[str, Any]
    address: str
    insecure: bool
    root_certificates: Path | None = None
    signing_key: Path | None = None
    """The federation's ``signing-key``: the publisher key that signs the bundle."""


def plan_run(app_dir: Path, federation: str | None, run_config: str | None) -> RunPlan | RemotePlan:
    """Read the project in ``app_dir``, pick the federation, apply the overrides, check all.

    A federation with an ``address`` gives a :class:`RemotePlan` (the apps are imported on
    the SuperLink and the SuperNodes, not here). Raises :class:`~glade.ConfigError` for
    anything wrong in the configuration and :class:`~glade.AppLoadError` if the apps of a
    simulation cannot be imported.
    """
    project = ProjectConfig.from_dir(app_dir)
    fed = project.federation(federation)
    if not fed.is_simulation:
        return plan_remote(project, fed, run_config)
    options = fed.options
    plan = RunPlan(
        project=project,
        federation=fed,
        run_config=merge_run_config(project.run_config, parse_run_config(run_config)),
        num_supernodes=fed.num_supernodes,
        backend=_option(fed, "backend", str, "local"),
        backend_config=_backend_config(fed),
        seed=_option(fed, "seed", int, None) if "seed" in options else None,
    )
    load_app(project.server_app, kind=ServerApp, app_dir=project.root)
    load_app(project.client_app, kind=ClientApp, app_dir=project.root)
    return plan


def plan_remote(
    project: ProjectConfig, fed: FederationConfig, run_config: str | None
) -> RemotePlan:
    """The :class:`RemotePlan` of a deployment federation (address and TLS options)."""
    address, roots = remote_options(fed, root=project.root)
    return RemotePlan(
        project=project,
        federation=fed,
        run_config=merge_run_config(project.run_config, parse_run_config(run_config)),
        address=address,
        insecure=roots is None,
        root_certificates=roots,
        signing_key=signing_key_option(fed, root=project.root),
    )


def signing_key_option(fed: FederationConfig, *, root: Path) -> Path | None:
    """The federation's ``signing-key`` (relative to the project folder ``root``), checked."""
    value = fed.options.get("signing-key")
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"federation {fed.name!r}: signing-key must be a file path")
    path = (root / value).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(
            f"federation {fed.name!r}: signing-key file {path} does not exist (set in "
            f"[tool.glade.federations.{fed.name}], relative to the project folder; make a "
            "publisher key with 'glade keys create')"
        )
    return path


def remote_options(fed: FederationConfig, *, root: Path) -> tuple[str, Path | None]:
    """``(address, root_certificates)`` of a deployment federation, checked.

    ``root_certificates`` (relative to the project folder ``root``) turns TLS on; without
    it ``insecure = true`` must be set (then it is None), so that nobody believes a
    connection is protected when it is not.
    """
    address = fed.options.get("address")
    host, sep, port = str(address).rpartition(":")
    if not isinstance(address, str) or not sep or not host or not port.isdigit():
        raise ConfigError(
            f'federation {fed.name!r}: address must be "HOST:PORT" of the SuperLink\'s '
            f'Control API (e.g. "127.0.0.1:9093"), got {address!r}'
        )
    known = {"address", "insecure", "root-certificates", "signing-key"}
    unknown = sorted(set(fed.options) - known)
    if unknown:
        raise ConfigError(
            f"federation {fed.name!r}: unknown option(s) {unknown}; a deployment federation "
            "takes address, root-certificates, insecure and signing-key"
        )
    return address, _root_certificates(fed, root)


def _root_certificates(fed: FederationConfig, root: Path) -> Path | None:
    insecure = fed.options.get("insecure", False)
    if not isinstance(insecure, bool):
        raise ConfigError(f"federation {fed.name!r}: insecure must be true or false")
    roots = fed.options.get("root-certificates")
    table = f"[tool.glade.federations.{fed.name}]"
    if roots is not None and not isinstance(roots, str):
        raise ConfigError(f"federation {fed.name!r}: root-certificates must be a file path")
    if roots is not None and insecure:
        raise ConfigError(
            f"federation {fed.name!r}: both insecure = true and root-certificates are set in "
            f"{table}; drop one of them"
        )
    if roots is None and not insecure:
        raise ConfigError(
            f"federation {fed.name!r}: connections to a SuperLink need TLS: set "
            f'root-certificates = "PATH" (the CA that signed the SuperLink\'s certificate) in '
            f"{table}, or insecure = true to connect unencrypted on a trusted network"
        )
    if roots is None:
        return None
    path = (root / roots).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(
            f"federation {fed.name!r}: root-certificates file {path} does not exist "
            f"(set in {table}, relative to the project folder)"
        )
    return path


def merge_run_config(defaults: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` with ``overrides`` applied; unknown keys and wrong types are errors.

    An int may override a float (``lr=1`` becomes ``1.0``) and anything may override a
    string (``name=42`` becomes ``"42"``); otherwise the type must match the default's.
    """
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        known = ", ".join(sorted(defaults)) or "none"
        raise ConfigError(
            f"unknown run-config key(s) {', '.join(map(repr, unknown))}: "
            f"[tool.glade.app.config] in pyproject.toml defines {known}; add a key there "
            "to make it configurable"
        )
    merged = dict(defaults)
    for key, value in overrides.items():
        merged[key] = _coerce(key, value, defaults[key])
    return merged


def _coerce(key: str, value: Any, default: Any) -> Any:
    if isinstance(default, str) and isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(default, str) and isinstance(value, int | float):
        return str(value)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    same_type = isinstance(value, type(default)) and (
        isinstance(value, bool) == isinstance(default, bool)
    )
    if not same_type:
        raise ConfigError(
            f"run-config {key!r} is {_kind(default)} in pyproject.toml ({default!r}), "
            f"but the override gives {_kind(value)} ({value!r})"
        )
    return value


def _kind(value: Any) -> str:
    """``an integer``, ``a string``, ... (for messages)."""
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    if type(value) in names:
        return names[type(value)]
    return (
        "a list"
        if isinstance(value, list)
        else "a table"
        if isinstance(value, dict)
        else (f"a {type(value).__name__}")
    )


def _option(fed: FederationConfig, name: str, kind: type, default: Any) -> Any:
    value = fed.options.get(name, default)
    if value is not default and (not isinstance(value, kind) or isinstance(value, bool)):
        raise ConfigError(f"federation {fed.name!r}: {name} must be {_kind(kind())}, got {value!r}")
    return value


def _backend_config(fed: FederationConfig) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if "num-workers" in fed.options:
        workers = _option(fed, "num-workers", int, None)
        if workers < 1:
            raise ConfigError(f"federation {fed.name!r}: num-workers must be >= 1, got {workers}")
        config["num_workers"] = workers
    if "client-resources" in fed.options:
        resources = fed.options["client-resources"]
        if not isinstance(resources, Mapping):
            raise ConfigError(
                f"federation {fed.name!r}: client-resources must be a table, "
                f"e.g. {{ num-cpus = 1 }}, got {resources!r}"
            )
        config["client_resources"] = {k.replace("-", "_"): v for k, v in resources.items()}
    return config
