"""Joining, rejoining, losing and finding the SuperLink again, stopping; config and backoff."""

from __future__ import annotations

import json
import random
import time

import pytest
from glade_testing import free_port, start_superlink, wait_for
from sn_harness import run_and_wait

from glade.errors import ConfigError
from glade.superlink.client import ControlClient
from glade.supernode import SuperNodeConfig
from glade.supernode.backoff import Backoff


def _online(link) -> dict[int, bool]:
    return {n.node_id: n.online for n in link.state.list_nodes()}


def test_a_restarted_node_rejoins_with_its_id(superlink, start_node, tmp_path):
    fleet = superlink.addresses["fleet"]
    first = start_node(fleet, data_dir=tmp_path / "node", unregister_on_stop=False)
    assert first.wait_registered(10)
    node_id = first.node_id
    assert json.loads((tmp_path / "node" / "node.json").read_text()) == {"node_id": node_id}
    with pytest.raises(ConfigError, match="another SuperNode"):
        start_node(fleet, data_dir=tmp_path / "node")  # the folder is in use
    first.stop()
    again = start_node(fleet, data_dir=tmp_path / "node")
    assert again.wait_registered(10)
    assert again.node_id == node_id
    assert list(_online(superlink)) == [node_id]


def test_a_graceful_stop_leaves_the_federation(superlink, start_node):
    node = start_node(superlink.addresses["fleet"])
    assert node.wait_registered(10)
    assert node.node_id in _online(superlink)
    started = time.monotonic()
    node.stop()
    assert time.monotonic() - started < 5.0
    assert node.node_id not in _online(superlink)


def test_a_node_waits_for_an_unreachable_superlink_and_joins_when_it_is_up(start_node, make_app):
    port = free_port()
    node = start_node(f"127.0.0.1:{port}")
    assert not node.wait_registered(1.0)  # nobody listens yet: it keeps retrying
    link = start_superlink(fleet_address=f"127.0.0.1:{port}")
    try:
        assert node.wait_registered(10)
        with ControlClient(link.addresses["control"]) as control:
            run, results, log = run_and_wait(control, make_app())
        assert run.sub_status == "completed", log
        assert list(results[0]["ok"]) == [str(node.node_id)]
    finally:
        link.stop(grace=1.0)


def test_nodes_rejoin_a_restarted_superlink_that_forgot_them(start_node, make_app):
    port = free_port()
    link = start_superlink(fleet_address=f"127.0.0.1:{port}")
    nodes = [start_node(f"127.0.0.1:{port}", partition=p) for p in (0, 1)]
    try:
        assert all(n.wait_registered(10) for n in nodes)
        ids = sorted(n.node_id for n in nodes)
        link.stop(grace=1.0)  # an in-memory state: the next SuperLink knows no node
        time.sleep(0.5)
        link = start_superlink(fleet_address=f"127.0.0.1:{port}")
        assert wait_for(lambda: sorted(_online(link)) == ids, timeout=15), _online(link)
        with ControlClient(link.addresses["control"]) as control:
            run, results, log = run_and_wait(control, make_app(), {"nodes": 2})
        assert run.sub_status == "completed", log
        assert sorted(int(n) for n in results[0]["ok"]) == ids
    finally:
        link.stop(grace=1.0)


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"superlink": "localhost"}, "HOST:PORT"),
        ({"superlink": "h:0"}, "HOST:PORT"),
        ({"superlink": "h:1", "insecure": False}, "needs --root-certificates"),
        ({"superlink": "h:1", "poll_wait_s": 0}, "poll_wait_s"),
        ({"superlink": "h:1", "backoff_initial_s": 5.0, "backoff_max_s": 1.0}, "backoff_max_s"),
        ({"superlink": "h:1", "node_config": [1]}, "mapping"),
    ],
)
def test_config_is_checked(options, needle):
    with pytest.raises(ConfigError, match=needle):
        SuperNodeConfig(**options)


def test_backoff_grows_with_jitter_up_to_its_cap_and_resets():
    backoff = Backoff(initial=0.5, maximum=4.0, rng=random.Random(7))
    delays = [backoff.next() for _ in range(8)]
    ceilings = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert len({round(d, 6) for d in delays[3:]}) > 1  # jittered, not in step
    backoff.reset()
    assert backoff.next() <= 0.5
    with pytest.raises(ValueError):
        Backoff(initial=2.0, maximum=1.0)
