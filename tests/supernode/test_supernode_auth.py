"""SuperNodes with ``auth_key`` against an in-process SuperLink with node authentication:
a run completes, the key decides the node id, and a refused node says what to do once and
joins when the admin allows its key (no restart)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from glade_testing import start_superlink, wait_for
from sn_harness import run_and_wait

from glade.errors import ConfigError
from glade.keypairs import PrivateKey, create_key_pair
from glade.superlink import SuperLink
from glade.superlink.client import ControlClient
from glade.superlink.node_auth import AUDIT_ACTION
from glade.superlink.state import NodeKey

NODE_LOGGER = "glade.supernode.node"


@pytest.fixture
def auth_link(tmp_path: Path) -> Iterator[SuperLink]:
    link = start_superlink(node_auth=True, database=str(tmp_path / "state.db"))
    yield link
    link.stop(grace=1.0)


def _key(tmp_path: Path, name: str = "node") -> Path:
    private, _ = create_key_pair(tmp_path / "keys", name)
    return private


def _allow(link: SuperLink, private: Path, name: str = "node") -> None:
    raw = PrivateKey.read(private).public_key.raw
    link.state.add_node_key(NodeKey(public_key=raw, name=name, added_at=time.time()))


def test_an_allowed_node_runs_and_its_key_keeps_its_id(auth_link, start_node, make_app, tmp_path):
    key = _key(tmp_path)
    _allow(auth_link, key)
    fleet = auth_link.addresses["fleet"]
    node = start_node(fleet, auth_key=key, unregister_on_stop=False)
    assert node.wait_registered(10)
    with ControlClient(auth_link.addresses["control"]) as control:
        run, results, log = run_and_wait(control, make_app())
    assert run.sub_status == "completed", log
    assert list(results[0]["ok"]) == [str(node.node_id)]
    node_id = node.node_id
    node.stop()
    # another data folder (no node.json): the key still is the same node
    again = start_node(fleet, auth_key=key, data_dir=tmp_path / "elsewhere")
    assert again.wait_registered(10)
    assert again.node_id == node_id
    assert [n.node_id for n in auth_link.state.list_nodes()] == [node_id]


def test_a_node_without_a_key_logs_one_clear_error(auth_link, start_node, caplog):
    with caplog.at_level(logging.WARNING, logger=NODE_LOGGER):
        node = start_node(auth_link.addresses["fleet"], backoff_max_s=0.1)
        wait_for(lambda: len(_audit(auth_link)) >= 4, timeout=10)  # it kept retrying
    assert not node.wait_registered(0)
    errors = [r for r in caplog.records if r.name == NODE_LOGGER and r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    message = errors[0].getMessage()
    assert "requires node authentication" in message and "glade keys create" in message
    assert "--auth-key" in message and "glade node add" in message


def test_a_refused_node_joins_once_its_key_is_allowed(auth_link, start_node, caplog, tmp_path):
    key = _key(tmp_path)
    with caplog.at_level(logging.WARNING, logger=NODE_LOGGER):
        node = start_node(auth_link.addresses["fleet"], auth_key=key, backoff_max_s=0.2)
        wait_for(lambda: len(_audit(auth_link)) >= 2, timeout=10)
    assert not node.wait_registered(0)
    errors = [r for r in caplog.records if r.name == NODE_LOGGER and r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    public = PrivateKey.read(key).public_key
    message = errors[0].getMessage()
    assert public.fingerprint in message and "glade node add" in message
    assert f"public key: '{public.to_openssh()}'" in message
    _allow(auth_link, key)  # the admin allows it: the node joins without a restart
    assert node.wait_registered(10)
    assert auth_link.state.get_node_key(public.raw).node_id == node.node_id


def test_an_unreadable_key_is_a_config_error(auth_link, start_node, tmp_path):
    (tmp_path / "bad.key").write_text("not a key")
    with pytest.raises(ConfigError, match=r"bad\.key"):
        start_node(auth_link.addresses["fleet"], auth_key=tmp_path / "bad.key")
    with pytest.raises(ConfigError, match="glade keys create"):
        start_node(auth_link.addresses["fleet"], auth_key=tmp_path / "missing.key")


def _audit(link: SuperLink) -> list[object]:
    return [e for e in link.state.list_audit(limit=1000) if e.action == AUDIT_ACTION]
