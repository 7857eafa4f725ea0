"""The bubblewrap sandbox (search/run/sandbox.py): choosing it, its arguments, and what it stops, for real."""

import errno
import os
import signal
import socket
import subprocess
import sys

import pytest

from search import PROJECT_ROOT
from search.run.sandbox import Sandbox, SandboxError, bwrap_arguments, resolve_sandbox
from support import bwrap_mark, processes_in, wait_until


needs_bwrap = bwrap_mark()


def test_none_is_none_and_unknown_is_an_error():
    assert resolve_sandbox("none") == Sandbox("none")
    assert Sandbox("none").command(["python", "x"], "/tmp/t") == ["python", "x"]
    with pytest.raises(ValueError, match="trial.sandbox='docker' is not one of auto, bwrap, none"):
        resolve_sandbox("docker")


def test_auto_without_bwrap_runs_unconfined_and_says_so_once(capsys, monkeypatch):
    import search.run.sandbox

    monkeypatch.setattr(search.run.sandbox, "_announced", set())  # as in a fresh process
    first = resolve_sandbox("auto", which=lambda name: None)
    again = resolve_sandbox("auto", which=lambda name: None)
    assert first.mode == again.mode == "none"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bwrap is not installed" in err and "without the sandbox" in err


def test_caches_point_where_a_trial_may_write(tmp_path):
    inside = Sandbox("bwrap", bwrap="/usr/bin/bwrap").environment({"TRITON_CACHE_DIR": "/home/me/.triton"})
    assert inside["TMPDIR"] == "/tmp/tmp" and inside["TRITON_CACHE_DIR"].startswith("/tmp/")
    assert inside["TORCHINDUCTOR_CACHE_DIR"].startswith("/tmp/") and inside["XDG_CACHE_HOME"].startswith("/tmp/")
    import tempfile

    assert Sandbox("none").environment({})["TRITON_CACHE_DIR"].startswith(tempfile.gettempdir())
    mine = {"TRITON_CACHE_DIR": str(tmp_path), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path)}
    assert Sandbox("none").environment(mine) == {}  # the user's choice stands
    own = Sandbox("none").environment(mine, tmp_path / "trial")
    assert own == {"TMPDIR": str(tmp_path / "trial" / "tmp")} and (tmp_path / "trial" / "tmp").is_dir()


def test_auto_with_a_broken_bwrap_runs_unconfined():
    sandbox = resolve_sandbox("auto", which=lambda name: "/usr/bin/bwrap",
                              probe=lambda path: "bubblewrap does not work here (setting up uid map: Permission denied)")
    assert sandbox.mode == "none" and "uid map" in sandbox.note


def test_bwrap_asked_for_but_missing_says_what_to_do():
    with pytest.raises(SandboxError) as info:
        resolve_sandbox("bwrap", which=lambda name: None)
    message = str(info.value)
    assert "bwrap is not installed" in message and "apt-get install bubblewrap" in message
    assert "trial.sandbox=none" in message
    with pytest.raises(SandboxError, match="Operation not permitted.*trial.sandbox=none"):
        resolve_sandbox("bwrap", which=lambda name: "/usr/bin/bwrap",
                        probe=lambda path: "bubblewrap does not work here (bwrap: Operation not permitted)")


def test_arguments_rebind_what_the_private_tmp_would_hide(tmp_path):
    trial, variant, data = tmp_path / "trial", tmp_path / "variant", tmp_path / "cache" / "prepared"
    for d in (trial, variant / "train", data):
        d.mkdir(parents=True)
    args = bwrap_arguments(trial, [variant, variant / "train", data, "/usr/lib", tmp_path / "missing"])
    pairs = [args[i + 1] for i, a in enumerate(args) if a == "--ro-bind"]
    assert pairs[0] == "/" and str(variant) in pairs and str(data) in pairs
    assert str(variant / "train") not in pairs and "/usr/lib" not in pairs  # nested, or visible anyway
    assert str(tmp_path / "missing") not in pairs
    assert args.index("--tmpfs") < args.index(str(variant)) < args.index("--bind")  # order matters
    assert args[args.index("--bind") + 1] == str(trial) and args[args.index("--chdir") + 1] == str(trial)
    assert "--unshare-net" in args and "--die-with-parent" in args
    assert ("--cap-drop" in args) == (os.geteuid() == 0)


INSIDE = """
import json, os, socket, sys
trial, project, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
out = {}
def attempt(name, act):
    try:
        act()
        out[name] = "ok"
    except OSError as exc:
        out[name] = exc.errno
attempt("write_trial", lambda: open(os.path.join(trial, "ok.txt"), "w").close())
attempt("write_project", lambda: open(os.path.join(project, "planted_by_sandbox_test.txt"), "w").close())
attempt("write_tmp", lambda: open("/tmp/private.txt", "w").close())
attempt("connect", lambda: socket.create_connection(("127.0.0.1", port), timeout=3).close())
out["cwd"] = os.getcwd()
print(json.dumps(out))
"""


@needs_bwrap
def test_inside_bwrap_the_system_is_read_only_and_the_network_gone(tmp_path):
    import json

    trial = tmp_path / "trial"
    trial.mkdir()
    sandbox = resolve_sandbox("bwrap")
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    try:
        argv = sandbox.command([sys.executable, "-c", INSIDE, str(trial), str(PROJECT_ROOT),
                                str(server.getsockname()[1])], trial, read_only=[PROJECT_ROOT, *sys.path])
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, **sandbox.environment(dict(os.environ))))
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        with pytest.raises(BlockingIOError):
            server.accept()  # the sandbox's 127.0.0.1 is its own: nothing reached this one
    finally:
        server.close()
    assert out["write_trial"] == "ok" and (trial / "ok.txt").exists()
    assert out["write_project"] == errno.EROFS
    assert not (PROJECT_ROOT / "planted_by_sandbox_test.txt").exists()
    assert out["write_tmp"] == "ok" and not os.path.exists("/tmp/private.txt")
    assert out["connect"] in (errno.ECONNREFUSED, errno.ENETUNREACH)
    assert out["cwd"] == str(trial)


@needs_bwrap
def test_killing_the_process_group_kills_the_sandboxed_tree(tmp_path):
    trial = tmp_path / "trial"
    trial.mkdir()
    sandbox = resolve_sandbox("bwrap")
    script = "import subprocess, time; subprocess.Popen(['sleep', '300']); print('up', flush=True); time.sleep(300)"
    proc = subprocess.Popen(sandbox.command([sys.executable, "-c", script], trial, read_only=sys.path),
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        inside = processes_in(trial)
        assert len(inside) >= 2  # python and its sleep, seen from here
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        wait_until(lambda: processes_in(trial) == [], timeout=30, what="the sandboxed tree dying")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)

