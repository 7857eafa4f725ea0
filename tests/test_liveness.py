"""Worker liveness, worker slots and failpoints: the pieces that let a run survive dead processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from datetime import datetime

import pytest

from search.run.failpoints import failpoint
from search.run.liveness import dead_here, is_dead, last_sign_of_life, stale_after_seconds, worker_name, worker_process
from search.config import SchedulerConfig
from search.run.workers import visible_gpus, worker_envs

HOST = socket.gethostname()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_worker_names_carry_host_and_pid():
    name = worker_name("w3")
    assert name == f"{HOST}-{os.getpid()}-w3"
    assert worker_process(name) == (HOST, os.getpid())
    assert worker_process("my-host-name-123-w0") == ("my-host-name", 123)  # hyphens in the host name
    assert worker_process(None) is None and worker_process("nonsense") is None


def test_a_dead_process_of_this_machine_is_dead_at_once():
    row = {"worker": f"{HOST}-{_dead_pid()}-w0", "heartbeat": 1e12}  # a heartbeat in the future changes nothing
    assert dead_here(row)
    assert is_dead(row, now=0.0, stale_after=60.0)


def test_a_live_process_and_this_process_are_not_dead_here():
    assert not dead_here({"worker": f"{HOST}-1-w0"})  # pid 1 is alive
    mine = {"worker": worker_name("w0"), "started_at": 0.0}
    assert not is_dead(mine, now=1e9, stale_after=60.0)  # silence never kills this process's own trial


def test_another_machine_is_dead_only_after_its_heartbeat_stops():
    row = {"worker": "elsewhere-4242-w0", "started_at": 1000.0, "heartbeat": 1100.0}
    assert not is_dead(row, now=1150.0, stale_after=60.0)
    assert is_dead(row, now=1161.0, stale_after=60.0)
    assert last_sign_of_life(row) == 1100.0
    # A trial popped by a process that died inside take() has only its start time.
    started = datetime.fromtimestamp(5000.0)
    assert last_sign_of_life({"datetime_start": started}) == pytest.approx(5000.0)
    assert is_dead({"datetime_start": started}, now=5061.0, stale_after=60.0)


def test_stale_after_defaults_to_four_heartbeats_and_checks_its_input():
    assert stale_after_seconds(SchedulerConfig(heartbeat_seconds=30, stale_after_seconds=None)) == 120.0
    assert stale_after_seconds(SchedulerConfig(heartbeat_seconds=1, stale_after_seconds=None)) == 60.0
    assert stale_after_seconds(SchedulerConfig(heartbeat_seconds=1, stale_after_seconds=5)) == 5.0
    with pytest.raises(ValueError, match="stale_after_seconds"):
        stale_after_seconds(SchedulerConfig(stale_after_seconds=0))
    with pytest.raises(ValueError, match="heartbeat_seconds"):
        stale_after_seconds(SchedulerConfig(heartbeat_seconds=-1))


def test_auto_workers_pin_one_per_visible_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert visible_gpus() == ["2", "3"]
    assert worker_envs("auto") == [{"CUDA_VISIBLE_DEVICES": "2"}, {"CUDA_VISIBLE_DEVICES": "3"}]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert worker_envs("auto") == [{}]  # no GPU: one unpinned worker


def test_worker_counts():
    assert worker_envs(0) == []
    assert worker_envs(1) == [{}]
    assert len(worker_envs(2)) == 2 and "OMP_NUM_THREADS" in worker_envs(2)[0]
    for bad in (-1, "many"):
        with pytest.raises(ValueError, match="scheduler.workers"):
            worker_envs(bad)


def test_failpoints_do_nothing_unless_named(monkeypatch):
    monkeypatch.delenv("EVORESEARCH_FAILPOINT", raising=False)
    failpoint("finished")
    monkeypatch.setenv("EVORESEARCH_FAILPOINT", "tagged")
    failpoint("finished")  # another point
    monkeypatch.setenv("EVORESEARCH_FAILPOINT", "no-such-point")
    with pytest.raises(ValueError, match="names no failpoint"):
        failpoint("finished")


def test_a_failpoint_kills_its_process_on_the_nth_pass():
    code = "from search.run.failpoints import failpoint\nfor i in range(5):\n    print(i, flush=True)\n    failpoint('queued')\n"
    env = dict(os.environ, EVORESEARCH_FAILPOINT="queued:3")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split("\n")[:3] == ["0", "1", "2"] and "[failpoint] queued" in done.stdout
