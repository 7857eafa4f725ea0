from pathlib import Path

import pytest

from search.operators.guards import check_candidate, check_static, content_hash

ROOT = Path(__file__).resolve().parents[1]
EDITABLE = ["train/train.py", "model/gpt.py"]


def seed_files():
    return {rel: (ROOT / rel).read_text() for rel in EDITABLE}


def test_seed_passes_every_guard_as_a_changed_candidate():
    files = seed_files()
    child = dict(files, **{"train/train.py": files["train/train.py"] + "\n# a harmless comment\n"})
    assert check_candidate(child, files, EDITABLE, {}) is None


@pytest.mark.parametrize("code,needle", [
    ("import eval.metric\n", "imports eval.metric"),
    ("from eval.data.dataloader import TokenStore\n", "imports eval.data.dataloader"),
    ("import subprocess\n", "imports subprocess"),
    ("x = open('/root/.cache/evoresearch/val.npz').read()\n", "calls open()"),
    ("import numpy as np\nx = np.load('val.npz')\n", ".load()"),
    ("import os\nk = os.environ['OPENAI_API_KEY']\n", "environ"),
    ("import os\nk = os.getenv('HOME')\n", ".getenv()"),
    ("exec('print(1)')\n", "calls exec()"),
])
def test_static_check_refuses_what_only_the_harness_may_do(code, needle):
    failure = check_static({"train/train.py": code})
    assert failure is not None and failure.kind == "static" and needle in failure.reason


def test_json_loads_and_torch_compile_are_fine():
    assert check_static({"train/train.py": "import json, torch\nx = json.loads('1')\nf = torch.compile\n"}) is None


def test_outside_surface_syntax_noop_and_duplicate():
    files = seed_files()
    outside = dict(files, **{"eval/metric.py": "x = 1\n"})
    assert check_candidate(outside, files, EDITABLE, {}).kind == "outside_surface"
    broken = dict(files, **{"model/gpt.py": "def f(:\n"})
    failure = check_candidate(broken, files, EDITABLE, {})
    assert failure.kind == "syntax" and "model/gpt.py line 1" in failure.reason
    assert check_candidate(dict(files), files, EDITABLE, {}).kind == "noop"
    child = dict(files, **{"train/train.py": files["train/train.py"] + "\n"})
    dup = check_candidate(child, files, EDITABLE, {content_hash(child, EDITABLE): "v0003"})
    assert dup.kind == "duplicate" and "v0003" in dup.reason


def test_content_hash_depends_on_content_and_path():
    a = {"train/train.py": "x", "model/gpt.py": "y"}
    assert content_hash(a, EDITABLE) == content_hash(dict(a), EDITABLE)
    assert content_hash(a, EDITABLE) != content_hash({"train/train.py": "y", "model/gpt.py": "x"}, EDITABLE)
