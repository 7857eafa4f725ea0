"""The lineage report of a run: an HTML page, a Markdown summary and PNG plots.

    python -m search report lineage run.name=<name>

Writes `outputs/<name>/report/` (index.html with the plots embedded as data URIs, so it opens from
disk and needs no script; report.md; progress.png, progress_time.png, pareto.png, lineage.png)
from the run's study and lineage, read-only: it works on a finished, interrupted or running run.
"""

from __future__ import annotations

import base64
import html
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from search.report import plots
from search.record.data import (
    TRIAL_COLUMNS, live_trials, markdown_table, operator_stats, path_from_seed, progress_points,
    run_facts, status_by_operator, step_row, time_use, tree_layout, trial_rows,
)
from search.record.runs import RunState
from search.record.format import MISSING, format_cell, format_duration, format_number, format_signed
from eval.record import Status

DIFF_MAX_CHARS = 60_000  # a diff longer than this is cut in the report (the lineage has it whole)


@dataclass
class ReportFiles:
    """The files a report wrote."""

    html: Path
    markdown: Path
    images: list[Path]


@dataclass
class _Section:
    title: str
    html: str
    markdown: str


def write_lineage_report(state: RunState, out_dir: Path | None = None) -> ReportFiles:
    """Build the lineage report of a run into `out_dir` (default: <run dir>/report/).

    Raises:
        search.lineage.repo.LineageError: if the run's repository or a variant's commit is missing.
    """
    out_dir = Path(out_dir or state.run_dir / "report")
    out_dir.mkdir(parents=True, exist_ok=True)
    trials, variants = state.trials, state.variants
    noise_k = state.conf.search.noise_k
    facts = run_facts(state.name, trials, state.population, noise_k)
    front = {v["name"] for v in facts.front}
    started = state.attrs.get("started_at")
    points = progress_points(trials, variants, state.population, started)
    noise = (facts.noise.mean, facts.noise.floor) if facts.noise and facts.noise.n > 1 else None
    highlight = "on the final front" if state.population else "kept"

    images = [
        plots.progress_plot(points, out_dir / "progress.png", x="trial", highlight_label=highlight, noise=noise,
                            title=f"Progress of {state.name}: val_bpb by trial"),
        plots.progress_plot(points, out_dir / "progress_time.png", x="time", highlight_label=highlight, noise=noise,
                            title=f"Progress of {state.name}: val_bpb over wall time"),
        plots.pareto_plot([(t["peak_mem_mb"], t["val_bpb"]) for t in live_trials(trials)
                           if t.get("status") == Status.OK and t.get("val_bpb") is not None
                           and t.get("peak_mem_mb") is not None],
                          facts.front, out_dir / "pareto.png", title=f"{state.name}: val_bpb against peak memory"),
        plots.lineage_plot(tree_layout(variants), variants, front, out_dir / "lineage.png",
                           title=f"Lineage of {state.name}"),
    ]
    with state.lineage() as lineage:
        paths = _paths_section(state, facts.front, variants, lineage)
    sections = [
        _summary_section(state, facts),
        _image_section("Progress", images[0], images[1], text=(
            "Every trained trial is a dot; " + ("green dots are on the final Pareto front" if state.population
                                                 else "green dots were kept") +
            ", grey ones were not, crosses along the top failed. The blue step line is the running best; "
            "each improvement is labelled with its variant and description. Candidates refused before training "
            "are not dots; the tables count them.")),
        _pareto_section(images[2], facts.front),
        _image_section("Lineage tree", images[3], text=(
            "One row per generation, the seed at the top; a line runs from each parent down to its child, dashed "
            "from the second parent of a crossover or merge.")),
        paths,
        _tables_section(state, variants),
    ]
    html_path, md_path = out_dir / "index.html", out_dir / "report.md"
    html_path.write_text(_page(state, sections))
    md_path.write_text(f"# Lineage report: {state.name}\n\n" + "\n\n".join(
        f"## {s.title}\n\n{s.markdown}" for s in sections) + "\n")
    return ReportFiles(html=html_path, markdown=md_path, images=images)


