"""App bundles as the SuperLink sees them: check one and describe its app.

Checking, reading and extraction are :mod:`glade.bundle`'s (every file against the
manifest, safe paths, a present publisher signature against the manifest, and the
SuperLink's :class:`~glade.bundle_policy.BundlePolicy`: ``--max-bundle-size`` and
``--bundle-file-types``); this module adds what the SuperLink needs on top: the ServerApp
and ClientApp references and the default run config from the bundled ``pyproject.toml``
(``[tool.glade.app]``). A bad bundle raises :class:`~glade.errors.SerdeError` or
:class:`~glade.errors.ConfigError` (answered INVALID_ARGUMENT), one over the size cap
:class:`~glade.errors.LimitExceededError` (RESOURCE_EXHAUSTED), with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glade.bundle import bundle_signer, read_bundle, read_bundle_pyproject
from glade.bundle_policy import BundlePolicy
from glade.errors import ConfigError
from glade.project import ProjectConfig

__all__ = ["AppBundle", "read_app_bundle"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AppBundle:
    """What the SuperLink needs to know about a checked bundle."""

    bundle_id: str
    publisher: str
    name: str
    version: str
    server_app: str
    client_app: str
    run_config: Mapping[str, Any] = field(default_factory=dict)
    signer: str | None = None
    """Fingerprint of the publisher key that signed it (None: unsigned)."""


def read_app_bundle(
    path: str | Path, *, bundle_id: str, policy: BundlePolicy | None = None
) -> AppBundle:
    """Check the bundle stored at ``path`` completely (against ``policy``); describe its app.

    ``policy`` None checks only the hard limits (:meth:`BundlePolicy.unrestricted`).
    """
    manifest = read_bundle(Path(path), bundle_id=bundle_id, policy=policy)
    signer = bundle_signer(Path(path))
    pyproject = read_bundle_pyproject(Path(path))
    try:
        project = ProjectConfig.from_mapping(pyproject, root=Path("."))
    except ConfigError as exc:
        raise ConfigError(f"bad app bundle: its pyproject.toml: {exc}") from None
    return AppBundle(
        bundle_id=bundle_id,
        publisher=manifest.publisher,
        name=manifest.name,
        version=manifest.version,
        server_app=project.server_app,
        client_app=project.client_app,
        run_config=dict(project.run_config),
        signer=signer.fingerprint if signer is not None else None,
    )
