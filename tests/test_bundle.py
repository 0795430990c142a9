"""App bundles: deterministic bytes, .gitignore excludes, a manifest, and safe extraction."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import zipfile
from pathlib import Path

import pytest

from glade.bundle import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    BundleManifest,
    build_bundle,
    bundle_files,
    bundle_signer,
    extract_bundle,
    read_bundle,
    read_bundle_pyproject,
)
from glade.bundle_policy import (
    DEFAULT_MAX_BUNDLE_BYTES,
    BundlePolicy,
    format_size,
    parse_file_types,
    parse_size,
)
from glade.digest import content_id
from glade.errors import AccessDeniedError, ConfigError, LimitExceededError, SerdeError
from glade.keypairs import PrivateKey
from glade.templates import TEMPLATES, render_project

PYPROJECT = """
[project]
name = "demo-app"
version = "2.1.0"
authors = [{ name = "Ada" }]

[tool.glade.app]
server-app = "demo.server:app"
client-app = "demo.client:app"
"""


def _project(root: Path, files: dict[str, str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    for name, text in {
        "demo/__init__.py": "",
        "demo/client.py": "x = 1\n",
        **(files or {}),
    }.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_manifest_names_the_app_and_hashes_every_file(tmp_path):
    root = _project(tmp_path / "app")
    bundle = build_bundle(root)
    m = bundle.manifest
    assert (m.publisher, m.name, m.version) == ("Ada", "demo-app", "2.1.0")
    assert set(m.files) == {"pyproject.toml", "demo/__init__.py", "demo/client.py"}
    assert m.files["demo/client.py"] == hashlib.sha256(b"x = 1\n").hexdigest()
    assert bundle.bundle_id == content_id(bundle.data)
    with zipfile.ZipFile(io.BytesIO(bundle.data)) as zf:
        stored = json.loads(zf.read(MANIFEST_NAME))
        assert stored["files"] == dict(m.files)
        assert zf.read("demo/client.py") == b"x = 1\n"
    assert bundle.file_name == "demo-app-2.1.0.glade"


def test_same_files_give_the_same_bytes_and_a_change_gives_others(tmp_path):
    first = build_bundle(_project(tmp_path / "a"))
    second = build_bundle(_project(tmp_path / "b"))  # other folder, other mtimes
    os.utime(tmp_path / "b" / "demo" / "client.py", (1, 1))
    assert build_bundle(tmp_path / "b").data == first.data == second.data
    (tmp_path / "b" / "demo" / "client.py").write_text("x = 2\n")
    assert build_bundle(tmp_path / "b").bundle_id != first.bundle_id


def test_publisher_from_tool_glade_or_argument(tmp_path):
    root = _project(tmp_path / "app")
    text = (root / "pyproject.toml").read_text()
    text = text.replace("[tool.glade.app]\n", '[tool.glade.app]\npublisher = "acme"\n')
    (root / "pyproject.toml").write_text(text)
    assert build_bundle(root).manifest.publisher == "acme"
    assert build_bundle(root, publisher="me").manifest.publisher == "me"


def test_always_excluded_folders_and_files(tmp_path):
    root = _project(
        tmp_path / "app",
        {
            ".venv/lib/site.py": "",
            ".git/HEAD": "",
            "demo/__pycache__/client.cpython-311.pyc": "",
            "demo/stale.pyc": "",
            "old-1.0.glade": "",
            "data/notes.txt": "kept",
        },
    )
    assert bundle_files(root) == [
        "data/notes.txt",
        "demo/__init__.py",
        "demo/client.py",
        "pyproject.toml",
    ]


def test_gitignore_patterns(tmp_path):
    root = _project(
        tmp_path / "app",
        {
            ".gitignore": "# data\n*.csv\n!keep.csv\n/build/\nlogs/\ndocs/**/*.tmp\n\\#hash\n",
            "a.csv": "",
            "sub/b.csv": "",
            "sub/keep.csv": "",
            "build/out.txt": "",
            "src/build/x.txt": "",  # /build/ is anchored: not this one
            "logs": "a file, not a folder",  # logs/ matches folders only
            "sub/logs/run.log": "",
            "docs/a/b/c.tmp": "",
            "docs/c.tmp": "",
            "#hash": "",
        },
    )
    files = bundle_files(root)
    assert "a.csv" not in files and "sub/b.csv" not in files
    assert "sub/keep.csv" in files
    assert "build/out.txt" not in files and "src/build/x.txt" in files
    assert "logs" in files and "sub/logs/run.log" not in files
    assert "docs/a/b/c.tmp" not in files and "docs/c.tmp" not in files
    assert "#hash" not in files
    assert ".gitignore" in files


def test_nested_gitignore_applies_below_its_folder(tmp_path):
    root = _project(
        tmp_path / "app",
        {"demo/.gitignore": "secret.py\n", "demo/secret.py": "", "secret.py": "top"},
    )
    files = bundle_files(root)
    assert "demo/secret.py" not in files
    assert "secret.py" in files


def test_missing_pyproject_and_oversized_apps_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"no pyproject\.toml"):
        build_bundle(tmp_path)
    root = _project(tmp_path / "app", {"big.txt": "x" * 5000})
    with pytest.raises(ConfigError, match=r"more than the 1000 bytes .*the largest is big\.txt"):
        build_bundle(root, policy=BundlePolicy(max_bytes=1000))


def test_extract_writes_the_verified_files(tmp_path):
    bundle = build_bundle(_project(tmp_path / "app"))
    out = extract_bundle(bundle.data, tmp_path / "out", bundle_id=bundle.bundle_id)
    assert (out / "demo" / "client.py").read_text() == "x = 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app", "out"]  # no temp left
    path = bundle.write(tmp_path / "b.glade")
    assert read_bundle(path, bundle_id=bundle.bundle_id) == bundle.manifest


def _zip(members: dict[str, bytes], *, manifest: dict | None = None, link: str = "") -> bytes:
    files = {k: hashlib.sha256(v).hexdigest() for k, v in members.items()}
    doc = manifest or {"publisher": "p", "name": "n", "version": "1", "files": files}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr(MANIFEST_NAME, json.dumps(doc))
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            if name == link:
                info.external_attr = 0o120777 << 16
            zf.writestr(info, data)
    return out.getvalue()


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"not a zip", "not a readable zip"),
        (_zip({"../evil.py": b"x"}), "unsafe path"),
        (_zip({"/abs.py": b"x"}), "unsafe path"),
        (_zip({"a\\b.py": b"x"}), "unsafe path"),
        (_zip({"link.py": b"/etc/passwd"}, link="link.py"), "symbolic link"),
        (
            _zip(
                {"a.py": b"x"},
                manifest={"publisher": "p", "name": "n", "version": "1", "files": {}},
            ),
            "disagree",
        ),
        (
            _zip(
                {"a.py": b"x"},
                manifest={"publisher": "p", "name": "n", "version": "1", "files": {"a.py": "0"}},
            ),
            "does not match its sha256",
        ),
        (
            _zip({"a.py": b"x"}, manifest={"publisher": "", "name": "n", "version": "1"}),
            "needs 'files'",
        ),
        (
            _zip(
                {"a.py": b"x"},
                manifest={"publisher": "", "name": "n", "version": "1", "files": {"a.py": "0"}},
            ),
            "'publisher'",
        ),
    ],
)
def test_bad_bundles_are_refused_and_nothing_is_extracted(tmp_path, data, needle):
    with pytest.raises(SerdeError, match=needle):
        extract_bundle(data, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SerdeError, match=needle):
        read_bundle(data)


def test_no_manifest(tmp_path):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("a.py", "x")
    with pytest.raises(SerdeError, match=f"no {MANIFEST_NAME}"):
        read_bundle(out.getvalue())


def test_wrong_bundle_id_and_size_cap(tmp_path):
    bundle = build_bundle(_project(tmp_path / "app", {"big.txt": "y" * 10_000}))
    with pytest.raises(SerdeError, match="not the bundle id"):
        extract_bundle(bundle.data, tmp_path / "out", bundle_id="0" * 64)
    with pytest.raises(LimitExceededError, match=r"--max-bundle-size \(the largest is 'big\.txt'"):
        extract_bundle(bundle.data, tmp_path / "out", policy=BundlePolicy(max_bytes=5000))
    with pytest.raises(SerdeError, match="more than 2"):
        read_bundle(bundle.data, max_files=2)
    assert not (tmp_path / "out").exists()


def test_manifest_round_trip():
    manifest = BundleManifest(publisher="p", name="n", version="1", files={"b": "2", "a": "1"})
    assert BundleManifest.from_json(manifest.to_json()) == manifest
    with pytest.raises(SerdeError, match="not valid JSON"):
        BundleManifest.from_json(b"{")


def test_the_superlink_accepts_built_bundles(tmp_path):
    from glade.superlink.bundles import read_app_bundle

    bundle = build_bundle(_project(tmp_path / "app"))
    path = bundle.write(tmp_path / "b.glade")
    info = read_app_bundle(path, bundle_id=bundle.bundle_id)
    assert (info.name, info.version, info.client_app) == ("demo-app", "2.1.0", "demo.client:app")


def test_the_bundled_pyproject_is_read_verified(tmp_path):
    bundle = build_bundle(_project(tmp_path / "app"))
    assert read_bundle_pyproject(bundle.data)["project"]["version"] == "2.1.0"
    with pytest.raises(ConfigError, match=r"no pyproject\.toml"):
        read_bundle_pyproject(_zip({"a.py": b"x"}))
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_bundle_pyproject(_zip({"pyproject.toml": b"[project"}))
    forged = {"pyproject.toml": "0" * 64}
    with pytest.raises(SerdeError, match="does not match its sha256"):
        read_bundle_pyproject(
            _zip(
                {"pyproject.toml": PYPROJECT.encode()},
                manifest={"publisher": "p", "name": "n", "version": "1", "files": forged},
            )
        )


# -- policy: file types and size -----------------------------------------------------------
def test_the_default_policy_allows_code_config_and_docs_only():
    policy = BundlePolicy()
    allowed = ["a/b.py", "pyproject.toml", "README.md", "notes.TXT", ".gitignore", "LICENSE"]
    refused = ["model.bin", "lib.so", "data.csv", "x.pyc", "run.sh", "Makefile", "w.npz"]
    assert all(policy.allows(name) for name in allowed)
    assert not any(policy.allows(name) for name in refused)
    assert policy.max_bytes == DEFAULT_MAX_BUNDLE_BYTES == 100 * 2**20
    assert BundlePolicy(file_types=None).allows("anything.bin")


def test_sizes_and_file_types_parse_from_flags():
    assert parse_size("100MB") == 100_000_000
    assert parse_size("1GiB") == 2**30
    assert parse_size("2048") == parse_size(2048) == 2048
    assert parse_size("1.5 KiB") == 1536
    for bad in ("", "ten", "5 parsecs", "-1", "0"):
        with pytest.raises(ConfigError):
            parse_size(bad)
    assert parse_file_types(".py, .toml,LICENSE") == (".py", ".toml", "LICENSE")
    assert parse_file_types("*") is None
    with pytest.raises(ConfigError, match="cannot be combined"):
        parse_file_types(".py,*")
    with pytest.raises(ConfigError, match="between 1 byte and 1 GiB"):
        BundlePolicy(max_bytes=2**31)
    assert format_size(DEFAULT_MAX_BUNDLE_BYTES) == "100 MiB"


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_every_template_builds_under_the_default_policy(template, tmp_path):
    render_project(template, project_name="demo-app", dest=tmp_path / "app")
    bundle = build_bundle(tmp_path / "app")
    BundlePolicy().check_members(dict.fromkeys(bundle.manifest.files, 0))
    assert read_bundle(bundle.data, policy=BundlePolicy()) == bundle.manifest


def test_build_names_a_file_of_a_disallowed_type_and_the_project_can_allow_it(tmp_path):
    root = _project(tmp_path / "app", {"demo/weights.onnx": "w"})
    with pytest.raises(ConfigError, match=r"demo/weights\.onnx is not a file type") as info:
        build_bundle(root)
    assert ".gitignore" in str(info.value) and "extra-file-types" in str(info.value)
    text = (root / "pyproject.toml").read_text()
    (root / "pyproject.toml").write_text(
        text + '\n[tool.glade.bundle]\nextra-file-types = [".onnx"]\n'
    )
    assert "demo/weights.onnx" in build_bundle(root).manifest.files
    (root / "demo" / "weights.onnx").unlink()
    (root / "pyproject.toml").write_text(text + '\n[tool.glade.bundle]\nmax-size = "10"\n')
    with pytest.raises(ConfigError, match="more than the 10 bytes"):
        build_bundle(tmp_path / "app")
    (root / "pyproject.toml").write_text(text + "\n[tool.glade.bundle]\nmax-bytes = 1\n")
    with pytest.raises(ConfigError, match="unknown key"):
        build_bundle(tmp_path / "app")


def test_reserved_names_cannot_be_bundled(tmp_path):
    root = _project(tmp_path / "app", {SIGNATURE_NAME: "{}"})
    with pytest.raises(ConfigError, match="reserved"):
        build_bundle(root)


def test_readers_enforce_their_own_policy(tmp_path):
    root = _project(tmp_path / "app", {"demo/lib.so": "ELF"})
    bundle = build_bundle(root, policy=BundlePolicy(file_types=None))
    assert read_bundle(bundle.data) == bundle.manifest  # no policy: the hard limits only
    with pytest.raises(
        SerdeError, match=r"'demo/lib\.so' is not an allowed file type.*--bundle-file-types"
    ):
        read_bundle(bundle.data, policy=BundlePolicy())
    with pytest.raises(SerdeError, match="not an allowed file type"):
        extract_bundle(bundle.data, tmp_path / "out", policy=BundlePolicy())
    assert not (tmp_path / "out").exists()
    wide = BundlePolicy(file_types=(*BundlePolicy().file_types, ".so"))
    assert read_bundle(bundle.data, policy=wide) == bundle.manifest


# -- publisher signatures ------------------------------------------------------------------
def _rezip(data: bytes, change) -> bytes:
    """The bundle's members, passed through ``change(members) -> members``, zipped again."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, content in change(members).items():
            zf.writestr(name, content)
    return out.getvalue()


