"""Users, roles, login tokens, run ownership, node keys and the audit log of the Control API
(an in-process SuperLink with user authentication on, driven by ControlClient)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from sl_harness import echo_app, make_bundle

from glade.digest import content_id
from glade.errors import (
    AccessDeniedError,
    AuthenticationError,
    InvalidArgumentError,
    InvalidStateError,
    NotFoundError,
)
from glade.keypairs import PrivateKey
from glade.message import ErrorCode
from glade.superlink import SuperLink
from glade.superlink.accounts import hash_password, secret_hash, verify_password
from glade.superlink.client import ControlClient
from glade.superlink.control import CONTROL_RULES
from glade.superlink.state import RunInfo, RunStatus, StoredMessage
from glade.transport.v1 import control_pb2
from glade.transport.v1 import message_pb2 as pb

ROOT_PASSWORD = "root-password-1"
PASSWORD = "user-password-1"

Login = Callable[..., ControlClient]


@pytest.fixture
def secured(start_link: Callable[..., SuperLink]) -> SuperLink:
    """A SuperLink with user authentication on and the admin ``root``."""
    return start_link(user_auth=True, init_admin="root", init_admin_password=ROOT_PASSWORD)


@pytest.fixture
def login(secured: SuperLink) -> Iterator[Login]:
    """Clients of ``secured``, logged in as the user asked for (``root`` by default)."""
    clients: list[ControlClient] = []

    def make(
        user: str = "root", password: str = ROOT_PASSWORD, *, token: str = ""
    ) -> ControlClient:
        client = ControlClient(secured.addresses["control"], timeout_s=10.0, token=token)
        clients.append(client)
        if user and not token:
            client.login(username=user, password=password)
        return client

    yield make
    for client in clients:
        client.close()


def _pending_run(link: SuperLink, owner: str) -> int:
    run = RunInfo(
        run_id=0,
        status=RunStatus.PENDING,
        bundle_id="b" * 64,
        server_app="a:b",
        client_app="a:c",
        created_at=time.time(),
        owner=owner,
    )
    return link.state.create_run(run)


def test_passwords_are_salted_scrypt_hashes() -> None:
    first, second = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert first.startswith("scrypt$15$8$1$") and first != second  # a fresh salt each time
    assert "s3cret-pass" not in first
    assert verify_password("s3cret-pass", first) and verify_password("s3cret-pass", second)
    assert not verify_password("s3cret-pasS", first)
    for broken in ("", "scrypt$15$8$1$x", "md5$1$2$3$4$5", "scrypt$40$8$1$AA==$AA=="):
        assert not verify_password("s3cret-pass", broken)


def test_login_with_password_or_api_key_and_wrong_credentials(login: Login) -> None:
    root = login()
    assert root.whoami().user == "root" and root.whoami().role == "admin"
    ana, _ = root.add_user("ana", role="user", password=PASSWORD)
    assert (ana.name, ana.role, ana.has_password, ana.has_api_key) == ("ana", "user", True, False)
    bot, key = root.add_user("bot", role="user", api_key=True)
    assert key.startswith("glade_ak_") and bot.has_api_key and not bot.has_password
    session = login(user="").login(api_key=key)
    assert (session.user, session.role) == ("bot", "user")
    assert session.expires_at > time.time() + 3600
    anonymous = login(user="")
    for user, password in (("ana", "wrong-password"), ("nobody", PASSWORD), ("bot", "")):
        with pytest.raises(AuthenticationError, match=r"wrong user name or password|log in"):
            anonymous.login(username=user, password=password)
    with pytest.raises(AuthenticationError, match="unknown API key"):
        anonymous.login(api_key=key + "x")
    with pytest.raises(InvalidArgumentError, match="8 to"):
        root.add_user("carl", role="user", password="short")
    with pytest.raises(InvalidArgumentError, match="bad user name"):
        root.add_user("../x", role="user", password=PASSWORD)
    with pytest.raises(InvalidArgumentError, match="unknown role"):
        root.add_user("carl", role="owner", password=PASSWORD)
    with pytest.raises(InvalidStateError, match="exists already"):
        root.add_user("ana", role="user", password=PASSWORD)


def test_calls_without_or_with_a_bad_token_are_unauthenticated(login: Login) -> None:
    anonymous = login(user="")
    with pytest.raises(AuthenticationError, match=r"needs a login.*glade login"):
        anonymous.list_runs()
    forged = login(token="glade_tk_forged")
    with pytest.raises(AuthenticationError, match=r"unknown login token.*glade login"):
        forged.list_nodes()
    with pytest.raises(AuthenticationError):
        forged.stream_logs(1, follow=False).__iter__().__next__()


def test_an_expired_token_is_unauthenticated(start_link: Callable[..., SuperLink]) -> None:
    link = start_link(
        user_auth=True, init_admin="root", init_admin_password=ROOT_PASSWORD, token_ttl_s=0.5
    )
    with ControlClient(link.addresses["control"]) as client:
        session = client.login(username="root", password=ROOT_PASSWORD)
        assert session.expires_at - time.time() < 1.0
        client.list_runs()
        time.sleep(0.7)
        with pytest.raises(AuthenticationError, match=r"expired.*glade login"):
            client.list_runs()
        assert link.state.get_token(secret_hash(session.token)) is None  # forgotten


def test_logout_ends_the_session(login: Login) -> None:
    root = login()
    root.list_runs()
    token = root.token
    root.logout()
    with pytest.raises(AuthenticationError):
        login(token=token).list_runs()


def test_users_see_follow_and_stop_only_their_own_runs(secured: SuperLink, login: Login) -> None:
    root = login()
    root.add_user("ana", role="user", password=PASSWORD)
    root.add_user("bob", role="user", password=PASSWORD)
    ana, bob = login("ana", PASSWORD), login("bob", PASSWORD)
    ana_run = ana.start_run(_upload(ana, make_bundle(echo_app())), run_config={"mode": "hang"})
    bob_run = _pending_run(secured, "bob")
    run, _ = ana.get_run(ana_run)
    assert run.owner == "ana"
    assert [r.run_id for r in ana.list_runs()[0]] == [ana_run]
    assert [r.run_id for r in bob.list_runs()[0]] == [bob_run]
    assert {r.run_id for r in root.list_runs()[0]} == {ana_run, bob_run}  # admins see all
    with pytest.raises(AccessDeniedError, match="belongs to another user"):
        bob.get_run(ana_run)
    with pytest.raises(AccessDeniedError, match="belongs to another user"):
        list(bob.stream_logs(ana_run))
    with pytest.raises(AccessDeniedError, match="belongs to another user"):
        bob.stop_run(ana_run)
    assert not secured.state.get_run(ana_run).finished  # type: ignore[union-attr]
    list(ana.stream_logs(ana_run, timeout_s=5.0))  # the owner may read its log
    with pytest.raises(AccessDeniedError):
        ana.stop_run(bob_run)
    assert bob.stop_run(bob_run)
    assert root.stop_run(ana_run)  # an admin may stop anyone's run
    assert ana.list_nodes() == []  # every user may list nodes
    with pytest.raises(NotFoundError):
        ana.get_run(99_999)
    runs = [(e.actor, e.action, e.target, e.result) for e in root.list_audit()]
    a, b = str(ana_run), str(bob_run)
    assert [r for r in runs if r[1].startswith("run.")] == [
        ("ana", "run.start", a, "ok"),
        ("bob", "run.list", a, "denied"),
        ("bob", "run.logs", a, "denied"),
        ("bob", "run.stop", a, "denied"),
        ("ana", "run.stop", b, "denied"),
        ("bob", "run.stop", b, "ok"),
        ("root", "run.stop", a, "ok"),
    ]


def _upload(client: ControlClient, data: bytes) -> str:
    bundle = SimpleNamespace(data=data, bundle_id=content_id(data))
    client.upload_bundle(bundle)  # type: ignore[arg-type]
    return bundle.bundle_id


def test_admin_actions_are_denied_to_users(login: Login) -> None:
    root = login()
    root.add_user("ana", role="user", password=PASSWORD)
    ana = login("ana", PASSWORD)
    key = PrivateKey.generate().public_key.raw
    denied = [
        lambda: ana.add_user("eve", role="admin", password=PASSWORD),
        ana.list_users,
        lambda: ana.remove_user("root"),
        lambda: ana.set_user_role("ana", "admin"),
        lambda: ana.add_node_key(key, name="n"),
        ana.list_node_keys,
        lambda: ana.remove_node_key("n"),
        ana.list_audit,
    ]
    for call in denied:
        with pytest.raises(AccessDeniedError, match="needs the admin role") as info:
            call()
        assert not isinstance(info.value, AuthenticationError)
    assert [u.name for u in root.list_users()] == ["ana", "root"]
    # promoted, the same login may do it (the role is read at every call)
    root.set_user_role("ana", "admin")
    assert [u.name for u in ana.list_users()] == ["ana", "root"]


def test_the_last_admin_can_be_neither_removed_nor_demoted(login: Login) -> None:
    root = login()
    with pytest.raises(InvalidStateError, match="last admin"):
        root.remove_user("root")
    with pytest.raises(InvalidStateError, match="last admin"):
        root.set_user_role("root", "user")
    root.add_user("ada", role="admin", password=PASSWORD)
    root.set_user_role("root", "user")
    with pytest.raises(AccessDeniedError):
        root.list_users()
    ada = login("ada", PASSWORD)
    assert ada.remove_user("root").name == "root"
    with pytest.raises(AuthenticationError):
        root.list_runs()  # a removed user's logins end at once
    with pytest.raises(NotFoundError, match="unknown user"):
        ada.remove_user("root")


def test_node_keys_are_managed_and_removing_one_removes_its_node(
    secured: SuperLink, login: Login
) -> None:
    root = login()
    one, two = PrivateKey.generate().public_key, PrivateKey.generate().public_key
    added = root.add_node_key(one.raw, name="hospital-a")
    assert (added.name, added.added_by, added.node_id) == ("hospital-a", "root", 0)
    root.add_node_key(two.raw, name="hospital-b")
    with pytest.raises(InvalidStateError, match="already"):
        root.add_node_key(one.raw, name="again")
    with pytest.raises(InvalidArgumentError, match="32 bytes"):
        root.add_node_key(b"short", name="bad")
    state = secured.state
    node_id = state.register_node(name="a", node_config={}, now=time.time())
    state.bind_node_key(one.raw, node_id)
    run_id = _pending_run(secured, "root")
    state.transition_run(run_id, RunStatus.RUNNING, now=time.time())
    metadata = pb.Metadata(run_id=run_id, message_id="m1", dst_node_id=node_id, ttl=60.0)
    instruction = StoredMessage(
        message_id="m1",
        run_id=run_id,
        src_node_id=0,
        dst_node_id=node_id,
        reply_to="",
        created_at=time.time(),
        ttl=60.0,
        payload=pb.Message(metadata=metadata).SerializeToString(),
    )
    state.add_instructions([instruction])
    assert [(k.name, k.node_id) for k in root.list_node_keys()] == [
        ("hospital-a", node_id),
        ("hospital-b", 0),
    ]
    key, node_removed = root.remove_node_key("hospital-a")
    assert key.public_key == one.raw and node_removed
    assert state.get_node(node_id) is None
    # the node's pending work is answered at once, with NODE_UNAVAILABLE
    assert state.unreplied_instructions(node_id=node_id) == []
    (reply,) = state.take_replies(run_id, ["m1"], now=time.time())
    error = pb.Message.FromString(reply.payload).error
    assert error.code == ErrorCode.NODE_UNAVAILABLE and "allow-list" in error.reason
    key, node_removed = root.remove_node_key("hospital-b")  # never joined: no node to remove
    assert (key.public_key, key.name, node_removed) == (two.raw, "hospital-b", False)
    assert root.list_node_keys() == []
    with pytest.raises(NotFoundError, match="no node key named"):
        root.remove_node_key("hospital-b")


def test_audit_lists_actions_and_rejected_authentications(login: Login) -> None:
    root = login()
    root.add_user("ana", role="user", password=PASSWORD)
    with pytest.raises(AuthenticationError):
        login("ana", "wrong-password")
    with pytest.raises(AuthenticationError):
        login(token="glade_tk_forged").list_runs()
    ana = login("ana", PASSWORD)
    with pytest.raises(AccessDeniedError):
        ana.list_users()
    root.set_user_role("ana", "admin")
    root.add_node_key(PrivateKey.generate().public_key.raw, name="n1")
    root.remove_node_key("n1")
    ana.logout()
    entries = [(e.actor, e.action, e.target, e.result) for e in root.list_audit()]
    assert entries == [
        ("superlink", "user.add", "root", "ok"),
        ("root", "login", "", "ok"),
        ("root", "user.add", "ana", "ok"),
        ("ana", "login", "", "denied"),
        ("anonymous", "auth.rejected", "ListRuns", "denied"),
        ("ana", "login", "", "ok"),
        ("ana", "user.list", "", "denied"),
        ("root", "user.role", "ana", "ok"),
        ("root", "node.add", "n1", "ok"),
        ("root", "node.remove", "n1", "ok"),
        ("ana", "logout", "", "ok"),
    ]
    assert [e.action for e in root.list_audit(limit=2)] == ["node.remove", "logout"]
    times = [e.time for e in root.list_audit()]
    assert times == sorted(times) and abs(times[-1] - time.time()) < 60


def test_every_control_method_has_an_access_rule() -> None:
    service = control_pb2.DESCRIPTOR.services_by_name["Control"]
    assert set(CONTROL_RULES) == {m.name for m in service.methods}
    public = {name for name, rule in CONTROL_RULES.items() if rule.role == "public"}
    assert public == {"Login"}


def test_with_user_auth_off_every_caller_acts_as_an_admin(link: SuperLink) -> None:
    assert not link.config.user_auth_enabled  # insecure, and not asked for
    with ControlClient(link.addresses["control"]) as client:
        identity = client.whoami()
        assert not identity.user_auth and identity.role == "admin"
        client.add_user("ana", role="user", password=PASSWORD)
        assert [u.name for u in client.list_users()] == ["ana"]
        assert [e.actor for e in client.list_audit()] == ["anonymous"]


def test_users_keys_and_audit_survive_a_restart(
    start_link: Callable[..., SuperLink], tmp_path: Path
) -> None:
    options = {
        "user_auth": True,
        "database": str(tmp_path / "state.db"),
        "init_admin": "root",
        "init_admin_password": ROOT_PASSWORD,
    }
    first = start_link(**options)
    with ControlClient(first.addresses["control"]) as client:
        client.login(username="root", password=ROOT_PASSWORD)
        client.add_user("ana", role="user", password=PASSWORD)
        client.add_node_key(PrivateKey.generate().public_key.raw, name="hospital-a")
        token = client.token
    first.stop(grace=0.5)
    # a second start with another --init-admin password changes nothing
    second = start_link(**{**options, "init_admin_password": "another-password"})
    with ControlClient(second.addresses["control"], token=token) as client:
        assert client.whoami().user == "root"  # the token too
        assert [k.name for k in client.list_node_keys()] == ["hospital-a"]
        assert [u.name for u in client.list_users()] == ["ana", "root"]
        actions = [e.action for e in client.list_audit()]
        assert actions[:4] == ["user.add", "login", "user.add", "node.add"]
    with ControlClient(second.addresses["control"]) as client:
        client.login(username="root", password=ROOT_PASSWORD)
        client.login(username="ana", password=PASSWORD)


def test_users_change_their_own_password_and_admins_anyones(
    secured: SuperLink, login: Login
) -> None:
    root = login()
    root.add_user("ana", role="user", password=PASSWORD)
    root.add_user("bob", role="user", password=PASSWORD)
    ana, ana_elsewhere, bob = login("ana", PASSWORD), login("ana", PASSWORD), login("bob", PASSWORD)
    with pytest.raises(AuthenticationError, match="wrong user name or password"):
        ana.set_password("new-password-1", old_password="not-hers")
    with pytest.raises(AccessDeniedError, match="only an admin"):
        bob.set_password("hijacked-pw", name="ana")
    with pytest.raises(InvalidArgumentError, match="8 to"):
        ana.set_password("short", old_password=PASSWORD)
    # her other login ends, this one stays; the old password no longer works
    assert ana.set_password("new-password-1", old_password=PASSWORD) == 1
    assert ana.whoami().user == "ana"
    with pytest.raises(AuthenticationError):
        ana_elsewhere.whoami()
    with pytest.raises(AuthenticationError):
        login("ana", PASSWORD)
    login("ana", "new-password-1")
    # an admin sets it without the old one (she forgot it); all her logins end
    assert root.set_password("reset-password-1", name="ana") == 2
    with pytest.raises(AuthenticationError):
        ana.whoami()
    assert login("ana", "reset-password-1").whoami().user == "ana"
    with pytest.raises(NotFoundError, match="unknown user"):
        root.set_password("whatever-pw-1", name="nobody")
    actions = [(e.action, e.actor, e.target, e.result) for e in secured.state.list_audit(limit=100)]
    assert ("user.password", "ana", "ana", "ok") in actions
    assert ("user.password", "bob", "ana", "denied") in actions
    assert ("user.password", "root", "ana", "ok") in actions
