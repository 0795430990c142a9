"""Helpers of the SuperNode tests: the apps they run and running them to their end."""

from __future__ import annotations

import json
from typing import Any

from glade.bundle import Bundle
from glade.superlink.client import ControlClient

SERVER_APP = """
import json

import numpy as np

from glade import ArrayRecord, ConfigRecord, Message, RecordDict, ServerApp
from glade.server.loop import wait_for_nodes

app = ServerApp()


@app.main()
def main(grid, context):
    cfg = context.run_config
    nodes = wait_for_nodes(grid, int(cfg["nodes"]), timeout=30)
    arrays = ArrayRecord({"w": np.arange(int(cfg["size"]), dtype=np.float32)})
    for rnd in range(1, int(cfg["rounds"]) + 1):
        content = RecordDict({"arrays": arrays, "config": ConfigRecord({"round": rnd})})
        msgs = [
            Message(content, dst_node_id=n, message_type="train", group_id=str(rnd))
            for n in nodes
        ]
        replies = grid.send_and_receive(msgs, timeout=float(cfg["timeout"]))
        out = {"round": rnd, "ok": {}, "errors": {}}
        for r in replies:
            node = str(r.metadata.src_node_id)
            if r.has_content:
                w = r.content["arrays"]["w"].numpy()
                out["ok"][node] = [float(w.sum()), int(r.content["metrics"]["calls"])]
            else:
                out["errors"][node] = [int(r.error.code), r.error.reason[-500:]]
        print("RESULT " + json.dumps(out), flush=True)
"""

# "client-mode": ok (w + partition-id; counts its calls in context.state), raise, crash
# (os._exit on round 1), sleep (a handler that takes "sleep" seconds).
CLIENT_APP = """
import os
import time

from glade import ArrayRecord, ClientApp, MetricRecord, RecordDict

app = ClientApp()


@app.train()
def train(msg, context):
    mode = context.run_config["client-mode"]
    rnd = int(msg.content["config"]["round"])
    if mode == "raise":
        raise ValueError("boom in the client")
    if mode == "crash" and rnd == 1:
        os._exit(3)
    if mode == "sleep":
        time.sleep(float(context.run_config["sleep"]))
    calls = int(context.state["c"]["calls"]) + 1 if "c" in context.state else 1
    context.state["c"] = MetricRecord({"calls": calls})
    w = msg.content["arrays"]["w"].numpy() + context.node_config.get("partition-id", 0)
    return RecordDict(
        {"arrays": ArrayRecord({"w": w}), "metrics": MetricRecord({"calls": calls})}
    )
"""

CONFIG = {"nodes": 1, "rounds": 1, "size": 10, "timeout": 30.0, "client-mode": "ok", "sleep": 0.0}


def run_and_wait(
    control: ControlClient,
    bundle: Bundle,
    config: dict[str, Any] | None = None,
    *,
    timeout: float = 60.0,
) -> tuple[Any, list[dict[str, Any]], str]:
    """Submit a run, wait for it to end; (run info, RESULT documents, whole log)."""
    control.upload_bundle(bundle)
    run_id = control.start_run(bundle.bundle_id, run_config=config or {})
    log = "".join(text for _, text in control.stream_logs(run_id, follow=True, timeout_s=timeout))
    run, _ = control.get_run(run_id)
    results = [
        json.loads(line.partition("RESULT ")[2])
        for line in log.splitlines()
        if line.startswith("RESULT ")
    ]
    return run, results, log
