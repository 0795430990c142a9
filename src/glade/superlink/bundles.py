"""App bundles as the SuperLink sees them: check one, read its app, extract it once.

Checking and extraction are :mod:`glade.bundle`'s (every file against the manifest, safe
paths, size caps); this module adds what the SuperLink needs on top: the ServerApp and
ClientApp references and the default run config from the bundled ``pyproject.toml``
(``[tool.glade.app]``). A bad bundle raises :class:`~glade.errors.SerdeError` or
:class:`~glade.errors.ConfigError` (answered INVALID_ARGUMENT), with the reason.
"""

from __future__ import annotations

import sys
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glade import bundle as bundles
from glade.errors import ConfigError
from glade.project import ProjectConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["AppBundle", "extract_bundle", "read_bundle"]


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


def read_bundle(path: str | Path, *, bundle_id: str) -> AppBundle:
    """Check the bundle stored at ``path`` completely and describe its app."""
    manifest = bundles.read_bundle(Path(path), bundle_id=bundle_id)
    if "pyproject.toml" not in manifest.files:
        raise ConfigError("bad app bundle: it has no pyproject.toml")
    try:
        with zipfile.ZipFile(path) as zf:
            text = zf.read("pyproject.toml").decode("utf-8")
        project = ProjectConfig.from_mapping(tomllib.loads(text), root=Path("."))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, ConfigError) as exc:
        raise ConfigError(f"bad app bundle: its pyproject.toml: {exc}") from None
    return AppBundle(
        bundle_id=bundle_id,
        publisher=manifest.publisher,
        name=manifest.name,
        version=manifest.version,
        server_app=project.server_app,
        client_app=project.client_app,
        run_config=dict(project.run_config),
    )


def extract_bundle(path: str | Path, *, bundle_id: str, cache_dir: str | Path) -> Path:
    """Extract the bundle into ``cache_dir/<bundle_id>`` once (verified); returns that folder."""
    return bundles.extract_bundle(Path(path), Path(cache_dir) / bundle_id, bundle_id=bundle_id)
