"""The plots of a run's report, drawn with matplotlib's Agg backend and written as PNG files.

Each function takes values computed by `search.record.data` and writes one PNG; none reads the
study or the lineage. Agg needs no display, so reports build on a headless machine.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.ticker import MaxNLocator  # noqa: E402

from search.record.data import ProgressPoint, TreeNode  # noqa: E402
from search.record.format import MISSING, format_number, one_line  # noqa: E402
from eval.record import Status

DPI = 110
KEPT = "#2a9d4b"  # kept / on the front
DISCARDED = "#9aa0a6"
FAILED = "#d1495b"
BEST = "#1f5fa8"
FRONT = "#f4a300"


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    return path


def _empty(path: Path, title: str, message: str) -> Path:
    fig, ax = plt.subplots(figsize=(8, 2.5))
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, color="#555555", transform=ax.transAxes)
    ax.set_axis_off()
    return _save(fig, path)


def _short(text: str, width: int) -> str:
    return one_line(text, width) or MISSING


def progress_plot(points: list[ProgressPoint], path: Path, *, x: str = "trial", highlight_label: str = "kept",
                  noise: tuple[float, float] | None = None, title: str = "Progress") -> Path:
    """Every trained trial a dot over trial number (x="trial") or wall time (x="time"), in the
    manner of autoresearch's progress plot: highlighted (kept, or on the front) and discarded trials
    apart, failed trials as crosses along the top, the running best as a step line, and every
    improvement labelled with its variant and description.

    Args:
        points: from `report_data.progress_points`.
        path: the PNG to write.
        x: "trial" or "time".
        highlight_label: the legend's name for highlighted trials ("kept" or "on the front").
        noise: (seed mean, noise floor) to shade as the band an improvement must leave.
        title: the plot's title.
    """
    if x not in ("trial", "time"):
        raise ValueError(f"x must be 'trial' or 'time', got {x!r}")
    pts = [p for p in points if x == "trial" or p.elapsed_seconds is not None]
    scored = [p for p in pts if p.val_bpb is not None]
    if not scored:
        return _empty(path, title, "no trial has ended ok yet")
    span = max((p.elapsed_seconds or 0.0) for p in pts)
    unit, scale = ("hours", 3600.0) if span > 3 * 3600 else ("minutes", 60.0) if span > 180 else ("seconds", 1.0)

    def xof(p: ProgressPoint) -> float:
        return float(p.number) if x == "trial" else (p.elapsed_seconds or 0.0) / scale

    fig, ax = plt.subplots(figsize=(11, 5.2))
    values = [p.val_bpb for p in scored]
    low, high = min(values), max(values)
    pad = max(0.02, 0.08 * (high - low))
    if noise is not None and noise[1] > 0:
        ax.axhspan(noise[0] - noise[1], noise[0] + noise[1], color=BEST, alpha=0.07, lw=0,
                   label=f"seed mean ± noise floor ({format_number(noise[1])})")
    grey = [p for p in scored if not p.highlighted]
    kept = [p for p in scored if p.highlighted]
    ax.scatter([xof(p) for p in grey], [p.val_bpb for p in grey], s=22, color=DISCARDED, alpha=0.7, zorder=2,
               label=f"discarded ({len(grey)})")
    ax.scatter([xof(p) for p in kept], [p.val_bpb for p in kept], s=46, color=KEPT, edgecolor="black", lw=0.6,
               zorder=4, label=f"{highlight_label} ({len(kept)})")
    failed = [p for p in pts if p.val_bpb is None]
    if failed:
        ax.scatter([xof(p) for p in failed], [high + pad * 0.6] * len(failed), marker="x", s=26, color=FAILED,
                   zorder=3, label=f"failed: crash, timeout, ... ({len(failed)})")
    steps = [p for p in scored if p.improvement]
    xs = [xof(p) for p in steps] + [max(xof(p) for p in pts)]
    ys = [p.val_bpb for p in steps] + [steps[-1].val_bpb]
    ax.step(xs, ys, where="post", color=BEST, lw=1.6, zorder=3, label="running best")
    for i, p in enumerate(steps):  # below the step line, where no point can be (it is the best so far)
        ax.annotate(f"{p.variant}: {_short(p.description, 44)}", (xof(p), p.val_bpb),
                    xytext=(5, -6 - 9 * (i % 2)), textcoords="offset points", fontsize=7.5, rotation=-8,
                    ha="left", va="top", color="#222222", zorder=5)
    ax.set_ylim(low - 2.5 * pad, high + pad * 1.3)
    ax.set_xlabel("trial number" if x == "trial" else f"wall time since the run started ({unit})")
    if x == "trial":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("val_bpb (lower is better)")
    ax.set_title(title)
    ax.grid(alpha=0.25)
    _legend_below(ax)
    return _save(fig, path)


def _legend_below(ax: Any) -> None:
    """The legend under the axes, where it can hide no point."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3, fontsize=8, frameon=False)