# --------------------------------------------------------------------------- sections

def _summary_section(state: RunState, facts) -> _Section:
    mode = f"population {facts.population}" if facts.population else "single lineage"
    status = "running" if state.running else "not running (finished or interrupted)"
    items = [
        ("run", f"{state.name} ({mode}), {status}; read {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(state.read_at))}"),
        ("trials", f"{facts.trials} finished ({facts.trained} trained, {facts.trials - facts.trained} refused "
                   f"before training), {facts.variants} variants evaluated"),
        ("study", state.storage_url),
        ("lineage", f"tags search/{state.name}/v* in {state.repo}"),
    ]
    if facts.best:
        b = facts.best
        items.insert(1, ("best", f"{b['name']}: val_bpb {format_number(b.get('val_bpb'), 6)} "
                                 f"(test {format_number(b.get('test_bpb'), 6)}), "
                                 f"peak memory {format_number(b.get('peak_mem_mb'), 1)} MB: {b['description']}"))
    else:
        items.insert(1, ("best", "none yet: no trial has ended ok"))
    if facts.noise:
        n = facts.noise
        items.append(("noise floor", f"{format_number(n.floor, 4)} (seed val_bpb mean {format_number(n.mean, 6)}, "
                                     f"std {format_number(n.std, 4)} over {n.n} runs; an improvement smaller than "
                                     "the floor is not called one)"))
    else:
        items.append(("noise floor", "not measured yet (no seed repeat has ended ok)"))
    body = "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items) + "</dl>"
    md = "\n".join(f"- **{k}**: {v}" for k, v in items)
    return _Section("Summary", body, md)


