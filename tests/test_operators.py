"""Operators on real lineages (git in tmp_path) and a scripted LLM client."""

import random
import subprocess

import pytest

from scripted_llm import ScriptedClient
from search.lineage.repo import Lineage
from search.operators.base import OperatorContext, OperatorFailed, OperatorNotApplicable, Parent
from search.operators.merge import GitMerge
from search.operators.mutation import LLMMutation
from search.operators.tune import Tune
from search.run.scheduler import Scheduler, Tuner

EDITABLE = ["train/train.py", "model/gpt.py"]
TRAIN = "A = 1  # first\nB = 0.5  # second\n\n\ndef train(ctx):\n    return None\n"
MODEL = "class M:\n    pass\n"


@pytest.fixture
def lineage(tmp_path):
    repo = tmp_path / "repo"
    (repo / "train").mkdir(parents=True)
    (repo / "model").mkdir()
    (repo / "train" / "train.py").write_text(TRAIN)
    (repo / "model" / "gpt.py").write_text(MODEL)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": "/usr/bin:/bin"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "seed"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env, capture_output=True)
    with Lineage(repo, "ops", EDITABLE) as lin:
        yield lin


def parent(lin, name, sha):
    return Parent(name, sha, lin.read_files(sha), name, 1.0, 10.0, "ok")


def ctx(lin, **kw):
    return OperatorContext(program="do better", editable=EDITABLE, budget_seconds=5, lineage=lin, **kw)


def test_merge_of_two_lineages_is_clean_and_needs_no_llm(lineage):
    seed = lineage.base_commit()
    files = lineage.read_files(seed)
    a = lineage.commit_variant(dict(files, **{"train/train.py": TRAIN.replace("A = 1", "A = 2")}), [seed], "a")
    b = lineage.commit_variant(dict(files, **{"model/gpt.py": MODEL + "\n\nX = 3\n"}), [seed], "b")
    prop = GitMerge().propose([parent(lineage, "v1", a), parent(lineage, "v2", b)], ctx(lineage))
    assert "A = 2" in prop.files["train/train.py"] and "X = 3" in prop.files["model/gpt.py"]
    assert [p.name for p in prop.parents] == ["v1", "v2"]


def test_merge_with_an_ancestor_or_an_unresolved_conflict_is_not_applicable(lineage):
    seed = lineage.base_commit()
    files = lineage.read_files(seed)
    a = lineage.commit_variant(dict(files, **{"train/train.py": TRAIN.replace("A = 1", "A = 2")}), [seed], "a")
    with pytest.raises(OperatorNotApplicable, match="one lineage"):
        GitMerge().propose([parent(lineage, "v0", seed), parent(lineage, "v1", a)], ctx(lineage))
    b = lineage.commit_variant(dict(files, **{"train/train.py": TRAIN.replace("A = 1", "A = 3")}), [seed], "b")
    with pytest.raises(OperatorNotApplicable, match="conflict"):
        GitMerge().propose([parent(lineage, "v1", a), parent(lineage, "v2", b)], ctx(lineage))


def test_siblings_retuning_neighbouring_constants_merge_without_an_llm(lineage):
    seed = lineage.base_commit()
    files = lineage.read_files(seed)
    a = lineage.commit_variant(dict(files, **{"train/train.py": TRAIN.replace("A = 1", "A = 2")}), [seed], "a")
    b = lineage.commit_variant(dict(files, **{"train/train.py": TRAIN.replace("B = 0.5", "B = 0.7")}), [seed], "b")
    _, conflicts = lineage.three_way_merge(seed, a, b)
    assert conflicts == ["train/train.py"]  # git: changes on neighbouring lines conflict
    prop = GitMerge().propose([parent(lineage, "v1", a), parent(lineage, "v2", b)], ctx(lineage))
    assert prop.files["train/train.py"] == TRAIN.replace("A = 1", "A = 2").replace("B = 0.5", "B = 0.7")
    assert prop.extra == {"constant_merge": ["train/train.py"]} and "conflicts" not in prop.extra


