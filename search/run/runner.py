"""Start trial processes: one process group each, a hard timeout, the record read back.

The only module that starts trial processes. A trial runs `python -m eval.trial spec.json` in a
new session, so the whole group (the variant's own children included) is killed together. The
harness proves a record is its own with a one-time token passed on stdin before the variant is
imported; a record without it (a variant that wrote one itself) is not believed. With
`trial.sandbox` (search/run/sandbox.py) the process runs inside bubblewrap; the harness confines the
variant itself as well (eval/confine.py) and caps its memory (`trial.memory_limit_mb`).
"""

from __future__ import annotations

import collections
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from search import PROJECT_ROOT
from search.run.sandbox import Sandbox, resolve_sandbox
from eval.record import Status, TrialRecord, WATCHDOG_MARK

LOG_TAIL_LINES = 60


def hard_timeout(trial: dict[str, Any]) -> float:
    """Seconds after which a trial process is killed whatever it is doing."""
    budget = float(trial["budget_seconds"])
    return float(trial["startup_seconds"]) + budget * (1.0 + float(trial["budget_tolerance"])) + float(
        trial["eval_seconds"]
    ) + 30.0


def run_trial_process(
    spec: dict[str, Any],
    trial_dir: Path,
    *,
    echo: TextIO | None = None,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
    on_start: Callable[[subprocess.Popen], None] | None = None,
) -> TrialRecord:
    """Run one trial to its end and return its record (it never raises for a variant's failure).

    Args:
        spec: the trial spec (variant_dir, data, trial, editable); record_path is filled in here.
        trial_dir: the trial's own directory: spec.json, log.txt and record.json go there; it is
            also the process's working directory.
        echo: a stream that receives the trial's output live (None: the log file only).
        timeout: hard limit in seconds (default: from the trial settings).
        env: extra environment variables for the trial process.
        on_start: called with the Popen once the process runs (for a caller that wants its pid).

    Returns:
        The TrialRecord: the harness's own, or one made here for a process that died or hung.

    Raises:
        KeyboardInterrupt: after killing the trial's process group, if the caller is interrupted.
        search.run.sandbox.SandboxError: if trial.sandbox=bwrap and bubblewrap does not work here.
        ValueError: for an unknown trial.sandbox.
    """
    sandbox = resolve_sandbox(spec["trial"]["sandbox"])
    trial_dir = Path(trial_dir).resolve()
    trial_dir.mkdir(parents=True, exist_ok=True)
    record_path = trial_dir / "record.json"
    record_path.unlink(missing_ok=True)
    spec = dict(spec, record_path=str(record_path), spawn_time=time.time(), sandbox=sandbox.mode)
    spec_path = trial_dir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    limit = timeout if timeout is not None else hard_timeout(spec["trial"])
    token = secrets.token_hex(16)

    child_env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1", **(env or {}))
    child_env.update(sandbox.environment(child_env, trial_dir))
    child_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), child_env.get("PYTHONPATH")) if p)
    argv = sandbox.command([sys.executable, "-m", "eval.trial", str(spec_path)], trial_dir,
                           read_only=_needed_paths(spec, child_env))
    tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
    with open(trial_dir / "log.txt", "w") as log:
        proc = subprocess.Popen(
            argv, cwd=trial_dir, env=child_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        if on_start:
            on_start(proc)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(token + "\n")
            proc.stdin.close()
        except BrokenPipeError:
            pass
        reader = threading.Thread(target=_pump, args=(proc.stdout, log, echo, tail), daemon=True)
        reader.start()
        killed = False
        try:
            proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            killed = True
        except KeyboardInterrupt:
            kill_group(proc)
            raise
        finally:
            kill_group(proc)  # the variant's children die with it, even after a clean exit
            reader.join(timeout=5)
    record = _read_record(record_path, token, _signal_of(proc.returncode, sandbox), killed, limit, list(tail))
    record.sandbox = sandbox.mode
    return record


def _needed_paths(spec: dict[str, Any], env: dict[str, str]) -> list[str]:
    """What the trial process reads: the harness, Python and its packages, the variant, the data."""
    paths = [str(PROJECT_ROOT), spec["variant_dir"], sys.prefix, sys.base_prefix, sys.exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable)), *sys.path,
             *env.get("PYTHONPATH", "").split(os.pathsep)]
    paths += [str(Path(v).parent) for k, v in spec["data"].items() if k != "info" and isinstance(v, str)]
    return [p for p in paths if p]


def _signal_of(returncode: int | None, sandbox: Sandbox) -> int | None:
    """The return code as Popen reports it: bwrap passes a signal death on as 128 + the signal."""
    if sandbox.mode == "bwrap" and returncode is not None and returncode > 128:
        return -(returncode - 128)
    return returncode


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of `proc` (no-op if it is gone) and reap the leader."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _pump(stream, log, echo, tail) -> None:
    for line in stream:
        log.write(line)
        log.flush()
        tail.append(line)
        if echo is not None:
            echo.write(line)
            echo.flush()


def _read_record(path: Path, token: str, returncode: int | None, killed: bool, limit: float,
                 tail: list[str]) -> TrialRecord:
    log_tail = "".join(tail)
    fired = [line[len(WATCHDOG_MARK):].strip() for line in tail if line.startswith(WATCHDOG_MARK)]
    if fired and not path.exists():  # the watchdog stopped the variant, which would not stop when interrupted
        return TrialRecord(status="timeout", reason=f"{fired[-1]} (it did not stop when interrupted, and its process "
                           "was ended)", log_tail=log_tail)
    if killed:
        return TrialRecord(status="timeout", reason=f"the trial process was still running after its hard "
                           f"limit of {limit:.0f}s and was killed", log_tail=log_tail)
    if path.exists():
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            return TrialRecord(status="crash", reason=f"the trial record is not valid JSON ({exc})",
                               log_tail=log_tail)
        if raw.pop("token", None) != token:
            return TrialRecord(status="rejected", reason="the trial record was not written by the harness "
                               "(a variant may not write its own results)", log_tail=log_tail)
        record = TrialRecord(**{k: v for k, v in raw.items() if k in TrialRecord.__dataclass_fields__})
        if record.status != Status.OK and not record.log_tail:
            record.log_tail = log_tail
        path.write_text(record.to_json())
        return record
    how = f"was killed by signal {-returncode}" if returncode is not None and returncode < 0 else (
        f"exited with code {returncode}")
    reason = f"the trial process {how} before writing its record"
    if returncode == -signal.SIGKILL:  # nothing here sends SIGKILL before the process has exited
        reason = ("the trial process was killed by signal 9 (SIGKILL) before writing its record, possibly by the "
                  "kernel's out-of-memory killer; trial.memory_limit_mb makes the trial fail as `oom` before the "
                  "machine runs out")
    return TrialRecord(status="crash", reason=reason, log_tail=log_tail)
