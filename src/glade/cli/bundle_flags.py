"""The app-bundle flags the SuperLink and the SuperNode share, turned into config options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from glade.bundle_policy import parse_file_types, parse_size
from glade.errors import ConfigError
from glade.keypairs import read_public_keys

__all__ = ["bundle_options"]


def bundle_options(
    max_bundle_size: str | None,
    bundle_file_types: str | None,
    trusted_publishers: Path | None = None,
) -> dict[str, Any]:
    """``--max-bundle-size``, ``--bundle-file-types`` (and ``--trusted-publishers``) as
    config options; flags not given are left out (the config's defaults apply)."""
    options: dict[str, Any] = {}
    if max_bundle_size is not None:
        options["max_bundle_bytes"] = parse_size(max_bundle_size)
    if bundle_file_types is not None:
        options["bundle_file_types"] = parse_file_types(bundle_file_types)
    if trusted_publishers is not None:
        keys = read_public_keys(trusted_publishers)
        if not keys:
            raise ConfigError(
                f"--trusted-publishers {trusted_publishers} holds no public key: put one "
                "OpenSSH line (ssh-ed25519 AAAA...) per trusted publisher in it"
            )
        options["trusted_publishers"] = tuple(keys)
    return options
