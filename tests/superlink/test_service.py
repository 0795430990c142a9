"""The SuperLink service: addresses and ready file, refusing taken ports, stopping, GC."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from pathlib import Path

import pytest
from sl_harness import Control, FakeNode, echo_app, link_config, make_bundle

from glade.digest import content_id
from glade.errors import ConfigError, TransportError
from glade.superlink import SuperLink, SuperLinkConfig


def test_addresses_and_ready_file(tmp_path: Path) -> None:
    ready = tmp_path / "run" / "ready.json"
    link = SuperLink(link_config(tmp_path, ready_file=ready))
    addresses = link.start()
    try:
        assert set(addresses) == {"control", "fleet", "serverappio"}
        ports = {a.rpartition(":")[2] for a in addresses.values()}
        assert len(ports) == 3 and "0" not in ports
        written = json.loads(ready.read_text())
        assert {k: written[k] for k in addresses} == addresses and written["pid"] > 0
        assert link.bulk is not None and written["bulk"].endswith(f":{link.bulk.port}")
        for address in (*addresses.values(), written["bulk"]):
            host, _, port = address.rpartition(":")
            with socket.create_connection((host, int(port)), timeout=2):
                pass
    finally:
        link.stop()
    assert not ready.exists()
    assert link.wait(timeout=0)


def test_a_taken_port_is_a_clear_error_and_leaves_nothing_running(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        link = SuperLink(link_config(tmp_path, fleet_address=f"127.0.0.1:{port}"))
        with pytest.raises(TransportError, match=str(port)):
            link.start()
        assert link.wait(timeout=0)  # stopped, nothing left running


def test_config_validation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="HOST:PORT"):
        SuperLinkConfig(control_address="9093")
    with pytest.raises(ConfigError, match="longer than"):
        SuperLinkConfig(heartbeat_interval_s=5, node_offline_timeout_s=2)
    with pytest.raises(ConfigError, match="TLS"):
        SuperLinkConfig(insecure=False)
    with pytest.raises(ConfigError, match="run_timeout_s"):
        SuperLinkConfig(run_timeout_s=0)
    config = SuperLinkConfig.in_data_dir(tmp_path, max_concurrent_runs=2)
    assert config.database == str(tmp_path / "state.db")
    assert config.object_dir == tmp_path / "objects"
    assert config.with_options(max_concurrent_runs=3).max_concurrent_runs == 3


def test_stop_is_quick_idempotent_and_wait_returns(tmp_path: Path) -> None:
    link = SuperLink(link_config(tmp_path))
    link.start()
    node = FakeNode(link.addresses["fleet"])
    polling = threading.Thread(target=_swallow, args=(node,))
    polling.start()
    time.sleep(0.2)
    started = time.monotonic()
    link.stop()
    link.stop()
    assert time.monotonic() - started < 5
    polling.join(timeout=5)
    assert not polling.is_alive()  # its long-poll returned when the SuperLink stopped
    node.close()


def _swallow(node: FakeNode) -> None:
    with contextlib.suppress(Exception):  # answered empty, or cut off: either way it returns
        node.pull(wait_s=30)


def test_objects_of_a_finished_run_are_collected(start_link) -> None:
    link = start_link(gc_grace_s=60.0, gc_min_age_s=0.0)
    nodes = [FakeNode(link.addresses["fleet"]).serve() for _ in range(2)]
    control = Control(link.addresses["control"])
    try:
        bundle = make_bundle(echo_app())
        run_id = control.start(bundle, **{"min-nodes": 2, "rounds": 3, "size": 100_000})
        run = control.wait(run_id)
        assert run.sub_status == "completed", (run.reason, control.log(run_id)[-3000:])
        link.sweep()
        # the arrays are gone; the bundle goes too (nothing unfinished refers to it)
        assert list(link.store.ids()) == []
        assert link.state.referenced_objects() == set()
        assert not (link.store.root / "apps" / content_id(bundle)).exists()
    finally:
        control.close()
        for node in nodes:
            node.close()
