"""Deployment commands in-process: ``glade build``, and the checks made before any service
or connection starts."""

from __future__ import annotations

import pytest
from glade_testing import glade_in_process

from glade.bundle import read_bundle
from glade.cli.remote import history_from_dict
from glade.digest import content_id
from glade.server import History, RunEvent


def test_build_writes_a_verified_deterministic_bundle(fault_app, tmp_path, monkeypatch):
    (fault_app / ".gitignore").write_text("data/\n")
    (fault_app / "data").mkdir()
    (fault_app / "data" / "big.csv").write_text("1,2\n")
    out = tmp_path / "app.glade"
    first = glade_in_process("build", str(fault_app), "-o", str(out), "--verbose")
    assert first.exit_code == 0, first.stderr
    assert first.stdout.strip() == str(out)
    manifest = read_bundle(out)
    assert (manifest.name, manifest.version) == ("faultapp", "1.0.0")
    assert "data/big.csv" not in manifest.files and "faultapp/client.py" in manifest.files
    bundle_id = content_id(out.read_bytes())
    assert f"bundle id {bundle_id}" in first.stderr
    monkeypatch.chdir(tmp_path)
    again = glade_in_process("build", str(fault_app))  # default name, in the current folder
    assert again.exit_code == 0, again.stderr
    assert (tmp_path / "faultapp-1.0.0.glade").read_bytes() == out.read_bytes()


def test_build_without_a_project_is_a_usage_error(tmp_path):
    result = glade_in_process("build", str(tmp_path))
    assert result.exit_code == 2 and "no pyproject.toml" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("superlink", "--database", ":memory:"),
        ("supernode", "--superlink", "127.0.0.1:9092"),
    ],
)
def test_services_refuse_to_start_without_certificates_or_insecure(args):
    result = glade_in_process(*args)
    assert result.exit_code == 2, result.stderr
    assert "TLS" in result.stderr and "--insecure" in result.stderr
    assert ("--ssl-certfile" in result.stderr) or ("--root-certificates" in result.stderr)


def test_a_bad_supernode_address_is_a_usage_error():
    result = glade_in_process("supernode", "--superlink", "nowhere", "--insecure")
    assert result.exit_code == 2 and "HOST:PORT" in result.stderr


def test_detach_needs_a_deployment(fault_app):
    result = glade_in_process("run", str(fault_app), "--detach")
    assert result.exit_code == 2 and "--detach needs a deployment federation" in result.stderr


def test_bad_federation_options(fault_app):
    text = (fault_app / "pyproject.toml").read_text()
    text += '\n[tool.glade.federations.odd]\naddress = "nohost"\ninsecure = true\n'
    text += '\n[tool.glade.federations.extra]\naddress = "h:1"\ninsecure = true\ncolour = 1\n'
    (fault_app / "pyproject.toml").write_text(text)
    result = glade_in_process("ls", "odd", "--app", str(fault_app))
    assert result.exit_code == 2 and "HOST:PORT" in result.stderr
    result = glade_in_process("run", str(fault_app), "extra")
    assert result.exit_code == 2 and "unknown option(s) ['colour']" in result.stderr


def test_history_from_a_stored_document_round_trips():
    history = History()
    history.add(
        RunEvent(kind="stage-finished", server_round=2, stage="evaluate", metrics={"acc": 0.5})
    )
    assert history_from_dict(history.to_dict()) == history
