"""The trial executor: trains one taken trial and puts its result on the record.

For a taken trial: the variant's files from its commit into `trials/<n>-<variant>/variant/`, a
preflight of a few steps (new candidates only), the trial itself through the runner (injected, so
the decisions here are tested without processes), the record kept in the trial directory before
the study hears of it (`RESULT_FILE`: a crash from there on loses no training), then the keep
verdict (single lineage), the study, the tuner, the noise floor, the tag and results.tsv.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, TextIO

from eval.files import write_atomic
from eval.record import Status, TrialRecord
from search.config import Config
from search.record.data import FIGURES, SEED
from search.record.format import first_line
from search.run.display import LiveLine
from search.run.failpoints import failpoint
from search.run.producer import MEASURING_OPERATORS
from search.run.scheduler import SchedulerError, TakenTrial, Tuner
from search.run.store import RunStore
from search.selection.population import NoiseFloor, improves

RESULT_FILE = "result.json"  # a trained trial's record, in its trial directory until the study has it

# (spec, trial directory, environment) -> the trial's record: search.run.runner.run_trial_process
TrialRunner = Callable[..., TrialRecord]


def keep_verdict(record: TrialRecord, best: dict[str, Any] | None, noise: NoiseFloor | None) -> bool:
    """Single lineage: a trained child is kept only if it beats the best kept variant by more than
    the noise floor (the first measured child, with nothing kept yet, is kept when it trained)."""
    if record.status != Status.OK or record.val_bpb is None:
        return False
    return best is None or improves(record.val_bpb, best["val_bpb"], noise.floor if noise else 0.0)


class TrialExecutor:
    """Trains taken trials of one run.

    Args:
        conf: the run's configuration.
        store: the run's study and lineage.
        data_spec: the prepared data, as the trial spec carries it (`PreparedData.spec()`).
        run_trial: the runner (`search.run.runner.run_trial_process` or a test double).
        tuner: the tune operator's sampler, told how its suggestions scored.
        say: where progress lines go.
        live: a terminal to draw the training trial's live line on (None: plain lines only).
        run_eta: the run's remaining seconds, for the live line.
    """

    def __init__(self, conf: Config, store: RunStore, data_spec: dict[str, Any], run_trial: TrialRunner,
                 tuner: Tuner, say: Callable[[str], None], live: TextIO | None = None,
                 run_eta: Callable[[], float | None] = lambda: None):
        self.conf = conf
        self.live = live  # a terminal: a live line while a trial trains (search.run.display)
        self.run_eta = run_eta
        self.s = conf.search
        self.store = store
        self.data_spec = data_spec
        self.run_trial = run_trial
        self.tuner = tuner
        self.say = say
        self.on_finished: Callable[[], None] = lambda: None  # the progress line after each trial

    def trial_dir(self, number: int, variant: str) -> Path:
        return self.store.run_dir / "trials" / f"{number:04d}-{variant}"

    def train(self, taken: TakenTrial, env: dict[str, str] | None = None) -> TrialRecord:
        """Preflight (new candidates), train, keep the record, finish the trial on the record."""
        attrs = taken.attrs
        name = attrs["variant"]
        trial_dir = self.trial_dir(taken.number, name)
        variant_dir = trial_dir / "variant"
        files = self.store.read_files(attrs["commit"], fetch=True)
        failpoint("training")
        for rel, text in files.items():
            (variant_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (variant_dir / rel).write_text(text)
        trial = dict(asdict(self.conf.trial), seed=attrs.get("trial_seed", self.conf.trial.seed))
        measuring = attrs["operator"] in MEASURING_OPERATORS
        curve = None if measuring else self.stop_curve()
        if curve:
            trial["stop_curve"] = curve
        spec = {"variant_dir": str(variant_dir), "data": self.data_spec, "editable": self.store.editable}
        preflight_seconds = 0.0
        record = None
        if self.s.preflight and not measuring:
            seq = trial["seq_len"]
            pre = dict(trial, max_steps=self.s.preflight_steps, eval_tokens=seq, test_tokens=seq, clock_skip_steps=0)
            record = self.run_trial(dict(spec, trial=pre), trial_dir / "preflight", env=env)
            preflight_seconds = record.total_seconds or 0.0
            if record.status == Status.OK:
                record = None
            else:
                record.reason = f"preflight: {record.reason}"
        if record is None:
            self.say(f"[search] training {name} ({attrs['operator']}): {attrs['description']}")
            record = self._run_full(dict(spec, trial=trial), trial_dir / "trial", env, name)
        write_atomic(trial_dir / RESULT_FILE, json.dumps(
            {"record": json.loads(record.to_json()), "preflight_seconds": preflight_seconds}))
        self.finish(taken, record, preflight_seconds)
        return record

    def _run_full(self, spec: dict[str, Any], trial_dir: Path, env: dict[str, str] | None, name: str) -> TrialRecord:
        """The full trial; on a terminal with its live line."""
        if self.live is None:
            return self.run_trial(spec, trial_dir, env=env)
        eta, since = self.run_eta(), time.monotonic()
        line = LiveLine(self.live, name, spec["trial"]["budget_seconds"],
                        lambda: None if eta is None else max(0.0, eta - (time.monotonic() - since)))
        try:
            return self.run_trial(spec, trial_dir, env=env, echo=line)
        finally:
            line.close()

    def recover(self, row: dict[str, Any]) -> bool:
        """Report the result a dead worker of this machine left in its trial directory (it trained
        the variant, then died before the study heard): the variant is not trained twice."""
        path = self.trial_dir(row["number"], str(row.get("variant"))) / RESULT_FILE
        try:
            saved = json.loads(path.read_text())
            record = TrialRecord.from_json(json.dumps(saved["record"]))
            taken = self.store.resume_taken(row["number"])
        except (OSError, ValueError, KeyError, TypeError, SchedulerError):
            return False
        self.say(f"[search] recovered the result of {row['variant']} (trial {row['number']}), trained before "
                 "its worker died")
        self.finish(taken, record, float(saved.get("preflight_seconds") or 0.0))
        return True

    def stop_curve(self) -> list[list[float]] | None:
        """The early-stop limit: the best variant's loss curve raised by search.early_stop_margin."""
        margin = self.s.early_stop_margin
        if not margin:
            return None
        best = self.store.best(self.store.variants())
        runs = [r for r in (best or {}).get("runs", []) if r.get("loss_curve")]
        if not runs:
            return None
        return [[p, v * (1.0 + margin)] for p, v in runs[0]["loss_curve"]]

    def finish(self, taken: TakenTrial, record: TrialRecord, preflight_seconds: float) -> None:
        """The verdict, the study, the tuner, the noise floor, the tag and results.tsv, in that order."""
        attrs = taken.attrs
        extra: dict[str, Any] = {k: getattr(record, k) for k in FIGURES}
        extra.update(reason=record.reason, trained=True, preflight_seconds=preflight_seconds,
                     loss_curve=record.loss_curve, saved_seconds=record.saved_seconds,
                     device_seconds=(record.total_seconds or 0.0) + preflight_seconds, code_hash=record.code_hash,
                     device=record.device)
        with self.store.study_lock:
            if not self.conf.population and attrs["operator"] not in MEASURING_OPERATORS:
                variants = self.store.variants()
                extra["kept"] = keep_verdict(record, self.store.best(variants), self.store.noise(variants))
            values = (record.val_bpb, record.peak_mem_mb) if record.status == Status.OK else None
            self.store.finish(taken, record.status, values, extra)
            if "tune_trial" in attrs:
                self.tuner.report(attrs["tune_trial"], record.val_bpb if record.status == Status.OK else None)
            variants = self.store.variants()
            if attrs["variant"] == SEED:  # any run of the seed (an ablation adds repeats too)
                self.store.record_noise(variants)
        self.store.tag(attrs["variant"], variants[attrs["variant"]])
        failpoint("tagged")
        verdict = "" if "kept" not in extra else (" -> keep" if extra["kept"] else " -> discard")
        figure = f"val_bpb {record.val_bpb:.6f}" if record.val_bpb is not None else first_line(record.reason)
        self.say(f"[search] {attrs['variant']} {record.status}: {figure}{verdict}")
        self.store.write_results()
        self.on_finished()