def test_a_signed_bundle_names_its_verified_signer(tmp_path):
    key = PrivateKey.generate()
    root = _project(tmp_path / "app")
    bundle = build_bundle(root, signing_key=key)
    assert bundle.signer == key.public_key == bundle_signer(bundle.data)
    assert build_bundle(root, signing_key=key).data == bundle.data  # still deterministic
    assert bundle_signer(build_bundle(root).data) is None
    assert SIGNATURE_NAME not in bundle.manifest.files
    trusted = BundlePolicy(trusted_publishers=(key.public_key,))
    out = extract_bundle(bundle.data, tmp_path / "out", policy=trusted)
    assert not (out / SIGNATURE_NAME).exists() and (out / "demo" / "client.py").is_file()


def test_unsigned_and_untrusted_bundles_are_refused_where_publishers_are_trusted(tmp_path):
    publisher, stranger = PrivateKey.generate(), PrivateKey.generate()
    root = _project(tmp_path / "app")
    trusted = BundlePolicy(trusted_publishers=(publisher.public_key,))
    with pytest.raises(AccessDeniedError, match=r"not signed.*--trusted-publishers"):
        read_bundle(build_bundle(root).data, policy=trusted)
    signed = build_bundle(root, signing_key=stranger)
    with pytest.raises(AccessDeniedError, match=re.escape(stranger.public_key.fingerprint)):
        extract_bundle(signed.data, tmp_path / "out", policy=trusted)
    assert not (tmp_path / "out").exists()
    assert read_bundle(signed.data) == signed.manifest  # no trust list: any valid signature