def _img_tag(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def _image_section(title: str, *images: Path, text: str = "") -> _Section:
    body = f"<p>{html.escape(text)}</p>" + "".join(f"<figure>{_img_tag(p)}<figcaption>{p.name}</figcaption></figure>"
                                                   for p in images)
    md = text + "\n\n" + "\n\n".join(f"![{p.stem}]({p.name})" for p in images)
    return _Section(title, body, md)


def _pareto_section(image: Path, front: list[dict[str, Any]]) -> _Section:
    rows = [{"variant": v["name"], "operator": v["operator"], "val_bpb": format_number(v.get("val_bpb"), 6),
             "test_bpb": format_number(v.get("test_bpb"), 6),
             "test - val": format_signed(v["test_bpb"] - v["val_bpb"]) if v.get("test_bpb") is not None else MISSING,
             "peak_mem_mb": format_number(v.get("peak_mem_mb"), 1), "runs": len(v["runs"]),
             "description": v["description"]}
            for v in front]
    columns = ["variant", "operator", "val_bpb", "test_bpb", "test - val", "peak_mem_mb", "runs", "description"]
    text = ("Every ok trial at its peak memory and val_bpb; the front (no variant is better in both) is amber, "
            "and each front member's held-out test_bpb is the hollow diamond beside it: a gap that grows along "
            "the front is selection overfitting val.")
    table = _html_table(rows, columns, "front")
    return _Section("Pareto front", f"<p>{html.escape(text)}</p><figure>{_img_tag(image)}<figcaption>{image.name}"
                    f"</figcaption></figure>{table}",
                    f"{text}\n\n![{image.stem}]({image.name})\n\n" + markdown_table(rows, columns))


def _paths_section(state: RunState, front: list[dict[str, Any]], variants: dict[str, dict[str, Any]],
                   lineage) -> _Section:
    if not front:
        return _Section("Paths from the seed", "<p>No front yet.</p>", "No front yet.")
    diffs: dict[tuple[str, str], str] = {}
    body, md = [], []
    for member in front:
        steps = path_from_seed(variants, member["name"])
        body.append(f'<h3 id="path-{member["name"]}">{member["name"]}: {len(steps) - 1} step(s) from the seed</h3>')
        md.append(f"### {member['name']}: {len(steps) - 1} step(s) from the seed")
        rows = [step_row(s) for s in steps]
        columns = ["variant", "operator", "description", "val_bpb", "delta val_bpb", "peak_mem_mb", "delta mem MB"]
        body.append(_html_table(rows, columns, "path"))
        md.append(markdown_table(rows, columns))
        for s in steps[1:]:
            key = (s.parent_commit, s.commit)
            if key not in diffs:
                diffs[key] = lineage.diff(s.parent_commit, s.commit)
            diff = diffs[key]
            if len(diff) > DIFF_MAX_CHARS:
                diff = diff[:DIFF_MAX_CHARS] + f"\n... (cut; `git diff {s.parent_commit[:12]} {s.commit[:12]}` has it all)\n"
            extra = f" (second parent {', '.join(s.other_parents)})" if s.other_parents else ""
            head = f"{s.name} from {s.parent}{extra}: {s.description}"
            body.append(f"<p class=\"step\">{html.escape(head)}</p>{_diff_html(diff)}")
            md.append(f"{head}\n\n```diff\n{diff or '(no change)'}\n```")
    text = ("For each front member, the first-parent chain from the seed: each step's change in val_bpb and "
            "memory against its parent, and its diff.")
    return _Section("Paths from the seed", f"<p>{html.escape(text)}</p>" + "\n".join(body),
                    text + "\n\n" + "\n\n".join(md))


def _diff_html(diff: str) -> str:
    """A unified diff in a <pre> block, escaped, its added and removed lines coloured by CSS."""
    if not diff:
        return "<pre>(no change)</pre>"
    lines = []
    for line in diff.splitlines():
        css = "add" if line.startswith("+") and not line.startswith("+++") else \
            "del" if line.startswith("-") and not line.startswith("---") else "hunk" if line.startswith("@@") else ""
        text = html.escape(line)
        lines.append(f'<span class="{css}">{text}</span>' if css else text)
    return "<pre>" + "\n".join(lines) + "</pre>"


def _tables_section(state: RunState, variants: dict[str, dict[str, Any]]) -> _Section:
    trials = state.trials
    parts_html, parts_md = [], []

    counts = status_by_operator(trials)
    statuses = sorted({s for row in counts.values() for s in row})
    count_rows = [{"operator": op, **{s: row.get(s, 0) for s in statuses}, "all": sum(row.values())}
                  for op, row in counts.items()]
    if count_rows:
        count_rows.append({"operator": "all", **{s: sum(r[s] for r in count_rows) for s in statuses},
                           "all": sum(r["all"] for r in count_rows)})
    cols = ["operator", *statuses, "all"]
    parts_html.append("<h3>Trials by operator and status</h3>" + _html_table(count_rows, cols, "counts"))
    parts_md.append("### Trials by operator and status\n\n" + markdown_table(count_rows, cols))

    stats = operator_stats(trials, variants)
    op_rows = [{"operator": s.operator, "proposed": s.proposed, "refused": s.refused, "trained": s.trained,
                "ok": s.ok, "success rate": f"{100 * s.success_rate:.0f}%" if s.success_rate is not None else MISSING,
                "on front": s.on_front} for s in stats]
    cols = ["operator", "proposed", "refused", "trained", "ok", "success rate", "on front"]
    note = "Success rate: the share of an operator's candidates that trained and ended ok."
    parts_html.append(f"<h3>Operators</h3><p>{html.escape(note)}</p>" + _html_table(op_rows, cols, "operators"))
    parts_md.append(f"### Operators\n\n{note}\n\n" + markdown_table(op_rows, cols))

    use = time_use(trials, state.attrs.get("started_at"), now=state.read_at)
    share = f"{100 * use.device_share:.0f}%" if use.device_share is not None else MISSING
    llm = state.attrs.get("llm_usage") or {}
    noise = state.attrs.get("noise") or {}
    facts = [
        ("wall time", format_duration(use.wall_seconds) + (" (still running)" if state.running else "")),
        ("device time", f"{format_duration(use.device_seconds)} ({share} of wall time) over {use.trained} trained "
                        f"trials; preflights {format_duration(use.preflight_seconds)}, saved by early stops "
                        f"{format_duration(use.saved_seconds)}"),
        ("LLM calls", f"{llm.get('calls', 0)} ({llm.get('failures', 0)} failed), {llm.get('seconds', 0.0):.0f}s waiting"
         if llm else "none (no LLM configured)"),
        ("LLM tokens", f"{llm.get('prompt_tokens', 0)} prompt + {llm.get('completion_tokens', 0)} completion"
         if llm else MISSING),
        ("LLM cost", f"${llm.get('cost', 0.0):.4f}" if llm else MISSING),
        ("noise floor", f"{format_number(noise.get('floor'))} = max({state.conf.search.noise_k:g} x std "
                        f"{format_number(noise.get('std'))}, minimum) over {noise.get('n')} seed runs, mean "
                        f"{format_number(noise.get('mean'), 6)}" if noise else "not measured yet"),
    ]
    parts_html.append("<h3>Time, LLM and noise</h3><dl>" + "".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts) + "</dl>")
    parts_md.append("### Time, LLM and noise\n\n" + "\n".join(f"- **{k}**: {v}" for k, v in facts))

    rows = trial_rows(trials)
    parts_html.append("<h3>All trials</h3>" + _trials_html(rows))
    parts_md.append("### All trials\n\n" + markdown_table(rows, TRIAL_COLUMNS))
    return _Section("Tables", "\n".join(parts_html), "\n\n".join(parts_md))


