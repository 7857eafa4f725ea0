"""Real trial processes: each catalogue variant ends in its own status with a useful reason."""

import json
import os
import re
import shutil
import socket
import tempfile
import time

import pytest

from search import PROJECT_ROOT
from search.run.runner import run_trial_process
from support import alive, make_variant, processes_in, wait_until
from support import bwrap_mark

pytestmark = pytest.mark.slow


needs_bwrap = bwrap_mark()
SANDBOXES = [pytest.param("none"), pytest.param("bwrap", marks=needs_bwrap)]


def run(smoke_setup, tmp_path, variant, timeout=None, files=None, **trial):
    conf, prepared = smoke_setup
    # The catalogue's variants have none of the seed's constants that the smoke preset sets.
    t = dict(conf["trial"], budget_seconds=1.0, budget_tolerance=0.5, startup_seconds=20, constants={})
    t.update(trial)
    variant_dir = make_variant(tmp_path / "variant", variant)
    for name, text in (files or {}).items():
        (variant_dir / name).write_text(text)
    spec = {"variant_dir": str(variant_dir), "data": prepared.spec(), "trial": t, "editable": conf["editable"]}
    return run_trial_process(spec, tmp_path / "trial", timeout=timeout)


@pytest.fixture
def listener():
    """A TCP server on the host's 127.0.0.1 that only queues connections; `reached()` says if any came."""
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)

    def reached() -> bool:
        try:
            server.accept()[0].close()
            return True
        except BlockingIOError:
            return False

    yield server.getsockname()[1], reached
    server.close()


def test_ok_variant_learns_and_reports_every_figure(smoke_setup, tmp_path):
    # 40 steps inside a budget they never reach: what the bigram learns does not depend on the machine's load.
    rec = run(smoke_setup, tmp_path, "ok.py", max_steps=40, budget_seconds=600.0)
    assert rec.status == "ok", rec.reason + rec.log_tail
    assert rec.num_steps == 40
    assert rec.val_bpb < 0.9 * rec.uniform_bpb  # a trained bigram beats uniform guessing clearly (by 21%)
    assert rec.test_bpb is not None and rec.eval_tokens > 0
    assert 0 < rec.training_seconds < rec.total_seconds
    assert rec.peak_mem_mb > 0 and rec.code_hash and rec.versions["torch"]
    assert (tmp_path / "trial" / "log.txt").read_text().rstrip().endswith(f"tokens_M:         {rec.tokens_M:.2f}")


def test_ok_variant_trains_for_its_time_budget(smoke_setup, tmp_path):
    rec = run(smoke_setup, tmp_path, "ok.py")  # a 1 s budget and no step cap: the clock ends training
    assert rec.status == "ok", rec.reason + rec.log_tail
    assert rec.num_steps > 0 and 0.9 <= rec.training_seconds <= 1.6


def test_crash_reports_the_exception(smoke_setup, tmp_path):
    rec = run(smoke_setup, tmp_path, "crash.py")
    assert rec.status == "crash"
    assert "boom: the variant failed at step 2" in rec.reason
    assert "Traceback" in rec.log_tail


def test_syntax_error_is_a_crash_naming_the_file(smoke_setup, tmp_path):
    rec = run(smoke_setup, tmp_path, "syntax_error.py")
    assert rec.status == "crash" and "SyntaxError" in rec.reason and "train.py" in rec.log_tail


def test_import_error_is_a_crash_naming_the_module(smoke_setup, tmp_path):
    rec = run(smoke_setup, tmp_path, "import_error.py")
    assert rec.status == "crash" and "ModuleNotFoundError" in rec.reason
    assert "torch_extensions_that_do_not_exist" in rec.reason


def test_nan_loss_is_diverged(smoke_setup, tmp_path):
    rec = run(smoke_setup, tmp_path, "nan_loss.py")
    assert rec.status == "diverged" and "nan" in rec.reason


def test_overrun_is_stopped_by_the_watchdog(smoke_setup, tmp_path):
    t0 = time.monotonic()
    rec = run(smoke_setup, tmp_path, "overrun.py")
    assert rec.status == "timeout" and "past a budget" in rec.reason
    assert time.monotonic() - t0 < 30  # stopped near budget * (1 + tolerance), not at the hard limit


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_hang_is_killed_at_the_hard_timeout(smoke_setup, tmp_path, sandbox):
    rec = run(smoke_setup, tmp_path, "hang.py", timeout=8, sandbox=sandbox)
    assert rec.status == "timeout" and "hard limit" in rec.reason and rec.sandbox == sandbox
    assert processes_in(tmp_path / "trial") == []


