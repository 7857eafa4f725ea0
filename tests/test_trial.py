"""Real trial processes: each catalogue variant ends in its own status with a useful reason."""

import os
import time

import pytest

from conftest import make_variant
from search.runner import run_trial_process

pytestmark = pytest.mark.slow


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def run(smoke_setup, tmp_path, variant, timeout=None, **trial):
    conf, prepared = smoke_setup
    # The catalogue's variants have none of the seed's constants that the smoke preset sets.
    t = dict(conf["trial"], budget_seconds=1.0, budget_tolerance=0.5, startup_seconds=20, constants={})
    t.update(trial)
    spec = {
        "variant_dir": str(make_variant(tmp_path / "variant", variant)),
        "data": prepared.spec(), "trial": t, "editable": conf["editable"],
    }
    return run_trial_process(spec, tmp_path / "trial", timeout=timeout)


def test_ok_variant_learns_and_reports_every_figure(smoke_setup, tmp_path):
    rec = run(smoke_setup, tmp_path, "ok.py")
    assert rec.status == "ok", rec.reason + rec.log_tail
    assert rec.val_bpb < 0.8 * rec.uniform_bpb  # a trained bigram beats uniform guessing by far
    assert rec.test_bpb is not None and rec.eval_tokens > 0 and rec.num_steps > 0
    assert 0.9 <= rec.training_seconds <= 1.6 and rec.total_seconds > rec.training_seconds
    assert rec.peak_mem_mb > 0 and rec.code_hash and rec.versions["torch"]
    assert (tmp_path / "trial" / "log.txt").read_text().rstrip().endswith(f"tokens_M:         {rec.tokens_M:.2f}")


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


def test_hang_is_killed_at_the_hard_timeout(smoke_setup, tmp_path):
    rec = run(smoke_setup, tmp_path, "hang.py", timeout=8)
    assert rec.status == "timeout" and "hard limit" in rec.reason


def test_lookahead_model_is_rejected(smoke_setup, tmp_path):
    rec = run(smoke_setup, tmp_path, "lookahead.py")
    assert rec.status == "rejected" and "looks ahead" in rec.reason
    assert rec.val_bpb is None  # never ranked


def test_a_record_written_by_the_variant_is_not_believed(smoke_setup, tmp_path):
    rec = run(smoke_setup, tmp_path, "fake_record.py")
    assert rec.status == "rejected" and "not written by the harness" in rec.reason
    assert rec.val_bpb is None


def test_children_of_the_variant_die_with_it(smoke_setup, tmp_path):
    rec = run(smoke_setup, tmp_path, "spawns_children.py")
    assert rec.status == "crash"
    pid = int((tmp_path / "trial" / "child.pid").read_text())
    time.sleep(0.2)
    assert not alive(pid)


def test_preset_constant_missing_in_variant_is_named(smoke_setup, tmp_path):
    rec = run(smoke_setup, tmp_path, "ok.py", constants={"DEPTH": 3})
    assert rec.status == "crash" and "DEPTH" in rec.reason


def test_trial_dies_when_its_parent_is_killed(smoke_setup, tmp_path):
    """A SIGKILLed search must not leave its trial training: the trial notices and kills itself."""
    import json
    import signal
    import subprocess
    import sys

    conf, prepared = smoke_setup
    t = dict(conf["trial"], budget_seconds=60.0, startup_seconds=20, constants={})
    spec = {"variant_dir": str(make_variant(tmp_path / "variant", "ok.py")), "data": prepared.spec(),
            "trial": t, "editable": conf["editable"]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    script = (
        "import json, sys, pathlib; from search.runner import run_trial_process;"
        f"spec = json.loads(pathlib.Path({str(tmp_path / 'spec.json')!r}).read_text());"
        f"run_trial_process(spec, pathlib.Path({str(tmp_path / 'trial')!r}), on_start=lambda p: print(p.pid, flush=True))"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child_pid = int(parent.stdout.readline())
    time.sleep(1.0)
    assert alive(child_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and alive(child_pid):
        time.sleep(0.2)
    assert not alive(child_pid)


def test_far_behind_the_reference_curve_is_stopped_early(smoke_setup, tmp_path):
    rec = run(smoke_setup, tmp_path, "ok.py", budget_seconds=3.0, stop_curve=[[0.0, 0.5], [1.0, 0.5]])
    assert rec.status == "stopped" and "early-stop limit" in rec.reason
    assert rec.saved_seconds > 0.5 and rec.training_seconds < 3.0 and rec.loss_curve