def pareto_plot(trial_points: list[tuple[float, float]], front: list[dict[str, Any]], path: Path,
                title: str = "val_bpb against peak memory") -> Path:
    """Every ok trial at (peak_mem_mb, val_bpb), the front's variants highlighted and joined by
    their staircase, and each front member's test_bpb drawn beside its val_bpb.

    Args:
        trial_points: (peak_mem_mb, val_bpb) of every ok trial.
        front: the front's variants (dicts with name, val_bpb, test_bpb, peak_mem_mb).
        path: the PNG to write.
    """
    if not trial_points:
        return _empty(path, title, "no trial has ended ok yet")
    fig, ax = plt.subplots(figsize=(11, 5.2))
    ax.scatter([m for m, _ in trial_points], [v for _, v in trial_points], s=22, color=DISCARDED, alpha=0.7,
               zorder=2, label=f"ok trials ({len(trial_points)})")
    members = sorted(front, key=lambda v: v["peak_mem_mb"])
    if members:
        xs, ys = [], []
        for v in members:  # the staircase: each member holds until the next, cheaper in val_bpb, begins
            xs.append(v["peak_mem_mb"])
            ys.append(v["val_bpb"])
        ax.step(xs, ys, where="post", color=FRONT, lw=1.4, zorder=3)
        ax.scatter(xs, ys, s=80, color=FRONT, edgecolor="black", lw=0.7, zorder=5,
                   label=f"Pareto front, val_bpb ({len(members)})")
        tested = [v for v in members if v.get("test_bpb") is not None]
        for v in tested:
            ax.plot([v["peak_mem_mb"]] * 2, [v["val_bpb"], v["test_bpb"]], color="#6b4c9a", lw=0.9, zorder=4)
        if tested:
            ax.scatter([v["peak_mem_mb"] for v in tested], [v["test_bpb"] for v in tested], s=60, facecolor="none",
                       edgecolor="#6b4c9a", lw=1.4, marker="D", zorder=5, label="the same variants' test_bpb")
        for i, v in enumerate(members):
            test = f" / test {format_number(v['test_bpb'])}" if v.get("test_bpb") is not None else ""
            ax.annotate(f"{v['name']}: val {format_number(v['val_bpb'])}{test}", (v["peak_mem_mb"], v["val_bpb"]),
                        xytext=(8, -14 - 10 * (i % 2)), textcoords="offset points", fontsize=8, zorder=6)
    ax.set_xlabel("peak memory (MB)")
    ax.set_ylabel("bits per byte (lower is better)")
    ax.set_title(title)
    ax.grid(alpha=0.25)
    ax.margins(x=0.12, y=0.15)
    _legend_below(ax)
    return _save(fig, path)


