"""The run's store: one facade over its study and its lineage, and the owner of their locks.

The producer, the workers, the heartbeat threads and the ablation all read and write the run's
record through one `RunStore`: every call to the study holds the study lock, every call to the
lineage the lineage lock, so threads of one process never share an Optuna or GitPython object
unguarded. The store also keeps the files derived from the record (results.tsv) and the tags in
step with the study. The variants, the front, the best and the noise floor are computed by the same
pure functions the reports use (`search.record.data`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

from eval.files import write_atomic
from search.lineage.repo import Lineage
from search.operators.base import Parent
from search.record.attrs import CandidateAttrs, commit_message, next_variant_name, variant_number
from search.record.data import aggregate_variants, best_variant, front_names, live_trials, seed_noise
from search.record.format import format_number
from search.record.summary import results_tsv
from search.run.failpoints import failpoint
from search.run.scheduler import Scheduler, TakenTrial
from search.selection.population import NoiseFloor

TAG_FIGURES = ("val_bpb", "test_bpb", "peak_mem_mb", "training_seconds")  # a variant's figures in its tag


class RunStore:
    """The study and the lineage of one run, behind their locks.

    Args:
        scheduler: the run's study, open.
        lineage: the run's lineage, open.
        run_dir: outputs/<run.name>/ (results.tsv goes there).
        editable: the files a variant may change.
        population: the population size, or None for the single lineage (which variant is best).
        noise_k: standard deviations of the seed's repeats that make the noise floor.
    """

    def __init__(self, scheduler: Scheduler, lineage: Lineage, run_dir: Path, editable: list[str],
                 population: int | None, noise_k: float):
        self.scheduler = scheduler
        self.lineage = lineage
        self.run_dir = Path(run_dir)
        self.editable = list(editable)
        self.population = population
        self.noise_k = noise_k
        self.study_lock = threading.RLock()
        self.lineage_lock = threading.RLock()

    @property
    def name(self) -> str:
        return self.scheduler.study_name

    # --- reading the record

    def trials(self) -> list[dict[str, Any]]:
        with self.study_lock:
            return self.scheduler.trials()

    def live_trials(self) -> list[dict[str, Any]]:
        """Every trial but the attempts that were re-queued."""
        return live_trials(self.trials())

    def waiting(self) -> list[dict[str, Any]]:
        with self.study_lock:
            return self.scheduler.waiting()

    def running(self) -> list[dict[str, Any]]:
        with self.study_lock:
            return self.scheduler.running()

    def run_attrs(self) -> dict[str, Any]:
        with self.study_lock:
            return self.scheduler.run_attrs()

    def set_run_attr(self, key: str, value: Any) -> None:
        with self.study_lock:
            self.scheduler.set_run_attr(key, value)

    def variants(self) -> dict[str, dict[str, Any]]:
        """Evaluated and queued variants by name (the seed's repeats averaged)."""
        return aggregate_variants(self.trials())

    def noise(self, variants: dict[str, dict[str, Any]]) -> NoiseFloor | None:
        return seed_noise(variants, self.noise_k)

    def best(self, variants: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
        """Single lineage: the best kept variant. Population: the lowest val_bpb."""
        return best_variant(variants, self.population)

    def front(self, variants: dict[str, dict[str, Any]]) -> list[str]:
        return front_names(variants)

    def known_hashes(self) -> dict[str, str]:
        """Content hash -> the variant holding it (or "a refused candidate"), re-queued attempts left out."""
        return {t["content_hash"]: t.get("variant") or "a refused candidate" for t in self.live_trials()
                if t.get("content_hash")}

    def read_files(self, commit: str, fetch: bool = False) -> dict[str, str]:
        """The editable files at `commit`; `fetch`: get the commit from the shared remote first."""
        with self.lineage_lock:
            if fetch:
                self.lineage.refs.fetch([commit])  # nothing without a remote
            return self.lineage.read_files(commit)

    def parent(self, variants: dict[str, dict[str, Any]], name: str) -> Parent:
        """A variant as an operator's parent: its files, figures and its lineage from the seed."""
        v = variants[name]
        files = self.read_files(v["commit"])
        history, cursor = [], v
        while cursor and cursor["parents"]:
            history.append(f"{cursor['name']}: {cursor['description']} (val_bpb {format_number(cursor.get('val_bpb'), 6)})")
            cursor = variants.get(cursor["parents"][0])
        return Parent(name, v["commit"], files, v["description"], v.get("val_bpb"), v.get("peak_mem_mb"),
                      v["status"] or "queued", list(reversed(history)))

    # --- writing the record

    def enqueue(self, candidate: CandidateAttrs) -> None:
        with self.study_lock:
            self.scheduler.enqueue(candidate.attrs())

    def record_refused(self, candidate: CandidateAttrs, reason: str) -> None:
        with self.study_lock:
            self.scheduler.record_refused(candidate.attrs(), reason)

    def commit_and_enqueue(self, candidate: CandidateAttrs, files: dict[str, str]) -> CandidateAttrs:
        """Name the candidate, commit its files with its parents and enqueue it; returns it named."""
        with self.study_lock:
            candidate.variant = next_variant_name([t["variant"] for t in self.trials() if t.get("variant")])
        message = commit_message(candidate.variant, candidate.description, candidate.operator, candidate.parent_names)
        with self.lineage_lock:
            candidate.commit = self.lineage.commit_variant(files, candidate.parents, message)
            failpoint("committed")
            self.lineage.refs.mark_candidate(candidate.commit, variant_number(candidate.variant))
        self.enqueue(candidate)
        return candidate

    def take(self, worker: str, accept: Callable[[dict[str, Any]], bool] | None = None) -> TakenTrial | None:
        with self.study_lock:
            return self.scheduler.take(worker, accept)

    def heartbeat(self, taken: TakenTrial) -> bool:
        with self.study_lock:
            return self.scheduler.heartbeat(taken)

    def finish(self, taken: TakenTrial, status: str, values: tuple[float, float] | None, extra: dict[str, Any]) -> None:
        with self.study_lock:
            failpoint("finishing")
            self.scheduler.finish(taken, status, values, extra)
            failpoint("finished")

    def requeue(self, is_stale: Callable[[dict[str, Any]], bool]) -> list[int]:
        with self.study_lock:
            return self.scheduler.requeue_stale(is_stale)

    def requeue_number(self, number: int) -> list[int]:
        """Queue trial `number` again (its worker was interrupted)."""
        return self.requeue(lambda row: row["number"] == number)

    def resume_taken(self, number: int) -> TakenTrial:
        with self.study_lock:
            return self.scheduler.resume_taken(number)

    def record_noise(self, variants: dict[str, dict[str, Any]]) -> None:
        """The seed's noise floor as a run attribute (reports and workers elsewhere read it)."""
        noise = self.noise(variants)
        if noise:
            self.set_run_attr("noise", {"mean": noise.mean, "std": noise.std, "n": noise.n, "floor": noise.floor})

    def tag(self, name: str, info: dict[str, Any]) -> None:
        """Tag the variant's commit with its figures (and push the tag to the shared remote)."""
        figures = {k: info.get(k) for k in TAG_FIGURES}
        figures.update(status=info["status"], operator=info["operator"], description=info["description"],
                       parents=info["parents"], runs=len(info["runs"]))
        with self.lineage_lock:
            self.lineage.refs.tag(info["commit"], variant_number(name), figures)
            self.lineage.refs.push([self.lineage.refs.tag_ref(variant_number(name))])  # nothing without a remote

    def repair_tags(self) -> None:
        """After a crash: every finished trial's variant gets its tag (figures) if it lacks one."""
        with self.lineage_lock:
            tags = self.lineage.refs.tags()
        for name, info in self.variants().items():
            if info["status"] is not None and variant_number(name) not in tags:
                self.tag(name, info)

    def write_results(self) -> None:
        """Rewrite results.tsv from the study (through `results.tsv.tmp`: a crash leaves the old or the new)."""
        write_atomic(self.run_dir / "results.tsv", results_tsv(self.trials()),
                     before_replace=lambda: failpoint("results-written"))

    def write_results_if_possible(self, say: Callable[[str], None]) -> None:
        try:
            self.write_results()
        except OSError as exc:
            say(f"[search] could not write {self.run_dir / 'results.tsv'}: {exc}")

    def trained(self) -> list[dict[str, Any]]:
        """The trials that trained (not counting re-queued attempts)."""
        return [t for t in self.live_trials() if t.get("trained")]

    def close(self) -> None:
        self.lineage.close()
