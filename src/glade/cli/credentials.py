"""Login tokens of ``glade login``: one file per SuperLink address in the user's config dir.

The folder is ``$GLADE_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/glade``, else
``~/.config/glade``; tokens live in its ``tokens/`` folder (0700), each in a JSON file
readable by its owner only (0600). A token file that others can read is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from glade.errors import ConfigError
from glade.files import write_json

__all__ = ["StoredLogin", "config_dir", "forget_login", "load_login", "save_login", "token_file"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredLogin:
    """What ``glade login`` keeps for one SuperLink."""

    address: str
    user: str
    role: str
    token: str
    expires_at: float


def config_dir() -> Path:
    """The user's Glade config folder (see the module docstring)."""
    explicit = os.environ.get("GLADE_CONFIG_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "glade"


def token_file(address: str) -> Path:
    """The token file of the SuperLink at ``address`` (``host:port``)."""
    readable = re.sub(r"[^A-Za-z0-9.-]+", "_", address).strip("_")[:80] or "superlink"
    digest = hashlib.sha256(address.encode()).hexdigest()[:10]
    return config_dir() / "tokens" / f"{readable}-{digest}.json"


def save_login(login: StoredLogin) -> Path:
    """Write the token file (0600, in a 0700 folder); returns its path."""
    path = token_file(login.address)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    write_json(
        path,
        {
            "address": login.address,
            "user": login.user,
            "role": login.role,
            "token": login.token,
            "expires_at": login.expires_at,
        },
    )
    os.chmod(path, 0o600)
    return path


def load_login(address: str) -> StoredLogin | None:
    """The stored login of ``address`` (None: there is none)."""
    path = token_file(address)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"the login token file {path} can be read by other users: remove it and run "
            "'glade login' again (token files must have permissions 0600)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return StoredLogin(
            address=str(data["address"]),
            user=str(data["user"]),
            role=str(data["role"]),
            token=str(data["token"]),
            expires_at=float(data["expires_at"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"cannot read the login token file {path} ({exc}): remove it and run 'glade login' "
            "again"
        ) from None


def forget_login(address: str) -> bool:
    """Delete the token file of ``address``; False if there was none."""
    try:
        token_file(address).unlink()
    except FileNotFoundError:
        return False
    return True
