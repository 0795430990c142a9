"""The Control API: bundles, StartRun validation, ListRuns, StopRun, StreamLogs, ListNodes."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import zipfile

import grpc
import pytest
from sl_harness import Control, FakeNode, echo_app, make_bundle

from glade.superlink import SuperLink
from glade.transport.v1 import control_pb2 as cpb
from glade.transport.v1 import run_pb2


def _status(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def _start_raw(control: Control, bundle: bytes) -> grpc.RpcError:
    bundle_id = control.upload(bundle)
    return _status(lambda: control.stub.StartRun(cpb.StartRunRequest(bundle_id=bundle_id)))


def _zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return out.getvalue()


def test_unknown_bundle_is_not_found_and_bad_ids_invalid(control: Control) -> None:
    error = _status(lambda: control.stub.StartRun(cpb.StartRunRequest(bundle_id="a" * 64)))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "upload it first" in error.details()
    error = _status(lambda: control.stub.StartRun(cpb.StartRunRequest(bundle_id="../x")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda: b"this is not a zip", "not a readable zip"),
        (lambda: _zip({"pyproject.toml": b"x"}), "no glade-manifest.json"),
        (lambda: _zip({"glade-manifest.json": b"{not json"}), "not valid JSON"),
        (
            lambda: make_bundle(
                echo_app(),
                manifest={"publisher": "p", "name": "n", "version": "1", "files": {}},
            ),
            "not in the manifest",
        ),
        (lambda: _tampered(), "does not match its sha256"),
        (lambda: make_bundle({**echo_app(), "../escape.py": "x"}), "unsafe path"),
        (lambda: make_bundle({"pyproject.toml": "[project]\nname='x'\n"}), "pyproject"),
        (
            lambda: make_bundle(
                echo_app(),
                manifest={"publisher": "", "name": "n", "version": "1", "files": {}},
            ),
            "publisher",
        ),
    ],
)
def test_bad_bundles_are_invalid_argument_with_the_reason(control: Control, make, why) -> None:
    error = _start_raw(control, make())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert why in error.details()
    assert control.stub.ListRuns(cpb.ListRunsRequest()).runs == []  # nothing was queued


def _tampered() -> bytes:
    files = echo_app()
    manifest = {
        "publisher": "p",
        "name": "n",
        "version": "1",
        "files": {k: hashlib.sha256(str(v).encode()).hexdigest() for k, v in files.items()},
    }
    manifest["files"]["pyproject.toml"] = "0" * 64
    return make_bundle(files, manifest=manifest)


def test_bad_run_config_is_refused(control: Control) -> None:
    request = cpb.StartRunRequest(bundle_id=control.upload(make_bundle(echo_app())))
    request.run_config.entries.add(key="no-value")
    error = _status(lambda: control.stub.StartRun(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "no-value" in error.details()


def test_list_runs_and_nodes(link: SuperLink, control: Control) -> None:
    node = FakeNode(link.addresses["fleet"])
    try:
        run_id = control.start(make_bundle(echo_app()), mode="exit", code=0)
        run = control.wait(run_id)
        assert run.sub_status == "completed" and run.app_name == "echo"
        assert run.app_publisher == "tests" and run.app_version == "1.2.3"
        assert run.created_at <= run.started_at <= run.finished_at
        config = {e.key: e.value.WhichOneof("value") for e in run.run_config.entries}
        assert config["mode"] == "string" and config["rounds"] == "sint64"  # bundle defaults
        listed = control.stub.ListRuns(cpb.ListRunsRequest())
        assert [r.run_id for r in listed.runs] == [run_id] and listed.now >= run.finished_at
        error = _status(lambda: control.stub.ListRuns(cpb.ListRunsRequest(run_id=run_id + 1)))
        assert error.code() == grpc.StatusCode.NOT_FOUND
        nodes = control.stub.ListNodes(cpb.ListNodesRequest()).nodes
        assert [(n.node_id, n.online) for n in nodes] == [(node.node_id, True)]
    finally:
        node.close()


def test_stop_run_and_unknown_ids(control: Control) -> None:
    run_id = control.start(make_bundle(echo_app()), mode="hang")
    control.wait_status(run_id, run_pb2.RUN_STATUS_RUNNING)
    started = time.monotonic()
    assert control.stub.StopRun(cpb.StopRunRequest(run_id=run_id)).stopped
    run = control.wait(run_id, timeout=10)
    assert time.monotonic() - started < 5
    assert run.sub_status == "stopped" and "stopped by a user" in run.reason
    assert not control.stub.StopRun(cpb.StopRunRequest(run_id=run_id)).stopped  # finished
    error = _status(lambda: control.stub.StopRun(cpb.StopRunRequest(run_id=run_id + 5)))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    error = _status(lambda: list(control.stub.StreamLogs(cpb.StreamLogsRequest(run_id=77))))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_stream_logs_follows_until_the_run_finishes(link: SuperLink, control: Control) -> None:
    nodes = [FakeNode(link.addresses["fleet"]).serve() for _ in range(2)]
    try:
        run_id = control.start(make_bundle(echo_app()), **{"min-nodes": 2, "rounds": 3})
        request = cpb.StreamLogsRequest(run_id=run_id, follow=True)
        chunks = list(control.stub.StreamLogs(request, timeout=30))
        text = "".join(c.text for c in chunks)
        assert control.run(run_id).status == run_pb2.RUN_STATUS_FINISHED  # it ended with the run
        assert "round 3: replies=2 errors=[] total=90.0" in text
        assert text.rstrip().endswith("finished: completed")
        # offsets are byte offsets; reading from one gives the rest
        offsets = [c.offset for c in chunks]
        assert offsets == sorted(offsets) and offsets[0] == 0
        middle = len(text.encode()) // 2
        rest = control.stub.StreamLogs(cpb.StreamLogsRequest(run_id=run_id, offset=middle))
        assert "".join(c.text for c in rest).encode() == text.encode()[middle:]
        history = json.loads(control.run(run_id).history_json)
        assert history["metrics"]["train"]["3"] == {"total": 90.0}
        assert history["replies"]["train"] == {"1": 2, "2": 2, "3": 2}
    finally:
        for node in nodes:
            node.close()


def test_a_follower_leaves_when_the_superlink_stops(start_link) -> None:
    link = start_link()
    control = Control(link.addresses["control"])
    run_id = control.start(make_bundle(echo_app()), mode="hang")
    got: list[str] = []

    def follow() -> None:
        request = cpb.StreamLogsRequest(run_id=run_id, follow=True)
        try:
            got.extend(c.text for c in control.stub.StreamLogs(request, timeout=30))
        except grpc.RpcError:
            got.append("<cancelled>")

    thread = threading.Thread(target=follow)
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    link.stop(grace=1.0)
    thread.join(timeout=10)
    assert not thread.is_alive() and time.monotonic() - started < 5
    control.close()


def test_garbage_and_oversized_requests_leave_the_service_up(control: Control) -> None:
    raw = control.channel.unary_unary("/glade.v1.Control/StartRun")
    error = _status(lambda: raw(b"\x0a\xff\xff\xff\xff\x0fgarbage"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    error = _status(lambda: raw(b"\x0a\x80\x80\x80\x0a" + b"x" * (20 << 20)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    upload = control.channel.stream_unary("/glade.v1.Control/PushObject")
    error = _status(lambda: upload(iter([b"\x22\x05hello", b"\xff"])))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert control.stub.ListRuns(cpb.ListRunsRequest()).runs == []
    run_id = control.start(make_bundle(echo_app()), mode="exit", code=0)
    assert control.wait(run_id).sub_status == "completed"
