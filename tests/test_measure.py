import threading
import time

from eval.context import Watchdog
from eval.measure import TrainingClock


class FakeTime:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_clock_skips_warmup_steps_and_counts_the_rest():
    now = FakeTime()
    clock = TrainingClock(10.0, skip_steps=2, now=now)
    clock.boundary()          # before step 0
    now.t += 50               # step 0: compilation, not counted
    clock.boundary()
    now.t += 3                # step 1: warm-up, not counted
    clock.boundary()
    assert clock.training_seconds == 0 and clock.counting
    now.t += 4
    clock.boundary()
    assert clock.training_seconds == 4 and clock.progress == 0.4 and not clock.done
    now.t += 7
    clock.boundary()
    assert clock.done and clock.progress == 1.0 and clock.steps_done == 4


def test_watchdog_fires_on_overrun_only_past_tolerance():
    now = FakeTime()
    clock = TrainingClock(10.0, skip_steps=0, now=now)
    fired = []
    dog = Watchdog(clock, 10.0, 0.1, startup_seconds=5, now=now, interrupt=lambda: fired.append(1))
    clock.boundary()
    now.t += 10.5             # inside the step now running: over budget, within tolerance
    assert dog.check() is None
    now.t += 1.0              # 11.5 s: past both the tolerance (11 s) and the one-second grace
    reason = dog.check()
    assert reason and "past a budget" in reason


def test_watchdog_allows_two_of_the_longest_steps_past_the_budget():
    now = FakeTime()
    clock = TrainingClock(10.0, skip_steps=0, now=now)
    dog = Watchdog(clock, 10.0, 0.1, startup_seconds=5, now=now, interrupt=lambda: None)
    clock.boundary()
    for _ in range(3):        # three 3-second steps: 9 s on the clock
        now.t += 3.0
        clock.boundary()
    now.t += 6.5              # the fourth step runs long: 15.5 s live, within 10 + 2 x 3 s
    assert clock.longest_step == 3.0 and dog.check() is None
    now.t += 1.0
    assert "past a budget" in dog.check()


def test_watchdog_fires_when_clock_never_starts():
    now = FakeTime()
    clock = TrainingClock(10.0, skip_steps=1, now=now)
    dog = Watchdog(clock, 10.0, 0.1, startup_seconds=30, now=now, interrupt=lambda: None)
    now.t += 29
    assert dog.check() is None
    now.t += 2
    assert "ctx.steps()" in dog.check()


def _ctx(now, stop_curve):
    import numpy as np
    import torch

    from eval.context import TrialContext
    from eval.data.dataloader import TokenStore

    store = TokenStore.from_docs([list(range(50))], 60)
    clock = TrainingClock(10.0, skip_steps=0, now=now)
    return TrialContext(device=torch.device("cpu"), vocab_size=60, seq_len=8, bos_id=59, seed=0, train_store=store,
                        clock=clock, stop_curve=stop_curve, log=lambda m: None), clock, np


def test_early_stop_when_loss_stays_above_the_reference():
    import pytest

    from eval.context import TrialStopped

    now = FakeTime()
    ctx, clock, _ = _ctx(now, [[0.0, 5.0], [1.0, 2.0]])
    clock.boundary()
    for step in range(10):
        now.t += 1.0
        clock.boundary()
        if clock.progress < 0.2:
            ctx.record_loss(9.0)  # too early to judge: no stop
            continue
        with pytest.raises(TrialStopped, match="early-stop limit"):
            ctx.record_loss(9.0)
        break
    assert ctx.loss_curve()[-1][1] == 9.0


def test_no_early_stop_below_the_reference():
    now = FakeTime()
    ctx, clock, _ = _ctx(now, [[0.0, 5.0], [1.0, 2.0]])
    clock.boundary()
    for _ in range(10):
        now.t += 1.0
        clock.boundary()
        ctx.record_loss(1.5)
    assert len(ctx.loss_curve()) == 10


def test_a_watchdog_whose_interrupts_do_not_land_ends_the_process(capsys):
    """A main thread that never takes the KeyboardInterrupt is ended (escalate) after ESCALATE_SECONDS,
    and the reason is printed first, for the runner to report."""
    from eval.context import ESCALATE_SECONDS
    from eval.record import WATCHDOG_MARK

    now = FakeTime()
    clock = TrainingClock(10.0, skip_steps=0, now=now)
    clock.boundary()
    interrupts, ended = [], threading.Event()
    dog = Watchdog(clock, 10.0, 0.1, startup_seconds=5, now=now, interrupt=lambda: interrupts.append(now()),
                   escalate=ended.set, poll_seconds=0.01)
    dog.start()
    now.t += 12.5  # past the budget and its grace
    deadline = time.time() + 10
    while len(interrupts) < 2 and time.time() < deadline:
        time.sleep(0.01)
    assert not ended.is_set()  # interrupted, not yet ended
    now.t += ESCALATE_SECONDS + 1
    assert ended.wait(10)
    dog.stop()
    said = capsys.readouterr().out
    assert said.count(WATCHDOG_MARK) == 1 and "past a budget" in said


def test_the_runner_reports_the_watchdogs_reason_for_a_trial_it_had_to_end(tmp_path):
    from eval.record import WATCHDOG_MARK
    from search.run.runner import _read_record

    tail = ["step 00100 | loss 3.1\n", f"{WATCHDOG_MARK}the variant trained 3.0s past a budget of 1.0s (limit 2.0s)\n"]
    rec = _read_record(tmp_path / "record.json", "token", -15, False, 112.0, tail)
    assert rec.status == "timeout" and rec.reason.startswith("the variant trained 3.0s past a budget")
    assert "did not stop when interrupted" in rec.reason
    plain = _read_record(tmp_path / "record.json", "token", -15, False, 112.0, tail[:1])
    assert plain.status == "crash" and "signal 15" in plain.reason
