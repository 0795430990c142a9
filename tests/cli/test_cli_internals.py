"""The CLI's building blocks: exit-code table, signal handling, JSON output, formatting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import typer
from glade_testing import living

from glade.cli.console import JsonOutput
from glade.cli.exit_codes import Interrupted, exit_code_for
from glade.cli.interrupt import _descendants, stop_on_signals
from glade.cli.plan import merge_run_config
from glade.cli.progress import format_metrics, format_value
from glade.errors import (
    AppLoadError,
    ConfigError,
    GladeError,
    NotEnoughNodesError,
    RunError,
    SerdeError,
    TransportError,
)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ConfigError("x"), 2),
        (AppLoadError("x"), 3),
        (RunError("x"), 1),
        (NotEnoughNodesError("x"), 1),
        (TransportError("x"), 4),
        (SerdeError("x"), 1),
        (GladeError("x"), 1),
        (KeyboardInterrupt(), 130),
        (Interrupted(signal.SIGTERM), 143),
        (typer.Abort(), 1),
        (RuntimeError("a bug"), 70),
        (ValueError("a bug"), 70),
    ],
)
def test_exit_codes(exc, code):
    assert exit_code_for(exc) == code


def _wait_for_interrupt() -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(0.01)
    raise AssertionError("the signal was not turned into Interrupted")


def test_first_signal_interrupts_and_later_ones_are_ignored():
    before = signal.getsignal(signal.SIGINT)
    overdue = threading.Event()
    with stop_on_signals(grace_s=30, on_overdue=lambda s: overdue.set()) as request:
        with pytest.raises(Interrupted) as caught:
            os.kill(os.getpid(), signal.SIGINT)
            _wait_for_interrupt()
        os.kill(os.getpid(), signal.SIGINT)  # ignored: the clean-up must not be interrupted
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
    assert caught.value.signum == signal.SIGINT
    assert request.signum == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is before
    assert not overdue.is_set()


def test_watchdog_fires_when_the_clean_up_hangs():
    overdue: list[int] = []
    fired = threading.Event()

    def on_overdue(signum: int) -> None:
        overdue.append(signum)
        fired.set()

    with stop_on_signals(grace_s=0.2, on_overdue=on_overdue):
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGTERM)
            _wait_for_interrupt()
        assert fired.wait(5)
    assert overdue == [signal.SIGTERM]


def test_watchdog_stays_quiet_when_the_block_ends_in_time():
    fired = threading.Event()
    with stop_on_signals(grace_s=0.3, on_overdue=lambda s: fired.set()), pytest.raises(Interrupted):
        os.kill(os.getpid(), signal.SIGINT)
        _wait_for_interrupt()
    assert not fired.wait(0.6)


SLEEPER = "import time; time.sleep(60)"
PARENT = (
    "import subprocess, sys, time; "
    f"subprocess.Popen([sys.executable, '-c', {SLEEPER!r}]); time.sleep(60)"
)
KILLER = """
import os, subprocess, sys, time
from glade.cli.interrupt import _descendants, kill_descendants
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
deadline = time.monotonic() + 20
while len(_descendants(os.getpid())) < 2 and time.monotonic() < deadline:
    time.sleep(0.05)
print(" ".join(map(str, _descendants(os.getpid()))), flush=True)
kill_descendants()
child.wait(5)
"""


def test_kill_descendants_kills_children_and_grandchildren():
    done = subprocess.run(
        [sys.executable, "-c", KILLER, PARENT], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    pids = [int(p) for p in done.stdout.split()]
    assert len(pids) == 2  # the child and its own child
    assert living(pids, grace=3) == []


def test_descendants_of_a_childless_process():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        assert _descendants(proc.pid) == []
        assert proc.pid in _descendants(os.getpid())
    finally:
        proc.kill()
        proc.wait()


def test_json_output_prints_one_document(capsys):
    out = JsonOutput()
    assert out.emit({"status": "completed"})
    assert not out.emit({"status": "stopped"})
    assert out.done
    assert json.loads(capsys.readouterr().out) == {"status": "completed"}


def test_merge_run_config_types():
    defaults = {"rounds": 3, "lr": 0.1, "name": "a", "flag": False, "layers": [1, 2]}
    merged = merge_run_config(
        defaults, {"lr": 1, "name": 42, "flag": True, "layers": [3], "rounds": 5}
    )
    assert merged == {"rounds": 5, "lr": 1.0, "name": "42", "flag": True, "layers": [3]}
    assert isinstance(merged["lr"], float)
    assert merge_run_config(defaults, {}) == defaults
    for bad in ({"rounds": 1.5}, {"rounds": True}, {"flag": 1}, {"lr": "fast"}, {"x": 1}):
        with pytest.raises(ConfigError):
            merge_run_config(defaults, bad)


def test_metric_formatting():
    assert format_value(0.123456) == "0.1235"
    assert format_value(12) == "12"
    assert format_value([1.0, 2.0]) == "[2 values]"
    assert format_metrics({"num-examples": 10, "loss": 0.5, "accuracy": 0.9}) == (
        "accuracy 0.9 · loss 0.5"
    )
