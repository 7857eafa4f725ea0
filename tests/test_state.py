"""What a run's state is shown as: a killed run is not "running"; a noise floor from one repeat is
not a figure; a resumed run's summary counts this session's device time against its wall time."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from search.config import load_config
from search.record.runs import RunState
from search.record.summary import RunSummary


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _state(trials) -> RunState:
    return RunState(name="r", run_dir=Path("."), conf=load_config({"run": {"name": "r"}}), trials=trials, attrs={},
                    storage_url="sqlite://")


def test_a_trial_left_running_by_a_dead_worker_is_not_a_running_run():
    now = time.time()
    dead = {"number": 0, "state": "RUNNING", "worker": f"{socket.gethostname()}-{_dead_pid()}-w0", "heartbeat": now}
    alive = {"number": 1, "state": "RUNNING", "worker": f"{socket.gethostname()}-{_alive_pid()}-w0", "heartbeat": now}
    assert not _state([dead]).running
    assert _state([dead, alive]).running


def _alive_pid() -> int:
    import os

    return os.getppid()  # the process that started this test run


def _summary(**over) -> str:
    values = dict(run="r", best=None, front=[], by_status={}, by_operator={}, device_seconds=30.0, wall_seconds=60.0)
    return RunSummary(**(values | over)).text()


def test_a_noise_floor_from_one_repeat_is_not_shown_as_zero():
    text = _summary(noise={"floor": 0.0, "mean": 3.0, "std": 0.0, "n": 1})
    assert "noise floor: not measured yet" in text and "0.0000" not in text
    assert "noise floor: 0.0300 (seed mean 3.000000, std 0.0150, n=2)" in _summary(
        noise={"floor": 0.03, "mean": 3.0, "std": 0.015, "n": 2})


def test_a_resumed_runs_device_time_is_this_sessions():
    assert "device time 30s of 1m00s wall (50%) in this session" in _summary(resumed=True)
    assert "(50%)\n" in _summary() + "\n"