def test_lookahead_model_is_rejected(smoke_setup, tmp_path):
    rec = run(smoke_setup, tmp_path, "lookahead.py")
    assert rec.status == "rejected" and "looks ahead" in rec.reason
    assert rec.val_bpb is None  # never ranked


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_record_written_by_the_variant_is_not_believed(smoke_setup, tmp_path, sandbox):
    rec = run(smoke_setup, tmp_path, "fake_record.py", sandbox=sandbox)
    assert rec.status == "rejected" and "not written by the harness" in rec.reason
    assert rec.val_bpb is None


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_children_of_the_variant_die_with_it(smoke_setup, tmp_path, sandbox):
    rec = run(smoke_setup, tmp_path, "spawns_children.py", sandbox=sandbox)
    assert rec.status == "crash"
    assert (tmp_path / "trial" / "child.pid").exists()  # the child ran (its pid is the sandbox's own under bwrap)
    wait_until(lambda: processes_in(tmp_path / "trial") == [], timeout=30, what="the variant's child dying")


def test_preset_constant_missing_in_variant_is_named(smoke_setup, tmp_path):
    rec = run(smoke_setup, tmp_path, "ok.py", constants={"DEPTH": 3})
    assert rec.status == "crash" and "DEPTH" in rec.reason


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_trial_dies_when_its_parent_is_killed(smoke_setup, tmp_path, sandbox):
    """A SIGKILLed search must not leave its trial training: the trial notices and kills itself."""
    import signal
    import subprocess
    import sys

    conf, prepared = smoke_setup
    t = dict(conf["trial"], budget_seconds=60.0, startup_seconds=20, constants={}, sandbox=sandbox)
    spec = {"variant_dir": str(make_variant(tmp_path / "variant", "ok.py")), "data": prepared.spec(),
            "trial": t, "editable": conf["editable"]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    script = (
        "import json, sys, pathlib; from search.run.runner import run_trial_process;"
        f"spec = json.loads(pathlib.Path({str(tmp_path / 'spec.json')!r}).read_text());"
        f"run_trial_process(spec, pathlib.Path({str(tmp_path / 'trial')!r}), on_start=lambda p: print(p.pid, flush=True))"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child_pid = int(parent.stdout.readline())
        log = tmp_path / "trial" / "log.txt"
        # The parent dies while its trial trains: a progress line is in the trial's log.
        wait_until(lambda: re.search(r"^step \d+ \|", log.read_text(), re.M), timeout=120,
                   what="the trial's first progress line")
        assert alive(child_pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    wait_until(lambda: not alive(child_pid) and processes_in(tmp_path / "trial") == [], timeout=30,
               what="the orphaned trial killing itself")


def test_far_behind_the_reference_curve_is_stopped_early(smoke_setup, tmp_path):
    rec = run(smoke_setup, tmp_path, "ok.py", budget_seconds=3.0, stop_curve=[[0.0, 0.5], [1.0, 0.5]])
    assert rec.status == "stopped" and "early-stop limit" in rec.reason
    assert rec.saved_seconds > 0.5 and rec.training_seconds < 3.0 and rec.loss_curve


# --- confinement: each bad variant ends in its own status with a reason naming what it did

@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_writing_outside_is_rejected_even_when_the_refusal_is_caught(smoke_setup, tmp_path, sandbox):
    planted = PROJECT_ROOT / "eval" / "planted_by_variant.py"
    try:
        rec = run(smoke_setup, tmp_path, "writes_outside.py", sandbox=sandbox)
        assert not planted.exists()
    finally:
        planted.unlink(missing_ok=True)
    assert rec.status == "rejected" and rec.sandbox == sandbox
    assert rec.reason == f"the variant wrote outside its trial directory ({planted})"
    assert rec.num_steps > 0 and rec.val_bpb is None  # it trained on after catching the refusal; never ranked
    assert "write refused: evoresearch confinement" in (tmp_path / "trial" / "log.txt").read_text()


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_reading_the_validation_tokens_is_rejected(smoke_setup, tmp_path, sandbox):
    rec = run(smoke_setup, tmp_path, "reads_val.py", sandbox=sandbox)
    val = smoke_setup[1].spec()["val"]
    assert rec.status == "rejected", rec.reason
    assert rec.reason == f"the variant tried to read the validation data ({os.path.realpath(val)})"
    assert "validation tokens" not in (tmp_path / "trial" / "log.txt").read_text().split("Traceback")[0]


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_opening_a_socket_is_rejected(smoke_setup, tmp_path, sandbox, listener):
    port, reached = listener
    rec = run(smoke_setup, tmp_path, "opens_socket.py", sandbox=sandbox, files={"port.txt": str(port)})
    assert rec.status == "rejected", rec.reason
    assert rec.reason == f"the variant opened a network connection (127.0.0.1:{port})"
    assert not reached()


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_memory_hog_is_oom_naming_the_limit(smoke_setup, tmp_path, sandbox):
    rec = run(smoke_setup, tmp_path, "memory_hog.py", sandbox=sandbox, memory_limit_mb=1024)
    assert rec.status == "oom", rec.reason + rec.log_tail
    assert rec.reason.startswith("out of memory, over trial.memory_limit_mb=1024")
    assert "can't allocate memory" in rec.reason and "(in train())" in rec.reason
    assert rec.peak_mem_mb > 500  # it did get most of the way there


@needs_bwrap
def test_the_seed_variant_trains_ok_inside_bwrap(smoke_setup, tmp_path):
    conf, prepared = smoke_setup
    t = dict(conf["trial"], sandbox="bwrap", max_steps=4, budget_seconds=600.0)  # steps end it, not the clock
    spec = {"variant_dir": str(PROJECT_ROOT), "data": prepared.spec(), "trial": t, "editable": conf["editable"]}
    rec = run_trial_process(spec, tmp_path / "trial")
    assert rec.status == "ok", rec.reason + rec.log_tail
    assert rec.sandbox == "bwrap" and rec.val_bpb < rec.uniform_bpb
    assert "trial: sandbox bwrap" in (tmp_path / "trial" / "log.txt").read_text()
    assert json.loads((tmp_path / "trial" / "record.json").read_text())["sandbox"] == "bwrap"


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_child_process_gets_past_the_hook_but_not_past_bwrap(smoke_setup, tmp_path, sandbox, listener):
    """The audit hook sees only the trial process; bubblewrap holds its children too. Without the
    sandbox the child's write and connection succeed (which shows the bwrap case fails for the
    sandbox's reasons, not the test's): the target is then a file of the test's own."""
    port, reached = listener
    target = PROJECT_ROOT / "planted_by_child.txt" if sandbox == "bwrap" else tmp_path / "outside.txt"
    try:
        rec = run(smoke_setup, tmp_path, "escapes_by_child.py", sandbox=sandbox,
                  files={"port.txt": str(port), "target.txt": str(target)})
        written = target.exists()
    finally:
        if sandbox == "bwrap":
            target.unlink(missing_ok=True)
    escape = json.loads((tmp_path / "trial" / "escape.json").read_text())
    assert rec.status == "ok", rec.reason + rec.log_tail
    if sandbox == "bwrap":
        assert escape == {"write": "Read-only file system", "connect": "Connection refused"}
        assert not written and not reached()
    else:
        assert escape == {"write": "written", "connect": "connected"}
        assert written and reached()


@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_a_sigkilled_trial_says_it_may_have_run_out_of_memory(smoke_setup, tmp_path, sandbox):
    rec = run(smoke_setup, tmp_path, "killed.py", sandbox=sandbox)
    assert rec.status == "crash" and rec.sandbox == sandbox
    assert rec.reason == ("the trial process was killed by signal 9 (SIGKILL) before writing its record, possibly "
                          "by the kernel's out-of-memory killer; trial.memory_limit_mb makes the trial fail as `oom` "
                          "before the machine runs out")


@pytest.mark.skipif(not (os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")),
                    reason="torch.compile for the CPU needs a C++ compiler")
@pytest.mark.parametrize("sandbox", SANDBOXES)
def test_the_seed_compiled_as_on_a_gpu_trains_ok_under_the_confinement(smoke_setup, tmp_path, sandbox, monkeypatch):
    """On CUDA the seed torch.compiles its model inside the confined trial process, and the compiler
    writes its caches (Inductor's; on a GPU Triton's too) where the runner pointed them. Here the
    seed's CUDA gate is lifted so Inductor compiles for the CPU under the same rules."""
    source = (PROJECT_ROOT / "train" / "train.py").read_text()
    gate = "if COMPILE and on_cuda else model"
    assert gate in source, "the seed's compile line changed; update this test"
    variant = tmp_path / "variant"
    (variant / "train").mkdir(parents=True)
    (variant / "model").mkdir()
    (variant / "train" / "train.py").write_text(source.replace(gate, "if COMPILE else model"))
    shutil.copy(PROJECT_ROOT / "model" / "gpt.py", variant / "model" / "gpt.py")
    # A fresh system temp directory, so the compiler really writes (no cache hit from earlier runs).
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(system_tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)
    for name in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    conf, prepared = smoke_setup
    t = dict(conf["trial"], sandbox=sandbox, max_steps=3, startup_seconds=600, budget_seconds=600.0)
    spec = {"variant_dir": str(variant), "data": prepared.spec(), "trial": t, "editable": conf["editable"]}
    rec = run_trial_process(spec, tmp_path / "trial")
    assert rec.status == "ok", rec.reason + rec.log_tail
    assert rec.sandbox == sandbox and rec.val_bpb < rec.uniform_bpb
    if sandbox == "none":  # inside bwrap the caches live in the sandbox's private /tmp, gone with it
        assert list((system_tmp / f"torchinductor_{os.getuid()}").rglob("*.py")), "Inductor wrote no cache"