def test_merge_conflict_resolved_by_the_llm(lineage):
    seed = lineage.base_commit()
    files = lineage.read_files(seed)
    a = lineage.commit_variant(dict(files, **{"train/train.py": TRAIN.replace("A = 1", "A = 2")}), [seed], "a")
    b = lineage.commit_variant(dict(files, **{"train/train.py": TRAIN.replace("A = 1", "A = 3")}), [seed], "b")
    resolved = TRAIN.replace("A = 1", "A = 5")
    llm = ScriptedClient([f"DESCRIPTION: take the middle\n\nFILE: train/train.py\n```python\n{resolved}```\n"])
    prop = GitMerge().propose([parent(lineage, "v1", a), parent(lineage, "v2", b)], ctx(lineage, llm=llm))
    assert prop.files["train/train.py"] == resolved and prop.extra["conflicts"] == ["train/train.py"]


def test_mutation_retries_with_feedback_then_gives_up(lineage):
    seed = lineage.base_commit()
    good = "DESCRIPTION: raise A\n\ntrain/train.py\n<<<<<<< SEARCH\nA = 1  # first\n=======\nA = 4  # first\n>>>>>>> REPLACE\n"
    llm = ScriptedClient(["no edit here", good])
    prop = LLMMutation().propose([parent(lineage, "v0", seed)], ctx(lineage, llm=llm, patch_retries=1))
    assert "A = 4" in prop.files["train/train.py"] and prop.description == "raise A"
    assert llm.requests[1][0][-2]["role"] == "assistant" and llm.requests[1][0][-1]["role"] == "user"
    stubborn = ScriptedClient(["no edit here", "still none"])
    with pytest.raises(OperatorFailed) as err:
        LLMMutation().propose([parent(lineage, "v0", seed)], ctx(lineage, llm=stubborn, patch_retries=1))
    assert err.value.kind == "no_edit"


def test_tune_changes_only_the_constants_in_range(lineage, tmp_path):
    seed = lineage.base_commit()
    tuner = Tuner(Scheduler(None, tmp_path / "run", "ops"), seed=0)
    c = ctx(lineage, tuner=tuner, tune_ranges={"B": [0.1, 0.9], "MISSING": [1, 2]})
    prop = Tune().propose([parent(lineage, "v0", seed)], c)
    old, new = TRAIN.splitlines(), prop.files["train/train.py"].splitlines()
    changed = [(o, n) for o, n in zip(old, new) if o != n]
    assert len(changed) == 1 and changed[0][1].startswith("B = ") and changed[0][1].endswith("# second")
    assert prop.extra["tuned"].keys() == {"B"}
    with pytest.raises(OperatorNotApplicable, match="none of the constants"):
        Tune().propose([parent(lineage, "v0", seed)], ctx(lineage, tuner=tuner, tune_ranges={"B": [0.1, 0.9]},
                                                           pinned={"B": 0.5}))


def test_tune_count_retunes_that_many_constants_chosen_by_the_search_seed(lineage, tmp_path):
    seed = lineage.base_commit()
    ranges = {"A": [2, 9], "B": [0.1, 0.9]}

    def tuned(run, rng_seed, proposals=6):
        tuner = Tuner(Scheduler(None, tmp_path / run, run), seed=0)
        c = ctx(lineage, tuner=tuner, tune_ranges=ranges, tune_count=1, rng=random.Random(rng_seed))
        out = []
        for _ in range(proposals):
            prop = Tune().propose([parent(lineage, "v0", seed)], c)
            assert len(prop.extra["tuned"]) == 1
            old, new = TRAIN.splitlines(), prop.files["train/train.py"].splitlines()
            assert sum(o != n for o, n in zip(old, new)) == 1
            out.append(sorted(prop.extra["tuned"]))
            tuner.report(prop.extra["tune_trial"], 1.0)
        return out

    first = tuned("r1", 3)
    assert first == tuned("r2", 3)  # the same search seed chooses the same constants
    assert {name for (name,) in first} == {"A", "B"}  # both get their turn
    everything = Tune().propose([parent(lineage, "v0", seed)], ctx(
        lineage, tuner=Tuner(Scheduler(None, tmp_path / "r3", "r3"), seed=0), tune_ranges=ranges, tune_count=None))
    assert everything.extra["tuned"].keys() == {"A", "B"}