def test_altered_or_forged_signed_bundles_are_refused(tmp_path):
    key, other = PrivateKey.generate(), PrivateKey.generate()
    bundle = build_bundle(_project(tmp_path / "app"), signing_key=key)

    def new_code(members):  # a file changed and the manifest updated to match
        members["demo/client.py"] = b"import os\n"
        manifest = json.loads(members[MANIFEST_NAME])
        manifest["files"]["demo/client.py"] = hashlib.sha256(b"import os\n").hexdigest()
        members[MANIFEST_NAME] = json.dumps(manifest).encode()
        return members

    def other_key(members):  # the signature claims another publisher
        doc = json.loads(members[SIGNATURE_NAME])
        doc["public_key"] = other.public_key.to_openssh()
        members[SIGNATURE_NAME] = json.dumps(doc).encode()
        return members

    def garbled(members):
        members[SIGNATURE_NAME] = b"{not json"
        return members

    for change, needle in [
        (new_code, "signature does not match its manifest"),
        (other_key, "signature does not match its manifest"),
        (garbled, "glade-signature.json cannot be read"),
    ]:
        data = _rezip(bundle.data, change)
        with pytest.raises(SerdeError, match=needle):
            read_bundle(data)
        with pytest.raises(SerdeError, match=needle):
            bundle_signer(data)
    code_only = _rezip(bundle.data, lambda m: {**m, "demo/client.py": b"import os\n"})
    with pytest.raises(SerdeError, match="does not match its sha256"):
        read_bundle(code_only)
