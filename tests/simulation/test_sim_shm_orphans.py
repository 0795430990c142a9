"""Run folders of processes killed with SIGKILL are swept by the next run."""

import os
import subprocess
import sys

from glade.simulation.shm import RunDir


def test_a_new_run_dir_removes_folders_of_dead_owners_only(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    orphan = tmp_path / f"glade-sim-{dead_pid}-abc"
    orphan.mkdir()
    (orphan / "w0g1-status").write_bytes(bytes(16))
    mine = tmp_path / f"glade-sim-{os.getpid()}-xyz"
    mine.mkdir()
    unrelated = tmp_path / "glade-sim-notapid-q"
    unrelated.mkdir()

    run_dir = RunDir(tmp_path)
    try:
        assert not orphan.exists()
        assert mine.exists() and unrelated.exists()
        assert run_dir.path.name.startswith(f"glade-sim-{os.getpid()}-")
    finally:
        run_dir.remove()
    assert not run_dir.path.exists()
