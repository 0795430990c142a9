"""StartRun checks each app bundle against the SuperLink's policy (``--max-bundle-size``,
``--bundle-file-types``) and a present publisher signature, and says which file or flag.
(INVALID_ARGUMENT comes back as InvalidArgumentError, RESOURCE_EXHAUSTED as
LimitExceededError.)"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from glade_testing import app_files, start_superlink, write_files

from glade.bundle import SIGNATURE_NAME, Bundle, build_bundle
from glade.bundle_policy import BundlePolicy
from glade.digest import content_id
from glade.errors import ConfigError, InvalidArgumentError, LimitExceededError
from glade.keypairs import PrivateKey
from glade.superlink import SuperLinkConfig
from glade.superlink.client import ControlClient

SERVER = "from glade import ServerApp\napp = ServerApp()\n"
CLIENT = "from glade import ClientApp\napp = ClientApp()\n"


def _project(root: Path, extra: dict[str, str] | None = None) -> Path:
    files = app_files("policyapp", server=SERVER, client=CLIENT, config={})
    return write_files(root, {**files, **(extra or {})})


def _rebuilt(bundle: Bundle, change) -> Bundle:
    """A bundle object whose zip went through ``change(members) -> members``."""
    with zipfile.ZipFile(io.BytesIO(bundle.data)) as zf:
        members = change({name: zf.read(name) for name in zf.namelist()})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    data = out.getvalue()
    return Bundle(data=data, bundle_id=content_id(data), manifest=bundle.manifest)


def _start(control: ControlClient, bundle: Bundle) -> int:
    control.upload_bundle(bundle)
    return control.start_run(bundle.bundle_id, run_config={})


@pytest.fixture
def link():
    link = start_superlink(max_bundle_bytes=4000, bundle_file_types=(".py", ".toml"))
    yield link
    link.stop(grace=1.0)


def test_a_file_type_the_superlink_does_not_accept_is_invalid_argument(link, tmp_path):
    root = _project(tmp_path / "app", {"policyapp/native.so": "ELF"})
    bundle = build_bundle(root, policy=BundlePolicy(file_types=None))
    with ControlClient(link.addresses["control"]) as control:
        with pytest.raises(InvalidArgumentError) as info:
            _start(control, bundle)
        assert "'policyapp/native.so' is not an allowed file type" in str(info.value)
        assert "--bundle-file-types: .py, .toml" in str(info.value)
        assert control.list_runs()[0] == []


def test_an_oversized_bundle_is_resource_exhausted_naming_the_largest_file(link, tmp_path):
    root = _project(tmp_path / "app", {"policyapp/table.py": "T = " + "1" * 9000 + "\n"})
    with ControlClient(link.addresses["control"]) as control:
        with pytest.raises(LimitExceededError) as info:
            _start(control, build_bundle(root))
        message = str(info.value)
        assert "allowed by --max-bundle-size" in message
        assert "the largest is 'policyapp/table.py'" in message
        assert control.list_runs()[0] == []


def test_a_signed_bundle_is_accepted_and_a_forged_signature_is_not(link, tmp_path):
    key = PrivateKey.generate()
    bundle = build_bundle(_project(tmp_path / "app"), signing_key=key)

    def forged(members):
        doc = json.loads(members[SIGNATURE_NAME])
        doc["public_key"] = PrivateKey.generate().public_key.to_openssh()
        return {**members, SIGNATURE_NAME: json.dumps(doc).encode()}

    with ControlClient(link.addresses["control"]) as control:
        assert _start(control, bundle) > 0
        with pytest.raises(InvalidArgumentError, match="signature does not match its manifest"):
            _start(control, _rebuilt(bundle, forged))


def test_bundle_flags_are_checked_at_config_time():
    assert SuperLinkConfig().bundle_policy == BundlePolicy()
    with pytest.raises(ConfigError, match="between 1 byte and 1 GiB"):
        SuperLinkConfig(max_bundle_bytes=0)
    with pytest.raises(ConfigError, match="bad bundle file type"):
        SuperLinkConfig(bundle_file_types=("",))
