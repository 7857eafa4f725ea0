"""The ablation report of a variant: Markdown, HTML (the plot embedded), the PNG and a JSON record.

    python -m search report ablation run.name=<name> [variant=v0042]

Writes outputs/<name>/report/ablation-<variant>.{md,html,png,json} from what `ablation.run_ablation`
measured: one row per change and kind with delta val_bpb (mean ± std over paired repeats), delta
memory, n, whether |delta| exceeds the run's noise floor, and each change's diff.
"""

from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from search.report import plots
from search.ablation.run import Ablation
from search.ablation.effects import Effect, verdict
from search.ablation.plan import ADD_ONE, LEAVE_ONE_OUT
from search.report.lineage import STYLE, _diff_html, _html_table, _img_tag
from search.record.data import markdown_table
from search.record.format import MISSING, format_number, format_signed
from search.record.runs import RunState

KIND_NAMES = {LEAVE_ONE_OUT: "leave-one-out", ADD_ONE: "add-one"}
COLUMNS = ("change", "kind", "delta val_bpb", "delta mem MB", "n", "beyond noise", "verdict", "candidate", "label",
           "note")
READING = ("delta = (without the change) - (with it), paired by trial seed, mean ± sample std over the repeats. "
           "Leave-one-out: the variant with the change reverted minus the variant. Add-one: the seed minus the seed "
           "with the change alone. A positive delta val_bpb means the change helps (lowers val_bpb); a positive "
           "delta mem MB that it saves memory. 'beyond noise': |delta val_bpb| exceeds the run's noise floor.")


@dataclass
class AblationFiles:
    """The files an ablation report wrote, and its table as printed."""

    markdown: Path
    html: Path
    image: Path
    record: Path
    table: str


def effect_rows(effects: list[Effect]) -> list[dict[str, Any]]:
    """The report's table: one row per change and kind, figures as text."""
    rows = []
    for e in effects:
        spread = f" ± {e.delta_bpb_std:.4f}" if e.delta_bpb_std is not None else ""
        rows.append({
            "change": e.change, "kind": KIND_NAMES[e.kind], "delta val_bpb": format_signed(e.delta_bpb) + spread,
            "delta mem MB": format_signed(e.delta_mem_mb, 1), "n": e.n,
            "beyond noise": MISSING if e.beyond_noise is None else ("yes" if e.beyond_noise else "no"),
            "verdict": verdict(e), "candidate": e.variant or MISSING, "label": e.label, "note": e.note or ""})
    return rows


def write_ablation_report(state: RunState, result: Ablation, out_dir: Path | None = None) -> AblationFiles:
    """Write the report of `result` into `out_dir` (default: <run dir>/report/)."""
    out_dir = Path(out_dir or state.run_dir / "report")
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"ablation-{result.target}"
    floor = (result.noise or {}).get("floor")
    by_change: dict[str, dict[str, Any]] = {}
    headlines = {c.id: c.headline for c in result.changes}
    for e in result.effects:
        row = by_change.setdefault(e.change, {"change": e.change, "label": headlines[e.change]})
        row[e.kind] = (e.delta_bpb, e.delta_bpb_std, e.note)
    image = plots.ablation_plot(list(by_change.values()), floor, stem.with_suffix(".png"),
                                title=f"Ablation of {result.target} ({state.name}): delta val_bpb per change")
    rows = effect_rows(result.effects)
    table = markdown_table(rows, COLUMNS)
    summary = _summary(state, result)
    md = [f"# Ablation report: {state.name} / {result.target}", "## Summary",
          "\n".join(f"- **{k}**: {v}" for k, v in summary), "## Effects", READING, f"![{image.stem}]({image.name})",
          table, "## Changes", *(_change_md(result, c) for c in result.changes)]
    md_path = stem.with_suffix(".md")
    md_path.write_text("\n\n".join(md) + "\n")
    body = [
        "<h2>Summary</h2><dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in summary)
        + "</dl>",
        f"<h2>Effects</h2><p>{html.escape(READING)}</p><figure>{_img_tag(image)}<figcaption>{image.name}"
        f"</figcaption></figure>" + _html_table(rows, list(COLUMNS), "effects"),
        "<h2>Changes</h2>" + "".join(_change_html(result, c) for c in result.changes),
    ]
    title = f"Ablation report: {state.name} / {result.target}"
    html_path = stem.with_suffix(".html")
    html_path.write_text(f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
                         f"</title><style>{STYLE}</style></head>\n<body><h1>{html.escape(title)}</h1>\n"
                         + "\n".join(f"<section>{b}</section>" for b in body) + "\n</body></html>\n")
    record = stem.with_suffix(".json")
    record.write_text(json.dumps({
        "run": state.name, "target": result.target, "repeats": result.repeats, "trial_seeds": result.trial_seeds,
        "noise": result.noise, "notes": result.notes,
        "changes": [{"id": c.id, "label": c.label, "kind": c.kind, "steps": list(c.steps), "diff": c.diff()}
                    for c in result.changes],
        "candidates": [{"change": c.change, "kind": c.kind, "variant": result.assignment.get((c.change, c.kind)),
                        "skipped": c.skipped} for c in result.candidates],
        "effects": [asdict(e) for e in result.effects]}, indent=2) + "\n")
    return AblationFiles(markdown=md_path, html=html_path, image=image, record=record, table=table)


def _summary(state: RunState, result: Ablation) -> list[tuple[str, str]]:
    t, s = result.target_info, result.seed_info
    noise = result.noise
    return [
        ("target", f"{result.target}: {t.get('description', '')} (val_bpb {format_number(t.get('val_bpb'), 6)} over "
                   f"{sum(1 for r in t.get('runs', []) if r.get('status') == 'ok')} ok runs)"),
        ("seed", f"v0000: val_bpb {format_number(s.get('val_bpb'), 6)} over "
                 f"{sum(1 for r in s.get('runs', []) if r.get('status') == 'ok')} ok runs"),
        ("changes", f"{len(result.changes)} ({', '.join(c.id for c in result.changes)})"),
        ("repeats", f"{result.repeats} per candidate, trial seeds {', '.join(map(str, result.trial_seeds))}"),
        ("noise floor", f"{format_number(noise.get('floor'))} (seed val_bpb std {format_number(noise.get('std'))} "
                        f"over {noise.get('n')} runs)" if noise else "not measured (no seed repeats ended ok)"),
        ("this call", f"queued {result.queued} trial(s), trained {result.trained}, new variants "
                      f"{', '.join(result.new_variants) or 'none'}"),
        ("notes", "; ".join(result.notes) or "none"),
        ("study", state.storage_url),
    ]


def _candidates_of(result: Ablation, change_id: str) -> list[str]:
    out = []
    for c in result.candidates:
        if c.change == change_id:
            where = result.assignment.get((c.change, c.kind)) or f"skipped: {c.skipped}"
            out.append(f"{KIND_NAMES[c.kind]}: {where}")
    return out


def _change_md(result: Ablation, change) -> str:
    return (f"### {change.id}: {change.label}\n\n{change.kind} of {', '.join(change.steps)}; "
            + "; ".join(_candidates_of(result, change.id)) + f"\n\n```diff\n{change.diff()}```")


def _change_html(result: Ablation, change) -> str:
    return (f"<h3>{html.escape(change.id)}: {html.escape(change.label)}</h3><p>{html.escape(change.kind)} of "
            f"{html.escape(', '.join(change.steps))}; {html.escape('; '.join(_candidates_of(result, change.id)))}</p>"
            + _diff_html(change.diff()))
