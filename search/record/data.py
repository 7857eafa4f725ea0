"""What reports, exports and the loop know about a run, computed from its trials (pure).

Everything here takes the flat trial dicts of `Scheduler.trials()` (user attributes merged in) and
returns values: the variants with their seed repeats averaged, the noise floor, the Pareto front,
the best variant, a variant named by a `pick`, the path from the seed to a variant, the points of
the progress plot, a layered layout of the lineage tree, and the tables of a report. The loop
uses the same functions for its decisions, so a report shows what the run saw.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from search.record.format import MISSING, format_cell, format_number, format_signed, one_line
from search.selection.pareto import pareto_front
from search.selection.population import NoiseFloor, noise_floor
from eval.record import Status
from search.config import UserError

SEED = "v0000"
FIGURES = ("val_bpb", "test_bpb", "uniform_bpb", "peak_mem_mb", "training_seconds", "total_seconds", "num_steps",
           "num_params_M", "tokens_M", "tokens_per_second", "mfu_percent")
VARIANT_NAME = re.compile(r"v\d{4,}")


# --------------------------------------------------------------------------- variants

def live_trials(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trials that count: every one but those superseded by a re-run (status `requeued`)."""
    return [t for t in trials if t.get("status") != Status.REQUEUED]


def aggregate_variants(trials: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Evaluated and queued variants by name, the seed's repeats averaged.

    Args:
        trials: rows of `Scheduler.trials()`.

    Returns:
        name -> {name, commit, parents (names), parent_commits, operator, description, generation,
        status (None while queued or running; `ok` if any run ended ok, else the last run's),
        runs (the finished trial rows), kept, reason, and the FIGURES averaged over ok runs}.
    """
    out: dict[str, dict[str, Any]] = {}
    for t in trials:
        name = t.get("variant")
        if not name or t.get("status") == Status.REQUEUED:
            continue
        v = out.setdefault(name, {"name": name, "commit": t["commit"], "parents": t.get("parent_names", []),
                                  "parent_commits": t.get("parents", []), "operator": t["operator"],
                                  "description": t["description"], "generation": t.get("generation", 0),
                                  "status": None, "runs": [], "kept": t.get("kept"), "reason": ""})
        if t.get("status"):
            v["runs"].append(t)
    for name, v in out.items():
        ok = [r for r in v["runs"] if r.get("status") == Status.OK]
        if ok:
            v["status"] = "ok"
            for key in FIGURES:
                vals = [r[key] for r in ok if r.get(key) is not None]
                v[key] = sum(vals) / len(vals) if vals else None
        elif v["runs"]:
            v["status"] = v["runs"][-1].get("status")
            v["reason"] = v["runs"][-1].get("reason", "")
        kept = [r.get("kept") for r in v["runs"] if r.get("kept") is not None]
        v["kept"] = kept[-1] if kept else (True if name == SEED and ok else None)
    return out


def seed_noise(variants: dict[str, dict[str, Any]], k: float) -> NoiseFloor | None:
    """The noise floor from the seed's ok repeats (None before any of them ended ok)."""
    seed = variants.get(SEED)
    if not seed:
        return None
    vals = [r["val_bpb"] for r in seed["runs"] if r.get("status") == Status.OK and r.get("val_bpb") is not None]
    return noise_floor(vals, k) if vals else None


def front_names(variants: dict[str, dict[str, Any]]) -> list[str]:
    """The names of the ok variants on the Pareto front of (val_bpb, peak_mem_mb)."""
    ok = [v for v in variants.values() if v["status"] == Status.OK]
    return [ok[i]["name"] for i in pareto_front([(v["val_bpb"], v["peak_mem_mb"]) for v in ok])]


def best_variant(variants: dict[str, dict[str, Any]], population: int | None) -> dict[str, Any] | None:
    """Single lineage: the best kept variant. Population: the lowest val_bpb. None if nothing is ok."""
    pool = [v for v in variants.values() if v["status"] == Status.OK and (population or v.get("kept"))]
    return min(pool, key=lambda v: v["val_bpb"]) if pool else None


class PickError(UserError):
    """A pick names no variant, or nothing satisfies it; the message says what exists."""


def pick_variant(variants: dict[str, dict[str, Any]], pick: str) -> str:
    """The name of the variant a `pick` chooses.

    Args:
        variants: as from `aggregate_variants`.
        pick: `best` (lowest val_bpb among ok variants), a variant name (`v0042`), or
            `pareto:<max_memory_mb>` (lowest val_bpb among ok variants with peak_mem_mb <= the limit).

    Raises:
        PickError: for an unknown variant, a malformed pick, or a pick nothing satisfies.
    """
    ok = sorted((v for v in variants.values() if v["status"] == Status.OK), key=lambda v: (v["val_bpb"], v["name"]))
    if pick == "best":
        if not ok:
            raise PickError("pick=best: no variant of this run has ended ok yet")
        return ok[0]["name"]
    if pick.startswith("pareto:"):
        try:
            limit = float(pick[len("pareto:"):])
        except ValueError:
            raise PickError(f"pick={pick}: the memory limit must be a number of MB, e.g. pareto:2048") from None
        fits = [v for v in ok if v.get("peak_mem_mb") is not None and v["peak_mem_mb"] <= limit]
        if not fits:
            least = min(ok, key=lambda v: v["peak_mem_mb"], default=None)
            smallest = f"the smallest is {least['name']} at {least['peak_mem_mb']:.1f} MB" if least else \
                "no variant has ended ok yet"
            raise PickError(f"pick={pick}: no ok variant has peak_mem_mb <= {limit:g} ({smallest})")
        return fits[0]["name"]
    if VARIANT_NAME.fullmatch(pick):
        if pick not in variants:
            known = sorted(variants)
            shown = ", ".join(known[:12]) + (f", ... ({len(known)} in all)" if len(known) > 12 else "")
            raise PickError(f"no variant {pick} in this run; its variants are {shown or 'none yet'}")
        return pick
    raise PickError(f"pick={pick} is not understood; use best, a variant name such as v0042, "
                    "or pareto:<max_memory_mb>")


# --------------------------------------------------------------------------- lineage

@dataclass
class PathStep:
    """One step on the way from the seed to a variant (the seed itself is the first step)."""

    name: str
    operator: str
    description: str
    commit: str
    parent: str | None  # the first parent's name (None for the seed)
    parent_commit: str | None
    other_parents: list[str]  # a crossover's or merge's second parent
    status: str | None
    val_bpb: float | None
    test_bpb: float | None
    peak_mem_mb: float | None
    delta_bpb: float | None  # against the first parent (None where either has no figure)
    delta_mem_mb: float | None


def path_from_seed(variants: dict[str, dict[str, Any]], name: str) -> list[PathStep]:
    """The first-parent chain from the seed to `name`, seed first.

    Raises:
        KeyError: if `name` or a variant on its way is not among `variants`.
    """
    chain, cursor, seen = [], variants[name], set()
    while True:
        if cursor["name"] in seen:
            raise ValueError(f"the lineage of {name} loops at {cursor['name']}")
        seen.add(cursor["name"])
        chain.append(cursor)
        if not cursor["parents"]:
            break
        cursor = variants[cursor["parents"][0]]
    steps = []
    for v in reversed(chain):
        parent = variants[v["parents"][0]] if v["parents"] else None
        steps.append(PathStep(
            name=v["name"], operator=v["operator"], description=v["description"], commit=v["commit"],
            parent=parent["name"] if parent else None, parent_commit=parent["commit"] if parent else None,
            other_parents=list(v["parents"][1:]), status=v["status"], val_bpb=v.get("val_bpb"),
            test_bpb=v.get("test_bpb"), peak_mem_mb=v.get("peak_mem_mb"),
            delta_bpb=_delta(v.get("val_bpb"), parent.get("val_bpb") if parent else None),
            delta_mem_mb=_delta(v.get("peak_mem_mb"), parent.get("peak_mem_mb") if parent else None)))
    return steps


def _delta(value: float | None, base: float | None) -> float | None:
    return value - base if value is not None and base is not None else None


@dataclass
class TreeNode:
    """A variant placed in the lineage tree: `layer` is its generation, `x` its place in the layer."""

    name: str
    layer: int
    x: float
    parents: list[str]


def tree_layout(variants: dict[str, dict[str, Any]]) -> dict[str, TreeNode]:
    """A layered layout of the lineage: one layer per generation, each layer centred on 0.

    Within a layer, variants sit in the order of their parents' mean position (the barycentre
    heuristic), which keeps most edges from crossing; ties go by name.
    """
    layers: dict[int, list[str]] = {}
    for v in variants.values():
        layers.setdefault(int(v.get("generation") or 0), []).append(v["name"])
    nodes: dict[str, TreeNode] = {}
    for layer in sorted(layers):
        def barycentre(n: str) -> tuple[float, str]:
            xs = [nodes[p].x for p in variants[n]["parents"] if p in nodes]
            return (sum(xs) / len(xs) if xs else 0.0, n)

        names = sorted(layers[layer], key=barycentre)
        for i, n in enumerate(names):
            nodes[n] = TreeNode(n, layer, i - (len(names) - 1) / 2, [p for p in variants[n]["parents"] if p in variants])
    return nodes


# --------------------------------------------------------------------------- progress

@dataclass
class ProgressPoint:
    """One trained trial on the progress plot."""

    number: int
    variant: str
    operator: str
    description: str
    status: str
    val_bpb: float | None  # None for a trial that did not end ok
    elapsed_seconds: float | None  # from the run's start to the trial's end
    highlighted: bool  # kept (single lineage) or on the final front (population)
    improvement: bool  # it lowered the running best
    best_so_far: float | None  # the running best after this trial


def progress_points(trials: list[dict[str, Any]], variants: dict[str, dict[str, Any]], population: int | None,
                    started_at: float | None) -> list[ProgressPoint]:
    """The trained trials in trial order, with the running best and the improvements marked.

    The running best counts every ok trial in population mode, and only kept ones (the seed
    included) in the single-lineage mode, as the loop does; only a variant's first ok run counts
    (the seed's repeats measure noise, they improve nothing).
    """
    front = set(front_names(variants))
    points, best, counted = [], None, set()
    for t in sorted(live_trials(trials), key=lambda t: t["number"]):
        if not t.get("trained") or not t.get("variant") or not t.get("status"):
            continue
        name = t["variant"]
        ok = t["status"] == Status.OK and t.get("val_bpb") is not None
        kept = bool(t.get("kept")) or (name == SEED and ok)
        counts = ok and (population or kept) and name not in counted  # a repeat of the same code is noise
        if counts:
            counted.add(name)
        improvement = bool(counts and (best is None or t["val_bpb"] < best))
        if improvement:
            best = t["val_bpb"]
        highlighted = (name in front) if population else kept
        finished = t.get("finished_at")
        elapsed = finished - started_at if finished is not None and started_at is not None else None
        points.append(ProgressPoint(t["number"], name, t.get("operator", ""), t.get("description", ""), t["status"],
                                    t["val_bpb"] if ok else None, elapsed, highlighted, improvement, best))
    return points


# --------------------------------------------------------------------------- tables

@dataclass
class OperatorStats:
    """How one operator fared: candidates proposed, refused before training, trained, ok."""

    operator: str
    proposed: int
    refused: int
    trained: int
    ok: int
    on_front: int

    @property
    def success_rate(self) -> float | None:
        """Share of proposed candidates that trained and ended ok."""
        return self.ok / self.proposed if self.proposed else None


def operator_stats(trials: list[dict[str, Any]], variants: dict[str, dict[str, Any]]) -> list[OperatorStats]:
    """Per operator (the seed's repeats count as one `seed` candidate each), by operator name."""
    front = set(front_names(variants))
    out: dict[str, OperatorStats] = {}
    for t in live_trials(trials):
        if not t.get("status"):
            continue
        op = t.get("operator") or "?"
        s = out.setdefault(op, OperatorStats(op, 0, 0, 0, 0, 0))
        s.proposed += 1
        if t.get("trained"):
            s.trained += 1
            s.ok += t["status"] == Status.OK
        else:
            s.refused += 1
    for name in front:
        op = variants[name]["operator"]
        if op in out:
            out[op].on_front += 1
    return [out[k] for k in sorted(out)]


def status_by_operator(trials: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """operator -> status -> number of finished trials (refusals are `rejected`)."""
    table: dict[str, Counter] = {}
    for t in live_trials(trials):
        if t.get("status"):
            table.setdefault(t.get("operator") or "?", Counter())[t["status"]] += 1
    return {op: dict(c) for op, c in sorted(table.items())}


@dataclass
class TimeUse:
    """Where the run's time went."""

    wall_seconds: float  # from the run's first start to its last finished trial (or now, if running)
    device_seconds: float  # trial processes, preflights included
    preflight_seconds: float
    saved_seconds: float  # budget left unused by trials stopped early
    trained: int

    @property
    def device_share(self) -> float | None:
        return self.device_seconds / self.wall_seconds if self.wall_seconds > 0 else None


def time_use(trials: list[dict[str, Any]], started_at: float | None, now: float | None = None) -> TimeUse:
    """Device time against wall time; `now` ends the wall clock of a run with trials running."""
    done = [t for t in live_trials(trials) if t.get("trained")]
    ends = [t["finished_at"] for t in live_trials(trials) if t.get("finished_at") is not None]
    running = any(t.get("state") == "RUNNING" for t in trials)
    end = now if (running and now is not None) else max(ends, default=started_at or 0.0)
    return TimeUse(
        wall_seconds=max(0.0, end - started_at) if started_at is not None else 0.0,
        device_seconds=sum(t.get("device_seconds") or 0.0 for t in done),
        preflight_seconds=sum(t.get("preflight_seconds") or 0.0 for t in done),
        saved_seconds=sum(t.get("saved_seconds") or 0.0 for t in done), trained=len(done))


TRIAL_COLUMNS = ("trial", "variant", "operator", "parents", "status", "val_bpb", "test_bpb", "peak_mem_mb",
                 "num_steps", "training_seconds", "description", "reason")
REASON_WIDTH = 300  # characters of a trial's reason in a table row (results.tsv and the report)


def trial_row(t: dict[str, Any]) -> dict[str, Any]:
    """The figures and texts of one trial for a table, unformatted: every column of results.tsv and the report.

    Texts are on one line, the reason cut to REASON_WIDTH; figures stay numbers (None where missing).
    """
    return {
        "trial": t.get("number"), "commit": t.get("commit") or "", "variant": t.get("variant") or "",
        "operator": t.get("operator") or "", "parents": ",".join(t.get("parent_names") or []),
        "status": t.get("status"), "kept": t.get("kept"), "val_bpb": t.get("val_bpb"), "test_bpb": t.get("test_bpb"),
        "peak_mem_mb": t.get("peak_mem_mb"), "num_steps": t.get("num_steps"),
        "training_seconds": t.get("training_seconds"), "total_seconds": t.get("total_seconds"),
        "description": one_line(t.get("description")), "reason": one_line(t.get("reason"), REASON_WIDTH)}


def trial_rows(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The report's trial table: TRIAL_COLUMNS of each finished trial (refusals included, superseded re-runs
    left out), by number."""
    finished = sorted((t for t in live_trials(trials) if t.get("status")), key=lambda t: t["number"])
    return [{c: row[c] for c in TRIAL_COLUMNS} for row in map(trial_row, finished)]


PATH_COLUMNS = ("variant", "operator", "parents", "val_bpb", "delta val_bpb", "test_bpb", "peak_mem_mb",
                "delta mem MB", "commit", "description")


def step_row(s: PathStep) -> dict[str, str]:
    """One step of a path from the seed as a table row (PATH_COLUMNS), figures as text."""
    return {"variant": s.name, "operator": s.operator,
            "parents": ", ".join(p for p in [s.parent, *s.other_parents] if p) or MISSING,
            "val_bpb": format_number(s.val_bpb, 6), "delta val_bpb": format_signed(s.delta_bpb),
            "test_bpb": format_number(s.test_bpb, 6), "peak_mem_mb": format_number(s.peak_mem_mb, 1),
            "delta mem MB": format_signed(s.delta_mem_mb, 1), "commit": s.commit[:12], "description": s.description}


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | tuple[str, ...], digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table of `rows` (pipes in cells escaped)."""
    def cell(value: Any) -> str:
        return format_cell(value, digits).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


@dataclass
class RunFacts:
    """The headline facts of a run, for the top of a report."""

    run: str
    population: int | None
    trials: int  # finished trials, refusals included
    trained: int
    variants: int
    best: dict[str, Any] | None
    front: list[dict[str, Any]] = field(default_factory=list)  # by val_bpb
    noise: NoiseFloor | None = None


def run_facts(run: str, trials: list[dict[str, Any]], population: int | None, noise_k: float) -> RunFacts:
    """Counts, the best variant, the front (by val_bpb) and the noise floor of a run."""
    variants = aggregate_variants(trials)
    finished = [t for t in live_trials(trials) if t.get("status")]
    front = sorted((variants[n] for n in front_names(variants)), key=lambda v: v["val_bpb"])
    return RunFacts(run=run, population=population, trials=len(finished),
                    trained=sum(1 for t in finished if t.get("trained")),
                    variants=sum(1 for v in variants.values() if v["status"] is not None),
                    best=best_variant(variants, population), front=front, noise=seed_noise(variants, noise_k))
