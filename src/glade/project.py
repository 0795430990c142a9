"""A Glade project on disk: ``pyproject.toml`` config, app loading, run-config overrides.

Configuration is read once at the edge (the CLI) into frozen objects and passed down.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glade.errors import AppLoadError, ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "FederationConfig",
    "ProjectConfig",
    "load_app",
    "parse_run_config",
]

_SIMULATION_OPTIONS = {"num-supernodes", "backend", "num-workers", "seed", "client-resources"}


@dataclass(frozen=True, slots=True, kw_only=True)
class FederationConfig:
    """One ``[tool.glade.federations.NAME]`` table: a local simulation or a SuperLink."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_simulation(self) -> bool:
        return "address" not in self.options

    @property
    def num_supernodes(self) -> int:
        value = self.options.get("num-supernodes", 10)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(
                f"federation {self.name!r}: num-supernodes must be a positive integer, "
                f"got {value!r}"
            )
        return value


@dataclass(frozen=True, slots=True, kw_only=True)
class ProjectConfig:
    """What ``[tool.glade]`` in a project's ``pyproject.toml`` says."""

    root: Path
    name: str
    server_app: str
    client_app: str
    run_config: Mapping[str, Any]
    federations: Mapping[str, FederationConfig]
    default_federation: str

    @classmethod
    def from_dir(cls, app_dir: str | Path) -> ProjectConfig:
        root = Path(app_dir).resolve()
        path = root / "pyproject.toml"
        if not path.is_file():
            raise ConfigError(
                f"no pyproject.toml in {root}: pass the folder of a Glade project "
                "(create one with 'glade new NAME')"
            )
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
        return cls.from_mapping(data, root=root)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, root: Path) -> ProjectConfig:
        glade = data.get("tool", {}).get("glade")
        if not isinstance(glade, Mapping):
            raise ConfigError(
                f"{root / 'pyproject.toml'} has no [tool.glade] section; see "
                "docs/configuration.md or create a project with 'glade new NAME'"
            )
        app = glade.get("app", {})
        refs = {}
        for key in ("server-app", "client-app"):
            ref = app.get(key)
            if not isinstance(ref, str) or ":" not in ref:
                raise ConfigError(
                    f"[tool.glade.app] {key} must be 'module:attribute' "
                    f"(e.g. 'my_app.{key.replace('-', '_')}:app'), got {ref!r}"
                )
            refs[key] = ref
        run_config = app.get("config", {})
        if not isinstance(run_config, Mapping):
            raise ConfigError("[tool.glade.app.config] must be a table of key = value")
        feds_raw = glade.get("federations", {})
        default = feds_raw.get("default", "local")
        federations = {
            name: FederationConfig(name=name, options=dict(opts))
            for name, opts in feds_raw.items()
            if isinstance(opts, Mapping)
        }
        federations.setdefault("local", FederationConfig(name="local", options={}))
        return cls(
            root=root,
            name=str(data.get("project", {}).get("name", root.name)),
            server_app=refs["server-app"],
            client_app=refs["client-app"],
            run_config=dict(run_config),
            federations=federations,
            default_federation=str(default),
        )

    def federation(self, name: str | None) -> FederationConfig:
        """The named federation (or the default one), with a clear error if unknown."""
        name = name or self.default_federation
        if name not in self.federations:
            known = ", ".join(sorted(self.federations))
            raise ConfigError(
                f"unknown federation {name!r}; this project defines: {known} "
                f"(add [tool.glade.federations.{name}] to pyproject.toml)"
            )
        fed = self.federations[name]
        if fed.is_simulation:
            unknown = set(fed.options) - _SIMULATION_OPTIONS
            if unknown:
                raise ConfigError(
                    f"federation {name!r}: unknown option(s) {sorted(unknown)}; "
                    f"simulation options are {sorted(_SIMULATION_OPTIONS)}"
                )
        return fed


def parse_run_config(text: str | None) -> dict[str, Any]:
    """Parse ``"k=v k2=v2"`` overrides; values are TOML (``lr=0.1 name='x' flag=true``).

    Bare words that are not TOML values are taken as strings (``optimizer=sgd``).
    """
    if not text or not text.strip():
        return {}
    out: dict[str, Any] = {}
    for item in _split_items(text):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"bad run-config entry {item!r}: expected key=value pairs separated by "
                'spaces, e.g. --run-config "num-server-rounds=5 lr=0.1"'
            )
        try:
            out[key] = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            if not raw.strip() or any(c in raw for c in "\"'[]{}="):
                raise ConfigError(f"bad run-config value for {key!r}: {raw!r}") from None
            out[key] = raw.strip()
    return out


def _split_items(text: str) -> list[str]:
    """Split on whitespace outside quotes and brackets."""
    items: list[str] = []
    buf: list[str] = []
    quote, depth = "", 0
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch.isspace() and depth == 0:
            if buf:
                items.append("".join(buf))
                buf = []
            continue
        buf.append(ch)
    if quote or depth:
        raise ConfigError(f"bad run-config {text!r}: unbalanced quotes or brackets")
    if buf:
        items.append("".join(buf))
    return items


def load_app(ref: str, *, kind: type, app_dir: str | Path | None = None) -> Any:
    """Import ``module:attribute`` (from ``app_dir`` if given) and check it is a ``kind``."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise AppLoadError(f"app reference {ref!r} must look like 'package.module:attribute'")
    if app_dir is not None:
        path = str(Path(app_dir).resolve())
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            where = f" in {app_dir}" if app_dir else ""
            raise AppLoadError(
                f"cannot import module {module_name!r} for {ref!r}{where}: no such module; "
                "check [tool.glade.app] in pyproject.toml"
            ) from exc
        raise AppLoadError(
            f"importing {module_name!r} failed: {exc}; install the app's dependencies "
            "(pip install -e APP_DIR)"
        ) from exc
    except Exception as exc:
        raise AppLoadError(f"importing {module_name!r} raised {type(exc).__name__}: {exc}") from exc
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise AppLoadError(
            f"module {module_name!r} has no attribute {attr!r} (from {ref!r})"
        ) from None
    if not isinstance(obj, kind):
        raise AppLoadError(f"{ref!r} is a {type(obj).__name__}, expected a {kind.__name__}")
    return obj
