"""``glade login/logout/whoami``, ``glade user``, ``glade node``, ``glade audit`` and
``glade superlink --init-admin``: the CLI of user accounts against a SuperLink with user
authentication on."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dep_harness import Deployment
from glade_testing import glade_executable, glade_in_process, start_superlink

from glade.cli.credentials import token_file
from glade.keypairs import PrivateKey
from glade.superlink import SuperLink
from glade.superlink.state import RunInfo, RunStatus

ROOT_PASSWORD = "root-password-1"
PASSWORD = "user-password-1"


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "config"
    monkeypatch.setenv("GLADE_CONFIG_DIR", str(folder))
    monkeypatch.delenv("GLADE_API_KEY", raising=False)
    return folder


@pytest.fixture
def secured() -> Iterator[SuperLink]:
    link = start_superlink(user_auth=True, init_admin="root", init_admin_password=ROOT_PASSWORD)
    yield link
    link.stop(grace=1.0)


def _add_federation(project: Path, address: str, name: str = "dev") -> None:
    text = (project / "pyproject.toml").read_text()
    text += f'\n[tool.glade.federations.{name}]\naddress = "{address}"\ninsecure = true\n'
    (project / "pyproject.toml").write_text(text)


def _glade(app: Path, *args: str, input: str | None = None):  # type: ignore[no-untyped-def]
    return glade_in_process(*args, "--app", str(app), input=input)


def _ok(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 0, result.stderr
    return str(result.stdout)


def test_login_stores_a_private_token_that_later_commands_send(
    secured: SuperLink, fault_app: Path, config_dir: Path
) -> None:
    _add_federation(fault_app, secured.addresses["control"])
    refused = _glade(fault_app, "ls", "dev")
    assert refused.exit_code == 5 and "run 'glade login dev'" in refused.stderr
    wrong = _glade(fault_app, "login", "dev", "-u", "root", "--password-stdin", input="nope\n")
    assert wrong.exit_code == 5 and "wrong user name or password" in wrong.stderr
    assert not token_file(secured.addresses["control"]).exists()

    login = _glade(fault_app, "login", "dev", "-u", "root", "--password-stdin", input=ROOT_PASSWORD)
    _ok(login)
    assert "as root (role admin)" in login.stderr
    path = token_file(secured.addresses["control"])
    assert path.is_relative_to(config_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text())["user"] == "root"
    assert "root (role admin)" in _ok(_glade(fault_app, "whoami", "dev"))
    assert json.loads(_ok(_glade(fault_app, "ls", "dev", "--format", "json"))) == {"runs": []}

    # a token file others can read is refused, not used
    path.chmod(0o644)
    exposed = _glade(fault_app, "whoami", "dev")
    assert exposed.exit_code == 2 and "0600" in exposed.stderr
    path.chmod(0o600)

    _ok(_glade(fault_app, "logout", "dev"))
    assert not path.exists()
    again = _glade(fault_app, "whoami", "dev")
    assert again.exit_code == 5 and "glade login dev" in again.stderr


def test_admin_commands_users_nodes_and_audit(
    secured: SuperLink,
    fault_app: Path,
    config_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _add_federation(fault_app, secured.addresses["control"])
    _ok(_glade(fault_app, "login", "dev", "-u", "root", "--password-stdin", input=ROOT_PASSWORD))
    _ok(_glade(fault_app, "user", "add", "ana", "dev", "--password-stdin", input=PASSWORD))
    # ana changes her password with the CLI (current one first), then logs in with it
    _ok(_glade(fault_app, "login", "dev", "-u", "ana", "--password-stdin", input=PASSWORD))
    changed = _glade(
        fault_app, "user", "passwd", "dev", "--password-stdin", input=f"{PASSWORD}\nnew-pass-word\n"
    )
    assert "Password of your account" in _ok(changed) + changed.stderr
    _ok(_glade(fault_app, "login", "dev", "-u", "ana", "--password-stdin", input="new-pass-word"))
    _ok(_glade(fault_app, "login", "dev", "-u", "root", "--password-stdin", input=ROOT_PASSWORD))
    _ok(_glade(fault_app, "user", "passwd", "dev", "-u", "ana", "--password-stdin", input=PASSWORD))
    bot = _glade(fault_app, "user", "add", "bot", "dev", "--api-key")
    api_key = _ok(bot).strip()
    assert api_key.startswith("glade_ak_") and "shown only this once" in bot.stderr
    users = json.loads(_ok(_glade(fault_app, "user", "ls", "dev", "--format", "json")))["users"]
    assert [(u["name"], u["role"], u["api_key"]) for u in users] == [
        ("ana", "user", False),
        ("bot", "user", True),
        ("root", "admin", False),
    ]
    last = _glade(fault_app, "user", "rm", "root", "dev")
    assert last.exit_code == 1 and "last admin" in last.stderr

    key = PrivateKey.generate().public_key
    pub = tmp_path / "hospital-a.pub"
    pub.write_text(key.to_openssh("hospital-a") + "\n")
    _ok(_glade(fault_app, "node", "add", str(pub), "dev", "--name", "hospital-a"))
    other = PrivateKey.generate().public_key.to_openssh()
    _ok(_glade(fault_app, "node", "add", other, "dev", "--name", "hospital-b"))
    nodes = json.loads(_ok(_glade(fault_app, "node", "ls", "dev", "--format", "json")))["nodes"]
    assert (nodes[0]["name"], nodes[0]["fingerprint"]) == ("hospital-a", key.fingerprint)
    assert "hospital-b" in _ok(_glade(fault_app, "node", "ls", "dev"))
    _ok(_glade(fault_app, "node", "rm", "hospital-b", "dev"))
    bad = _glade(fault_app, "node", "add", "not-a-key", "dev", "--name", "x")
    assert bad.exit_code == 2 and "not an Ed25519 public key" in bad.stderr

    # the bot logs in with its API key (from the environment) and is a plain user
    monkeypatch.setenv("GLADE_API_KEY", api_key)
    _ok(_glade(fault_app, "login", "dev"))
    monkeypatch.delenv("GLADE_API_KEY")
    assert "bot (role user)" in _ok(_glade(fault_app, "whoami", "dev"))
    denied = _glade(fault_app, "audit", "dev")
    assert denied.exit_code == 5 and "needs the admin role" in denied.stderr

    _ok(
        _glade(
            fault_app, "login", "dev", "--username", "root", "--password-stdin", input=ROOT_PASSWORD
        )
    )
    _ok(_glade(fault_app, "user", "role", "ana", "admin", "dev"))
    _ok(_glade(fault_app, "user", "rm", "bot", "dev"))
    audit = json.loads(_ok(_glade(fault_app, "audit", "dev", "--format", "json")))["entries"]
    seen = [(e["actor"], e["action"], e["target"], e["result"]) for e in audit]
    for expected in [
        ("root", "login", "", "ok"),
        ("root", "user.add", "ana", "ok"),
        ("root", "user.add", "bot", "ok"),
        ("root", "user.remove", "root", "failed"),
        ("root", "node.add", "hospital-a", "ok"),
        ("root", "node.remove", "hospital-b", "ok"),
        ("bot", "login", "", "ok"),
        ("bot", "audit.list", "", "denied"),
        ("root", "user.role", "ana", "ok"),
        ("root", "user.remove", "bot", "ok"),
    ]:
        assert expected in seen
    assert "user.remove" in _ok(_glade(fault_app, "audit", "dev", "--limit", "3"))


def test_users_cannot_read_or_stop_each_others_runs(
    secured: SuperLink, fault_app: Path, config_dir: Path
) -> None:
    _add_federation(fault_app, secured.addresses["control"])
    _ok(_glade(fault_app, "login", "dev", "-u", "root", "--password-stdin", input=ROOT_PASSWORD))
    for name in ("ana", "bob"):
        _ok(_glade(fault_app, "user", "add", name, "dev", "--password-stdin", input=PASSWORD))
    run_id = secured.state.create_run(
        RunInfo(
            run_id=0,
            status=RunStatus.PENDING,
            bundle_id="b" * 64,
            server_app="a:b",
            client_app="a:c",
            created_at=time.time(),
            owner="ana",
        )
    )
    _ok(_glade(fault_app, "login", "dev", "-u", "bob", "--password-stdin", input=PASSWORD))
    assert json.loads(_ok(_glade(fault_app, "ls", "dev", "--format", "json"))) == {"runs": []}
    for args in (("ls", "dev", "--run-id", str(run_id)), ("log", str(run_id), "dev")):
        result = _glade(fault_app, *args)
        assert result.exit_code == 5 and "belongs to another user" in result.stderr
    stop = _glade(fault_app, "stop", str(run_id), "dev")
    assert stop.exit_code == 5 and "belongs to another user" in stop.stderr
    _ok(_glade(fault_app, "login", "dev", "-u", "ana", "--password-stdin", input=PASSWORD))
    assert "stopped" in _ok(_glade(fault_app, "stop", str(run_id), "dev"))


def test_init_admin_needs_a_password_from_somewhere(tmp_path: Path) -> None:
    result = glade_in_process(
        "superlink", "--insecure", "--database", ":memory:", "--init-admin", "root"
    )
    assert result.exit_code == 2
    assert "--init-admin-password-file" in result.stderr and "GLADE_ADMIN_PASSWORD" in result.stderr
    short = tmp_path / "short.txt"
    short.write_text("short\n")
    result = glade_in_process(
        "superlink",
        "--insecure",
        "--database",
        ":memory:",
        "--init-admin",
        "root",
        "--init-admin-password-file",
        str(short),
    )
    assert result.exit_code == 2 and "at least 8 characters" in result.stderr


@pytest.mark.slow
def test_a_real_superlink_with_init_admin_keeps_accounts_across_restarts(
    tmp_path: Path, fault_app: Path
) -> None:
    password_file = tmp_path / "admin-password"
    password_file.write_text(ROOT_PASSWORD + "\n")
    deployment = Deployment(
        root=tmp_path / "deployment",
        num_nodes=0,
        user_auth=True,
        superlink_args=["--init-admin", "root", "--init-admin-password-file", str(password_file)],
    )
    env = {**os.environ, "GLADE_CONFIG_DIR": str(tmp_path / "config")}

    def glade(*args: str, input: str = "") -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*glade_executable(), *args],
            cwd=fault_app,
            env=env,
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done

    try:
        deployment.start()
        deployment.add_to(fault_app)
        glade("login", "dev", "-u", "root", "--password-stdin", input=ROOT_PASSWORD)
        glade("user", "add", "ana", "dev", "--password-stdin", input=PASSWORD)
        assert "user authentication is OFF" not in deployment.logs()
        assert "created the admin 'root'" in deployment.logs()
        deployment.stop()
        deployment.start_superlink(same_ports=True)
        listed = glade("user", "ls", "dev", "--format", "json")  # with the token from before
        assert [u["name"] for u in json.loads(listed.stdout)["users"]] == ["ana", "root"]
        audit = json.loads(glade("audit", "dev", "--format", "json").stdout)["entries"]
        assert [(e["actor"], e["action"], e["target"]) for e in audit] == [
            ("superlink", "user.add", "root"),
            ("root", "login", ""),
            ("root", "user.add", "ana"),
        ]
    finally:
        deployment.stop()
