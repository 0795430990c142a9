"""A SuperNode's own bundle policy: trusted publishers, file types and size cap. A refused
bundle gets error replies naming the reason; the node stays up and runs other bundles."""

from __future__ import annotations

import uuid
from pathlib import Path

from glade_testing import app_files, write_files
from sn_harness import CLIENT_APP, CONFIG, SERVER_APP, run_and_wait

from glade.bundle import build_bundle
from glade.bundle_policy import BundlePolicy
from glade.keypairs import PrivateKey
from glade.message import ErrorCode


def _app(root: Path, *, extra: dict[str, str] | None = None, key: PrivateKey | None = None):
    package = f"snpolicy_{uuid.uuid4().hex[:8]}"
    files = app_files(package, server=SERVER_APP, client=CLIENT_APP, config=CONFIG)
    project = write_files(root / package, {**files, **(extra or {})})
    return build_bundle(project, policy=BundlePolicy(file_types=None), signing_key=key)


def _refusal(results, node) -> str:
    code, reason = results[0]["errors"][str(node.node_id)]
    assert code == ErrorCode.LOAD_CLIENT_APP
    return reason


def test_a_node_with_trusted_publishers_runs_only_their_bundles(
    superlink, control, start_node, tmp_path
):
    publisher, stranger = PrivateKey.generate(), PrivateKey.generate()
    data_dir = tmp_path / "node"
    node = start_node(
        superlink.addresses["fleet"],
        data_dir=data_dir,
        trusted_publishers=(publisher.public_key,),
    )
    assert node.wait_registered(10)

    run, results, log = run_and_wait(control, _app(tmp_path))
    assert run.sub_status == "completed", log
    assert "not signed" in _refusal(results, node) and "--trusted-publishers" in log

    _, results, _ = run_and_wait(control, _app(tmp_path, key=stranger))
    reason = _refusal(results, node)
    assert stranger.public_key.fingerprint in reason and "not in this node's" in reason

    run, results, log = run_and_wait(control, _app(tmp_path, key=publisher))
    assert run.sub_status == "completed", log
    assert list(results[0]["ok"]) == [str(node.node_id)] and results[0]["errors"] == {}
    assert len(list((data_dir / "apps").iterdir())) == 1  # only the trusted one was kept


def test_a_node_refuses_file_types_and_sizes_its_policy_does_not_allow(
    superlink, control, start_node, tmp_path
):
    node = start_node(
        superlink.addresses["fleet"],
        bundle_file_types=(".py", ".toml"),
        max_bundle_bytes=20_000,
    )
    assert node.wait_registered(10)
    _, results, _ = run_and_wait(control, _app(tmp_path, extra={"NOTES.md": "hello"}))
    reason = _refusal(results, node)
    assert "'NOTES.md' is not an allowed file type" in reason and "--bundle-file-types" in reason

    big = {"data/table.py": "T = '" + "x" * 30_000 + "'\n"}
    _, results, _ = run_and_wait(control, _app(tmp_path, extra=big))
    reason = _refusal(results, node)
    assert "--max-bundle-size" in reason and "'data/table.py'" in reason
    assert node.node_id in {n.node_id for n in control.list_nodes()}  # still there
