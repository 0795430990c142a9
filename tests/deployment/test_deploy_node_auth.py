"""Node authentication end to end with real processes: ``glade keys create``, a SuperLink with
``--node-auth``, ``glade node add``, SuperNodes with ``--auth-key``: allowed nodes complete a
run, a restarted node keeps its id (the key decides), and a node with an unknown key says
what to do once and joins as soon as an admin allows it."""

from __future__ import annotations

from pathlib import Path

import pytest
from dep_harness import Deployment
from glade_testing import glade_in_process, one_json_document, run_glade, wait_for


def _keys(root: Path, name: str) -> tuple[Path, str]:
    """``glade keys create``: (the pair's path without suffix, the key's fingerprint)."""
    done = glade_in_process("keys", "create", "--out", str(root), "--name", name)
    assert done.exit_code == 0, done.stderr
    line, fingerprint = done.stdout.strip().splitlines()
    assert line == (root / f"{name}.pub").read_text().strip()
    assert line.startswith("ssh-ed25519 ") and fingerprint.startswith("SHA256:")
    assert (root / f"{name}.key").stat().st_mode & 0o077 == 0
    assert "--auth-key" in done.stderr and "glade node add" in done.stderr
    return root / name, fingerprint


def _allow(project: Path, key: Path) -> None:
    done = run_glade("node", "add", f"{key}.pub", "dev", "--name", key.name, cwd=project)
    assert done.returncode == 0, done.stderr


def _errors(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if " ERROR " in line]


@pytest.mark.slow  # about 13 s; the same paths in-process: tests/supernode/test_supernode_auth.py
def test_allowed_nodes_run_keep_their_ids_and_a_new_key_joins_once_allowed(fault_app, tmp_path):
    made = {i: _keys(tmp_path / "keys", f"node-{i}") for i in range(3)}
    keys = {i: key for i, (key, _) in made.items()}
    deployment = Deployment(
        root=tmp_path / "deployment",
        num_nodes=2,
        node_auth=True,
        auth_keys={i: key.with_suffix(".key") for i, key in keys.items()},
    )
    try:
        deployment.root.mkdir(parents=True)
        deployment.start_superlink()
        deployment.add_to(fault_app)
        for i in (0, 1):
            _allow(fault_app, keys[i])
            deployment.start_node(i, wait=False)
        ids = {i: deployment.wait_node(i) for i in (0, 1)}
        done = run_glade("run", ".", "dev", "-c", "num-server-rounds=1", cwd=fault_app)
        assert done.returncode == 0, done.stderr + deployment.logs()
        assert "completed" in done.stderr

        # a restarted node, even with a fresh data folder, is the same node
        deployment.nodes[0].terminate()
        (deployment.root / "node-0" / "node.json").unlink()
        deployment.start_node(0)
        assert deployment.ids[0] == ids[0]

        # an unknown key: one clear error on the node, refusals on the SuperLink ...
        deployment.start_node(2, wait=False)
        node_log = deployment.root / "node-2.log"
        link_log = deployment.root / "superlink.log"
        wait_for(lambda: link_log.read_text().count("allow-list") >= 3, timeout=30)
        (error,) = _errors(node_log)
        assert "refused this SuperNode" in error and "glade node add" in error, error
        # ... until an admin allows it: it joins without a restart
        _allow(fault_app, keys[2])
        assert deployment.wait_node(2) not in ids.values()
        assert len(_errors(node_log)) == 1

        listed = run_glade("audit", "dev", "--format", "json", "--limit", "1000", cwd=fault_app)
        assert listed.returncode == 0, listed.stderr
        entries = one_json_document(listed.stdout)["entries"]
        refusals = {e["actor"] for e in entries if e["action"] == "auth.rejected"}
        assert refusals == {f"node:{made[2][1]}"}, entries
    finally:
        deployment.stop()
    assert "node authentication is OFF" not in link_log.read_text()
