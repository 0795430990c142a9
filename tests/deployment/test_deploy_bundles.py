"""Signed app bundles on a real deployment: a ``glade supernode --trusted-publishers`` process
answers the messages of unsigned or untrusted bundles with error replies naming the reason,
stays up, and runs the bundle ``glade run --sign-key`` (or a federation's signing-key) signed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from dep_harness import Deployment
from glade_testing import app_files, glade_in_process, write_files

from glade.keypairs import create_key_pair

# One query to every node; each reply is printed as "REPLY ok" or "REPLY error CODE REASON".
SERVER = """
from glade import ConfigRecord, Message, RecordDict, ServerApp
from glade.server.loop import wait_for_nodes

app = ServerApp()


@app.main()
def main(grid, context):
    nodes = wait_for_nodes(grid, 1, timeout=30)
    content = RecordDict({"config": ConfigRecord({"x": 1})})
    msgs = [Message(content, dst_node_id=n, message_type="query") for n in nodes]
    for reply in grid.send_and_receive(msgs, timeout=60):
        if reply.has_content:
            print("REPLY ok", flush=True)
        else:
            print("REPLY error", int(reply.error.code), reply.error.reason, flush=True)
"""

CLIENT = """
from glade import ClientApp, MetricRecord, RecordDict

app = ClientApp()


@app.query()
def query(msg, context):
    return RecordDict({"metrics": MetricRecord({"ok": 1})})
"""


@dataclass
class _TrustingDeployment(Deployment):
    """A deployment whose SuperNodes get extra flags."""

    node_flags: list[str] = field(default_factory=list)

    def _security(self, service: str) -> list[str]:
        extra = self.node_flags if service == "supernode" else []
        return [*super()._security(service), *extra]


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    publisher, publisher_pub = create_key_pair(tmp_path / "keys", "publisher")
    stranger, _ = create_key_pair(tmp_path / "keys", "stranger")
    return {"publisher": publisher, "publisher.pub": publisher_pub, "stranger": stranger}


def test_a_supernode_with_trusted_publishers_runs_only_their_signed_bundles(tmp_path, keys):
    trusted = tmp_path / "trusted-publishers"
    trusted.write_text("# publishers we run\n" + keys["publisher.pub"].read_text())
    deployment = _TrustingDeployment(
        root=tmp_path / "deployment",
        num_nodes=1,
        node_flags=["--trusted-publishers", str(trusted)],
    )
    deployment.start()
    try:
        app = write_files(
            tmp_path / "app", app_files("signedapp", server=SERVER, client=CLIENT, config={})
        )
        deployment.add_to(app)

        unsigned = glade_in_process("run", str(app), "dev")
        assert unsigned.exit_code == 0, unsigned.stderr + deployment.logs()
        assert "REPLY error" in unsigned.stderr and "it is not signed" in unsigned.stderr

        signed = glade_in_process("run", str(app), "dev", "--sign-key", str(keys["publisher"]))
        assert signed.exit_code == 0, signed.stderr + deployment.logs()
        assert "signed by SHA256:" in signed.stderr
        assert "REPLY ok" in signed.stderr and "REPLY error" not in signed.stderr

        text = (app / "pyproject.toml").read_text()
        (app / "pyproject.toml").write_text(text + f'signing-key = "{keys["stranger"]}"\n')
        untrusted = glade_in_process("run", str(app), "dev")
        assert untrusted.exit_code == 0, untrusted.stderr
        assert "not in this node's --trusted-publishers" in untrusted.stderr

        node = deployment.nodes[0]
        assert node.popen.poll() is None, "the SuperNode stays up"
        log = (deployment.root / "node-0.log").read_text()
        assert "only app bundles signed by a trusted publisher run here" in log
        assert "it is not signed" in log  # the refusal is logged on the node too
    finally:
        deployment.stop()


def test_build_and_run_fail_early_naming_a_file_servers_would_refuse(tmp_path, keys):
    files = app_files("earlyapp", server=SERVER, client=CLIENT, config={})
    app = write_files(tmp_path / "app", {**files, "earlyapp/model.bin": "weights"})
    built = glade_in_process("build", str(app), "-o", str(tmp_path / "x.glade"))
    assert built.exit_code == 2, built.stderr
    assert "earlyapp/model.bin is not a file type" in built.stderr
    text = (app / "pyproject.toml").read_text()
    federation = '\n[tool.glade.federations.dev]\naddress = "127.0.0.1:1"\ninsecure = true\n'
    (app / "pyproject.toml").write_text(text + federation)
    run = glade_in_process("run", str(app), "dev")
    assert run.exit_code == 2 and "earlyapp/model.bin" in run.stderr, run.stderr
    assert "cannot reach" not in run.stderr  # it failed before connecting

    (app / "earlyapp" / "model.bin").unlink()
    signed = glade_in_process(
        "build", str(app), "-o", str(tmp_path / "x.glade"), "--sign-key", str(keys["publisher"])
    )
    assert signed.exit_code == 0 and "signed by SHA256:" in signed.stderr, signed.stderr
    missing = glade_in_process("build", str(app), "--sign-key", str(tmp_path / "nope.key"))
    assert missing.exit_code == 2 and "cannot read the private key" in missing.stderr
    (app / "pyproject.toml").write_text(text + federation + 'signing-key = "keys/nope.key"\n')
    unknown_key = glade_in_process("run", str(app), "dev")
    assert unknown_key.exit_code == 2 and "signing-key file" in unknown_key.stderr