def lineage_plot(nodes: dict[str, TreeNode], variants: dict[str, dict[str, Any]], front: set[str], path: Path,
                 title: str = "Lineage") -> Path:
    """The family tree: one row per generation, a line from each parent down to its child (dashed from a
    crossover's or merge's second parent), each node showing variant, operator, val_bpb and the
    start of its description, coloured by how it ended (front members in amber).

    Args:
        nodes: from `report_data.tree_layout`.
        variants: from `report_data.aggregate_variants`.
        front: the names of the front's members.
        path: the PNG to write.
    """
    if not nodes:
        return _empty(path, title, "no variant yet")
    layers = sorted({n.layer for n in nodes.values()})
    widest = max(sum(1 for n in nodes.values() if n.layer == layer) for layer in layers)
    width = min(60.0, max(8.0, 2.3 * widest))
    height = min(60.0, max(3.0, 1.45 * len(layers) + 0.8))
    crowded = len(nodes) > 120
    fig, ax = plt.subplots(figsize=(width, height))
    for node in nodes.values():
        for k, parent in enumerate(node.parents):
            if parent not in nodes:
                continue
            p = nodes[parent]
            ax.plot([p.x, node.x], [-p.layer, -node.layer], color="#555555" if k == 0 else "#b5651d", lw=0.9,
                    linestyle="-" if k == 0 else "--", zorder=1)
    for node in nodes.values():
        v = variants[node.name]
        status = v["status"]
        colour = FRONT if node.name in front else ("#cfe8d5" if status == Status.OK else (
            "#e6e6e6" if status is None else "#f6c9cf"))
        measured = status == Status.OK and v.get("val_bpb") is not None
        figure = format_number(v["val_bpb"]) if measured else (status or "queued")
        if crowded:
            label = f"{node.name}\n{figure}"
        else:
            label = f"{node.name} · {v['operator']}\n{figure}\n{_short(v['description'], 30)}"
        ax.text(node.x, -node.layer, label, ha="center", va="center", fontsize=7 if not crowded else 5, zorder=3,
                bbox=dict(boxstyle="round,pad=0.35", fc=colour, ec="#333333", lw=0.6))
    xs = [n.x for n in nodes.values()]
    ax.set_xlim(min(xs) - 0.7, max(xs) + 0.7)
    ax.set_ylim(-max(layers) - 0.6, 0.6)
    for layer in layers:
        ax.text(min(xs) - 0.65, -layer, f"gen {layer}", ha="left", va="center", fontsize=8, color="#777777")
    ax.set_title(f"{title}: {len(nodes)} variants over {len(layers)} generations "
                 "(amber: Pareto front, green: ok, red: failed, grey: waiting; dashed: second parent)", fontsize=10)
    ax.set_axis_off()
    return _save(fig, path)


def ablation_plot(rows: list[dict[str, Any]], floor: float | None, path: Path, title: str = "Ablation") -> Path:
    """Delta val_bpb per change, leave-one-out and add-one side by side, with the spread over repeats
    as error bars and the run's noise floor as a band around zero.

    Args:
        rows: one per change: {"change", "label" (short: its first changed line), "leave_one_out": (delta,
            std, note), "add_one": (...)}
            where delta is None when nothing was measured (the note says why: skipped, failed...).
        floor: the run's noise floor of val_bpb (None: not measured).
        path: the PNG to write.
    """
    if not rows:
        return _empty(path, title, "no change to take apart")
    kinds = (("leave_one_out", "leave-one-out: variant without it", BEST),
             ("add_one", "add-one: seed with it alone", FRONT))
    fig, ax = plt.subplots(figsize=(max(8.0, 1.3 * len(rows) + 3), 5.4))
    width = 0.38
    tops = [r[k][0] + (r[k][1] or 0.0) for r in rows for k, _, _ in kinds if r[k][0] is not None]
    bottoms = [r[k][0] - (r[k][1] or 0.0) for r in rows for k, _, _ in kinds if r[k][0] is not None]
    high, low = max(tops + [floor or 0.0, 0.0]), min(bottoms + [-(floor or 0.0), 0.0])
    pad = max(0.12 * (high - low), 1e-6)
    for j, (kind, label, colour) in enumerate(kinds):
        offset = (j - 0.5) * width
        labelled = False
        for i, row in enumerate(rows):
            delta, std, note = row[kind]
            if delta is None:
                ax.text(i + offset, 0, _short(note, 22), rotation=90, ha="center", va="bottom", fontsize=7,
                        color="#777777")
                continue
            ax.bar(i + offset, delta, width=width * 0.92, color=colour, edgecolor="black", lw=0.5, zorder=3,
                   yerr=std, capsize=4, error_kw={"lw": 1.0, "zorder": 4}, label=None if labelled else label)
            labelled = True
    if floor:
        ax.axhspan(-floor, floor, color="#888888", alpha=0.15, lw=0, zorder=1,
                   label=f"within the noise floor (±{format_number(floor)})")
    ax.axhline(0, color="black", lw=0.8, zorder=2)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r["change"] + "\n" + "\n".join(textwrap.wrap(r["label"].split("#", 1)[0], 18)[:2])
                        for r in rows], fontsize=7.5)
    ax.set_xlim(-0.7, len(rows) - 0.3)
    ax.set_ylim(low - pad, high + pad)
    ax.set_ylabel("Δ val_bpb = without − with\n(above zero: the change helps)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.25)
    _legend_below(ax)
    return _save(fig, path)
