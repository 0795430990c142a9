"""The README's deployment walkthrough, run as written (a free port instead of 9093), and
``glade dev-federation`` stopping everything on Ctrl-C."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from glade_testing import glade_executable, living, read_ready_file, run_glade

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)


def _walkthrough() -> tuple[str, str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Run on a deployment\n(.*?)(?=^## |\Z)", readme, re.S | re.M)
    assert match, "README has no '## Run on a deployment' section"
    blocks = [body.strip() for lang, body in FENCE.findall(match.group(1)) if lang == "bash"]
    assert len(blocks) == 2, blocks
    return blocks[0], blocks[1]


def _start(args: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    with (cwd / "dev.log").open("wb") as log:
        return subprocess.Popen(
            [*glade_executable(), *args],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )


def _end(dev: subprocess.Popen[bytes]) -> None:
    if dev.poll() is None:
        dev.kill()
    dev.wait(10)


@pytest.mark.slow
def test_readme_walkthrough(tmp_path):
    start, steps = _walkthrough()
    assert shlex.split(start) == ["glade", "dev-federation", "--nodes", "3"]
    assert run_glade("new", "quickstart", "--framework", "numpy", cwd=tmp_path).returncode == 0
    ready = tmp_path / "dev.json"
    args = [*shlex.split(start)[1:], "--control-address", "127.0.0.1:0", "--ready-file", str(ready)]
    dev = _start(args, tmp_path)
    try:
        info = read_ready_file(ready, proc=dev, what="glade dev-federation")
        assert len(info["node_ids"]) == 3
        services = [psutil.Process(pid) for pid in info["pids"]]
        lines = steps.replace("127.0.0.1:9093", info["control"]).splitlines()
        assert lines[0].startswith("printf")
        subprocess.run(lines[0], shell=True, cwd=tmp_path, check=True, timeout=10)
        for line in lines[1:]:
            done = run_glade(*shlex.split(line)[1:], cwd=tmp_path, timeout=180)
            assert done.returncode == 0, (line, done.stderr)
            if line.startswith("glade run"):
                assert "Run 1 completed" in done.stdout, done.stderr
            if line.startswith("glade ls"):
                assert "completed" in done.stdout
            if line.startswith("glade log"):
                assert "run 1 finished: completed" in done.stdout
        sent = time.monotonic()
        dev.send_signal(signal.SIGINT)
        assert dev.wait(15) == 0
        assert time.monotonic() - sent < 6.0
        assert living(services) == []
        assert not ready.exists()
    finally:
        _end(dev)


def test_dev_federation_starts_nodes_and_stops_them_all_on_ctrl_c(tmp_path):
    ready = tmp_path / "dev.json"
    data = tmp_path / "data"
    dev = _start(
        [
            "dev-federation",
            "--nodes",
            "2",
            "--control-address",
            "127.0.0.1:0",
            "--data-dir",
            str(data),
            "--ready-file",
            str(ready),
        ],
        tmp_path,
    )
    try:
        info = read_ready_file(ready, proc=dev, what="glade dev-federation")
        services = [psutil.Process(pid) for pid in info["pids"]]
        assert len(services) == 3 and len(set(info["node_ids"])) == 2
        for i, node_id in enumerate(info["node_ids"]):
            assert json.loads((data / f"node-{i}" / "node.json").read_text()) == {
                "node_id": node_id
            }
        sent = time.monotonic()
        dev.send_signal(signal.SIGINT)
        assert dev.wait(15) == 0
        assert time.monotonic() - sent < 6.0
        assert living(services) == []
        stderr = (tmp_path / "dev.log").read_text()
        assert f'address = "{info["control"]}"' in stderr and "insecure = true" in stderr
        assert (data / "superlink" / "state.db").is_file()  # --data-dir keeps the state
    finally:
        _end(dev)
