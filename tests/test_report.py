"""`python -m search report lineage`: the real CLI on a small real run, and the page in a real browser."""

import base64
import hashlib
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from smoke_run import build_smoke_run, cli
from support import git

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
IMAGES = ("progress.png", "progress_time.png", "pareto.png", "lineage.png")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return build_smoke_run(tmp_path_factory.mktemp("report"), "rep")


@pytest.fixture(scope="module")
def report(run):
    """The report of the finished run, built once; (CompletedProcess, study digest before, after)."""
    before = _digest(run.run_dir / "study.db")
    out = cli("report", "lineage", *run.where())
    return out, before, _digest(run.run_dir / "study.db")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _front(run):
    from search.record.data import aggregate_variants, front_names
    from search.run.scheduler import Scheduler

    trials = Scheduler(None, run.run_dir, run.name, create=False).trials()
    variants = aggregate_variants(trials)
    return [variants[n] for n in front_names(variants)], variants


def _assert_png(data: bytes) -> tuple[int, int]:
    from PIL import Image

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(data))
    image.verify()
    width, height = image.size
    assert width > 200 and height > 100
    return width, height


def test_report_writes_html_markdown_and_pngs_and_prints_them(run, report):
    out, before, after = report
    assert out.returncode == 0, out.stdout + out.stderr
    report_dir = run.run_dir / "report"
    printed = out.stdout.split()
    for name in ("index.html", "report.md", *IMAGES):
        assert (report_dir / name).is_file() and str(report_dir / name) in printed
    for name in IMAGES:
        _assert_png((report_dir / name).read_bytes())
    assert before == after  # the study was only read


def test_html_is_self_contained_and_shows_figures_front_and_paths(run, report):
    page = (run.run_dir / "report" / "index.html").read_text()
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == len(IMAGES)
    for data in uris:
        _assert_png(base64.b64decode(data))
    assert "<script" not in page and 'src="http' not in page and "href=\"http" not in page
    front, _ = _front(run)
    assert front
    for member in front:  # each front member: its val_bpb, its test_bpb beside it, its path from the seed
        assert f"{member['val_bpb']:.6f}" in page and f"{member['test_bpb']:.6f}" in page
        assert f'id="path-{member["name"]}"' in page
    if any(m["name"] != "v0000" for m in front):
        assert "<pre>diff --git a/train/train.py b/train/train.py" in page  # a step's diff, in <pre>
        assert '<span class="add">+' in page and '<span class="del">-' in page
    assert "->" not in page and "-&gt;" in page  # descriptions ("tune LR 0.04->0.05") and diffs are escaped
    for heading in ("Progress", "Pareto front", "Lineage tree", "Paths from the seed", "Tables",
                    "Trials by operator and status", "Operators", "Time, LLM and noise", "All trials"):
        assert heading in page
    assert "noise floor" in page and "none (no LLM configured)" in page
    assert 'class="dataframe trials"' in page  # the pandas table of all trials
    assert page.count("<tr>") >= 4 + 1


def test_markdown_names_the_pngs_and_the_front(run, report):
    md = (run.run_dir / "report" / "report.md").read_text()
    for name in IMAGES:
        assert f"]({name})" in md
    front, _ = _front(run)
    for member in front:
        assert f"### {member['name']}:" in md
    assert "| operator |" in md


def test_report_of_a_running_run(run, tmp_path):
    """A copy of the run with one trial taken (RUNNING) and one waiting: the report builds and says so."""
    from search.run.scheduler import Scheduler

    copy = tmp_path / "outputs" / run.name
    shutil.copytree(run.run_dir, copy, ignore=shutil.ignore_patterns("report", "trials"))
    sched = Scheduler(None, copy, run.name)
    _, variants = _front(run)
    seed = variants["v0000"]
    for n in (98, 99):
        sched.enqueue({"variant": f"v00{n}", "commit": seed["commit"], "parents": [seed["commit"]],
                       "parent_names": ["v0000"], "operator": "mutation", "description": f"queued {n}",
                       "content_hash": f"h{n}", "generation": 1})
    assert sched.take("w-test") is not None
    out = cli("report", "lineage", f"run.name={run.name}", f"hydra.run.dir={copy}")
    assert out.returncode == 0, out.stderr
    page = (copy / "report" / "index.html").read_text()
    assert "running;" in page and "(still running)" in page


def test_unknown_run_names_the_runs_that_exist(run):
    out = cli("report", "lineage", "run.name=nosuch", f"hydra.run.dir={run.outputs / 'nosuch'}")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "no run 'nosuch'" in out.stderr and run.name in out.stderr


def test_report_needs_a_run_name_and_a_known_kind(run):
    assert "report lineage run.name=<name>" in cli("--help").stdout
    out = cli("report", "--help")
    assert out.returncode == 0 and "lineage" in out.stdout
    out = cli("report", "lineage")
    assert out.returncode == 2 and "run.name=<name>" in out.stderr
    out = cli("report", "bogus", *run.where())
    assert out.returncode == 2 and "unknown report 'bogus'" in out.stderr and "lineage" in out.stderr
    out = cli("report", "lineage", *run.where(), "nosuchkey=1")
    assert out.returncode == 2 and "nosuchkey" in out.stderr and "Traceback" not in out.stderr


def test_report_leaves_the_repository_alone(run, report):
    assert git(run.repo, "status", "--porcelain") == ""
    assert len(git(run.repo, "branch", "--list").splitlines()) == 1  # no branch made


@pytest.mark.skipif(not CHROMIUM.exists(), reason="chromium is not installed (apt-get install chromium)")
def test_page_renders_in_headless_chromium(run, report, tmp_path):
    from PIL import Image

    page = run.run_dir / "report" / "index.html"
    shot = tmp_path / "shot.png"
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           f"--screenshot={shot}", "--window-size=1280,2400", page.as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), out.stderr[-3000:]
    assert "Uncaught" not in out.stderr
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 2400)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text, tables and plots, not a blank page
    white = max(count for count, colour in colours if colour == (255, 255, 255)) if any(
        c == (255, 255, 255) for _, c in colours) else 0
    assert white < 0.97 * image.size[0] * image.size[1]