def _trials_html(rows: list[dict[str, Any]]) -> str:
    """All trials as a pandas table (escaped)."""
    frame = pd.DataFrame(rows, columns=list(TRIAL_COLUMNS))
    if frame.empty:
        return "<p>No finished trial yet.</p>"
    formats = {c: (lambda x: format_cell(x, 6)) for c in ("val_bpb", "test_bpb")}
    formats.update({c: (lambda x: format_cell(x, 1)) for c in ("peak_mem_mb", "training_seconds")})
    formats["num_steps"] = lambda x: MISSING if x is None or pd.isna(x) else str(int(x))
    return frame.to_html(index=False, escape=True, na_rep=MISSING, formatters=formats, classes="trials", border=0)


def _html_table(rows: list[dict[str, Any]], columns: list[str], css: str) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(format_cell(r.get(c)))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
h3 { margin-top: 1.5em; } nav a { margin-right: 1em; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.8em; color: #777; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.25em 1em; } dt { font-weight: 600; } dd { margin: 0; }
table { border-collapse: collapse; font-size: 0.82em; margin: 0.8em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f4f4f6; } tbody tr:nth-child(even) { background: #fafafa; }
table.trials td:last-child, table.trials td:nth-last-child(2) { max-width: 28em; }
pre { background: #f6f8fa; border: 1px solid #e1e4e8; padding: 0.6em; overflow: auto; max-height: 30em;
      font-size: 0.78em; }
p.step { font-weight: 600; margin-bottom: 0.2em; }
pre span.add { color: #116329; background: #e6ffec; } pre span.del { color: #82071e; background: #ffebe9; }
pre span.hunk { color: #0550ae; }
"""


def _page(state: RunState, sections: list[_Section]) -> str:
    def anchor(title: str) -> str:
        return title.lower().replace(" ", "-")

    nav = "".join(f'<a href="#{anchor(s.title)}">{html.escape(s.title)}</a>' for s in sections)
    body = "\n".join(f'<section id="{anchor(s.title)}"><h2>{html.escape(s.title)}</h2>\n{s.html}</section>'
                     for s in sections)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Lineage report: {html.escape(state.name)}</title><style>{STYLE}</style></head>\n"
            f"<body><h1>Lineage report: {html.escape(state.name)}</h1><nav>{nav}</nav>\n{body}\n</body></html>\n")
