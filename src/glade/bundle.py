"""App bundles: a project folder packed into one zip that a SuperLink can run.

A bundle is a zip of the app's files plus ``glade-manifest.json``::

    {"format": 1, "publisher": "...", "name": "...", "version": "...",
     "files": {"pyproject.toml": "<sha256>", "my_app/client_app.py": "<sha256>", ...}}

Its *bundle id* is the content id of the zip's bytes (BLAKE3, :mod:`glade.digest`): an
object of the SuperLink's store. :func:`build_bundle` gives the same bytes for the same files
(sorted entries, fixed timestamps and permissions), so an unchanged app is uploaded and cached
once. Files matched by a ``.gitignore`` (at any level of the folder) are
left out, and so are virtual environments, caches and VCS folders (:data:`ALWAYS_EXCLUDED`).

A publisher may sign a bundle with an Ed25519 key (:mod:`glade.keypairs`): the signature of
the manifest's exact bytes (which hash every file) and the signer's public key are stored in
``glade-signature.json``, a member outside the manifest's file list (:class:`BundleSignature`).

:func:`read_bundle` checks a bundle (safe member names, no links, every file against its hash
in the manifest, a present signature against the manifest, and a
:class:`~glade.bundle_policy.BundlePolicy`: size cap, file types, trusted publishers) and
:func:`extract_bundle` does the same while writing the files into a folder, atomically: a
folder that exists holds a complete, verified bundle. A malformed or forged bundle raises
:class:`~glade.errors.SerdeError`, one over the size cap
:class:`~glade.errors.LimitExceededError`, one without the signature of a trusted publisher
:class:`~glade.errors.AccessDeniedError`; problems with the folder to pack raise
:class:`~glade.errors.ConfigError`.

>>> import pathlib, tempfile
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> _ = (root / "pyproject.toml").write_text('[project]\\nname = "demo"\\nversion = "1.0"\\n')
>>> bundle = build_bundle(root)
>>> bundle.manifest.name, list(bundle.manifest.files)
('demo', ['pyproject.toml'])
>>> build_bundle(root).bundle_id == bundle.bundle_id
True
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from glade import digest
from glade.bundle_policy import (
    MAX_BUNDLE_BYTES,
    SIGNATURE_NAME,
    BundlePolicy,
    BundleSignature,
    format_size,
)
from glade.bundle_zip import (
    MANIFEST_NAME,
    check_id,
    check_name,
    checked_blocks,
    manifest_bytes,
    open_zip,
    signer,
)
from glade.errors import ConfigError, SerdeError
from glade.files import write_atomic
from glade.ignore import matching_files
from glade.keypairs import PrivateKey, PublicKey

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "ALWAYS_EXCLUDED",
    "BUNDLE_SUFFIX",
    "MANIFEST_NAME",
    "MAX_BUNDLE_BYTES",
    "MAX_BUNDLE_FILES",
    "SIGNATURE_NAME",
    "Bundle",
    "BundleManifest",
    "BundleSignature",
    "build_bundle",
    "bundle_files",
    "bundle_signer",
    "extract_bundle",
    "read_bundle",
    "read_bundle_pyproject",
]

PYPROJECT = "pyproject.toml"
BUNDLE_SUFFIX = ".glade"
MAX_BUNDLE_FILES = 10_000
ALWAYS_EXCLUDED = (
    ".git/",
    ".hg/",
    ".svn/",
    ".venv/",
    "venv/",
    "__pycache__/",
    "*.py[cod]",
    ".pytest_cache/",
    ".mypy_cache/",
    ".ruff_cache/",
    ".hypothesis/",
    ".ipynb_checkpoints/",
    ".DS_Store",
    f"*{BUNDLE_SUFFIX}",
)
"""Left out of every bundle, whatever the ``.gitignore`` files say (gitignore syntax)."""

_FORMAT = 1
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can hold: fixed, for equal bytes
_FILE_MODE = 0o100644 << 16
_RESERVED = (MANIFEST_NAME, SIGNATURE_NAME)


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleManifest:
    """Who made the app, what it is called, and the SHA-256 of each of its files."""

    publisher: str
    name: str
    version: str
    files: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("publisher", "name", "version"):
            value = getattr(self, key)
            if not isinstance(value, str) or not value.strip():
                raise SerdeError(f"bundle manifest: {key!r} must be a non-empty string")

    def to_json(self) -> bytes:
        document = {
            "format": _FORMAT,
            "publisher": self.publisher,
            "name": self.name,
            "version": self.version,
            "files": dict(sorted(self.files.items())),
        }
        return json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> BundleManifest:
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SerdeError(f"{MANIFEST_NAME} is not valid JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise SerdeError(f"{MANIFEST_NAME} must hold a JSON object")
        files = doc.get("files")
        if not isinstance(files, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in files.items()
        ):
            raise SerdeError(f"{MANIFEST_NAME} needs 'files': {{path: sha256}}")
        ident: dict[str, str] = {}
        for key in ("publisher", "name", "version"):
            value = doc.get(key)
            if not isinstance(value, str):
                raise SerdeError(f"bundle manifest: {key!r} must be a non-empty string")
            ident[key] = value
        return cls(files=files, **ident)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bundle:
    """A built bundle: its zip bytes, its id (their SHA-256), its manifest and its signer."""

    data: bytes = field(repr=False)
    bundle_id: str
    manifest: BundleManifest
    signer: PublicKey | None = None

    @property
    def file_name(self) -> str:
        """``NAME-VERSION.glade``: the default file name of the bundle."""
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{self.manifest.name}-{self.manifest.version}")
        return safe + BUNDLE_SUFFIX

    def write(self, path: str | Path) -> Path:
        """Write the zip to ``path`` (atomically); returns the path."""
        return write_atomic(path, self.data)


# -- building ------------------------------------------------------------------------------
def build_bundle(
    app_dir: str | Path,
    *,
    publisher: str | None = None,
    policy: BundlePolicy | None = None,
    signing_key: PrivateKey | None = None,
) -> Bundle:
    """Pack the project in ``app_dir`` (with its ``pyproject.toml``) into a bundle.

    The name and version come from ``[project]``; the publisher from ``publisher``, else
    ``[tool.glade.app] publisher``, else the first of ``[project] authors``. The files must
    fit ``policy`` (default: :meth:`BundlePolicy.for_project`), else
    :class:`~glade.errors.ConfigError` names the first file that does not. With
    ``signing_key`` the bundle is signed.
    """
    root = Path(app_dir).resolve()
    project = _read_pyproject(root)
    if policy is None:
        policy = BundlePolicy.for_project(project, where=str(root / PYPROJECT))
    contents = _bundled_contents(root, policy)
    manifest = BundleManifest(
        publisher=publisher or _publisher(project),
        name=str(project.get("project", {}).get("name") or root.name),
        version=str(project.get("project", {}).get("version") or "0.0.0"),
        files={name: hashlib.sha256(data).hexdigest() for name, data in contents.items()},
    )
    manifest_bytes = manifest.to_json()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        _write_member(zf, MANIFEST_NAME, manifest_bytes)
        if signing_key is not None:
            signature = BundleSignature.sign(signing_key, manifest_bytes)
            _write_member(zf, SIGNATURE_NAME, signature.to_json())
        for name, data in contents.items():
            _write_member(zf, name, data)
    data = out.getvalue()
    return Bundle(
        data=data,
        bundle_id=digest.content_id(data),  # a bundle is an object of the store
        manifest=manifest,
        signer=signing_key.public_key if signing_key is not None else None,
    )


def _bundled_contents(root: Path, policy: BundlePolicy) -> dict[str, bytes]:
    """The bytes of each file to bundle, after checking names, types, count and size."""
    files = bundle_files(root)
    reserved = next((name for name in files if name in _RESERVED), None)
    if reserved is not None:
        raise ConfigError(f"{root / reserved}: this name is reserved in app bundles; rename it")
    bad = policy.first_disallowed(files)
    if bad is not None:
        raise ConfigError(
            f"{root / bad} is not a file type app bundles may hold ({policy.describe_types()})"
            ": leave it out with a .gitignore entry, or, if your SuperLink and SuperNodes "
            "accept its type, add it to extra-file-types in [tool.glade.bundle] in pyproject.toml"
        )
    if len(files) > MAX_BUNDLE_FILES:
        raise ConfigError(
            f"{root} holds {len(files)} files to bundle, more than {MAX_BUNDLE_FILES}: keep "
            "data sets and outputs out of the app folder, or list them in .gitignore"
        )
    sizes = {name: (root / name).stat().st_size for name in files}
    total = sum(sizes.values())
    if total > policy.max_bytes:
        largest = max(sizes, key=lambda n: sizes[n])
        raise ConfigError(
            f"{root} holds {format_size(total)} of files to bundle, more than the "
            f"{format_size(policy.max_bytes)} an app bundle may hold (the largest is {largest}, "
            f"{format_size(sizes[largest])}): keep data sets and outputs out of the app folder "
            "or list them in .gitignore (or raise max-size in [tool.glade.bundle] if your "
            "SuperLink and SuperNodes accept more)"
        )
    return {name: (root / name).read_bytes() for name in files}


def _write_member(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = _FILE_MODE
    info.create_system = 3  # unix: the mode above is meaningful
    zf.writestr(info, data, compresslevel=6)


def _read_pyproject(root: Path) -> dict[str, Any]:
    path = root / PYPROJECT
    if not path.is_file():
        raise ConfigError(
            f"no pyproject.toml in {root}: pass the folder of a Glade project "
            "(create one with 'glade new NAME')"
        )
    return _parse_toml(path.read_bytes(), where=str(path))


def _parse_toml(data: bytes, *, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from None


def _publisher(project: Mapping[str, Any]) -> str:
    app = project.get("tool", {}).get("glade", {}).get("app", {})
    if isinstance(app, Mapping) and isinstance(app.get("publisher"), str) and app["publisher"]:
        return str(app["publisher"])
    authors = project.get("project", {}).get("authors") or []
    for author in authors if isinstance(authors, list) else []:
        if isinstance(author, Mapping) and author.get("name"):
            return str(author["name"])
    return "anonymous"


def bundle_files(app_dir: str | Path) -> list[str]:
    """The files of ``app_dir`` a bundle holds: sorted posix paths relative to it."""
    return matching_files(app_dir, always_excluded=ALWAYS_EXCLUDED)


# -- reading and extracting ----------------------------------------------------------------
def read_bundle(
    source: bytes | str | Path,
    *,
    bundle_id: str | None = None,
    policy: BundlePolicy | None = None,
    max_files: int = MAX_BUNDLE_FILES,
) -> BundleManifest:
    """Check a bundle (bytes or a file) completely and return its manifest.

    With ``bundle_id``, the zip's content id must equal it; ``policy`` defaults to
    :meth:`BundlePolicy.unrestricted`. Raises :class:`~glade.errors.SerdeError`,
    :class:`~glade.errors.LimitExceededError` or :class:`~glade.errors.AccessDeniedError`
    naming the first problem found.
    """
    for _name, blocks in _verified_members(source, bundle_id, policy, max_files):
        for _block in blocks:
            pass
    return _manifest_of(source)


def bundle_signer(source: bytes | str | Path) -> PublicKey | None:
    """The key that signed the bundle's manifest (None: unsigned).

    Checks the signature against the manifest only; :func:`read_bundle` checks the files
    too. Raises :class:`~glade.errors.SerdeError` if the signature does not verify.
    """
    with open_zip(source) as zf:
        return signer(zf, manifest_bytes(zf))


def read_bundle_pyproject(
    source: bytes | str | Path, *, max_bytes: int = MAX_BUNDLE_BYTES
) -> dict[str, Any]:
    """The bundled ``pyproject.toml``, checked against the manifest and parsed.

    Check the whole bundle with :func:`read_bundle` first. Raises
    :class:`~glade.errors.ConfigError` if it has none or it is not valid TOML.
    """
    manifest = _manifest_of(source)
    if PYPROJECT not in manifest.files:
        raise ConfigError("bad app bundle: it has no pyproject.toml")
    with open_zip(source) as zf:
        try:
            info = zf.getinfo(PYPROJECT)
        except KeyError:
            raise SerdeError(
                "bad app bundle: its manifest lists a missing pyproject.toml"
            ) from None
        data = b"".join(checked_blocks(zf, info, manifest.files[PYPROJECT], [max_bytes]))
    return _parse_toml(data, where="bad app bundle: its pyproject.toml")


def extract_bundle(
    source: bytes | str | Path,
    dest: str | Path,
    *,
    bundle_id: str | None = None,
    policy: BundlePolicy | None = None,
    max_files: int = MAX_BUNDLE_FILES,
) -> Path:
    """Verify ``source`` (as :func:`read_bundle`) and write its files into the folder ``dest``.

    Returns ``dest``. The folder appears atomically, complete and verified; if it exists
    already it is returned as it is (extract each bundle id into its own folder).
    """
    target = Path(dest)
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name[:24]}-"))
    try:
        for name, data in _verified_members(source, bundle_id, policy, max_files):
            path = tmp.joinpath(*PurePosixPath(name).parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as out:
                for block in data:
                    out.write(block)
        try:
            os.replace(tmp, target)
        except OSError:
            if not target.is_dir():  # somebody else extracted it meanwhile otherwise
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _manifest_of(source: bytes | str | Path) -> BundleManifest:
    with open_zip(source) as zf:
        return BundleManifest.from_json(manifest_bytes(zf))


def _verified_members(
    source: bytes | str | Path,
    bundle_id: str | None,
    policy: BundlePolicy | None,
    max_files: int,
) -> Iterator[tuple[str, Iterator[bytes]]]:
    """Yield (name, its blocks) of each file; every check runs before or while it is read."""
    policy = policy if policy is not None else BundlePolicy.unrestricted()
    if bundle_id is not None:
        check_id(source, bundle_id)
    with open_zip(source) as zf:
        raw_manifest = manifest_bytes(zf)
        manifest = BundleManifest.from_json(raw_manifest)
        policy.check_signer(signer(zf, raw_manifest))
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if len(infos) > max_files + len(_RESERVED):
            raise SerdeError(f"bad app bundle: {len(infos)} files, more than {max_files}")
        members = {check_name(i): i for i in infos}
        if len(members) != len(infos):
            raise SerdeError("bad app bundle: a file is stored twice")
        present, listed = set(members) - set(_RESERVED), set(manifest.files)
        if present != listed:
            extra, missing = sorted(present - listed)[:5], sorted(listed - present)[:5]
            raise SerdeError(
                f"bad app bundle: the zip and its manifest disagree (not in the manifest: "
                f"{extra}; missing from the zip: {missing})"
            )
        if len(listed) > max_files:
            raise SerdeError(f"bad app bundle: {len(listed)} files, more than {max_files}")
        policy.check_members({name: members[name].file_size for name in sorted(listed)})
        budget = [policy.max_bytes]
        for name in sorted(listed):
            yield name, checked_blocks(zf, members[name], manifest.files[name], budget)
