"""Lineage against real git repositories in tmp_path.

Every test that uses the `repo` fixture also checks, on teardown, that the user's side of the
repository (HEAD, the branch, the index file and `git status`) is exactly as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from search.lineage.checkout import materialize_commit
from search.lineage.repo import Lineage, LineageError
from support import make_repo

EDITABLE = ["train/train.py", "model/gpt.py"]
TRAIN = "LR = 0.01  # learning rate\nSTEPS = 10  # steps\n\n\ndef main():\n    return LR * STEPS\n"
GPT = "class GPT:\n    depth = 4\n    width = 64\n\n\ndef build():\n    return GPT()\n"
SEED = {"train/train.py": TRAIN, "model/gpt.py": GPT, "eval/x.py": "HARNESS = True\n", "README": "readme\n"}


def git_(cwd: Path, *args: str, input: str | None = None, env: dict | None = None) -> str:
    """Run git in `cwd` (as a configured user) and return its stdout."""
    env = {**os.environ, **(env or {}), "GIT_AUTHOR_NAME": "User", "GIT_AUTHOR_EMAIL": "user@example.com",
           "GIT_COMMITTER_NAME": "User", "GIT_COMMITTER_EMAIL": "user@example.com"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True,
                          input=input).stdout


def user_state(root: Path) -> dict:
    """What the user sees of the repository: HEAD, the branch, the index and the status."""
    index = root / ".git" / "index"
    return {
        "head": git_(root, "rev-parse", "HEAD"),
        "symbolic": git_(root, "symbolic-ref", "HEAD"),
        "branches": git_(root, "for-each-ref", "refs/heads"),
        "status": git_(root, "--no-optional-locks", "status", "--porcelain", "--untracked-files=all"),
        "index_mtime": index.stat().st_mtime_ns,
        "index": index.read_bytes(),
    }


@pytest.fixture(autouse=True)
def hermetic_git(tmp_path, monkeypatch):
    """No system or global git config (user, signing, conflict style) leaks into a test."""
    empty = tmp_path / "gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "GIT_DIR",
                "GIT_INDEX_FILE", "GIT_WORK_TREE"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def repo(tmp_path):
    """A repository with one commit of the seed; asserts on teardown that the user's side is untouched."""
    root = make_repo(tmp_path / "repo", SEED, branch="main")
    (root / "notes.txt").write_text("an untracked file of the user\n")
    before = user_state(root)
    yield root
    assert user_state(root) == before


@pytest.fixture
def lineage(repo):
    with Lineage(repo, "run1", EDITABLE) as lin:
        yield lin


def tree_files(root: Path, rev: str) -> list[str]:
    return git_(root, "ls-tree", "-r", "--name-only", rev).split()


def show(root: Path, rev: str, rel: str) -> str:
    return git_(root, "show", f"{rev}:{rel}")


def child(lin: Lineage, parent: str, train: str | None = None, gpt: str | None = None, msg: str = "m") -> str:
    files = lin.read_files(parent)
    files["train/train.py"] = train if train is not None else files["train/train.py"]
    files["model/gpt.py"] = gpt if gpt is not None else files["model/gpt.py"]
    return lin.commit_variant(files, [parent], msg)


# --- opening ------------------------------------------------------------------------------------


def test_not_a_repository_says_how_to_fix(tmp_path):
    with pytest.raises(LineageError, match=r"not a git repository.*git init.*lineage\.repo"):
        Lineage(tmp_path, "run1", EDITABLE)


def test_repository_without_commit_has_no_base(tmp_path):
    git_(tmp_path, "init", "-q")
    with Lineage(tmp_path, "run1", EDITABLE) as lin, pytest.raises(LineageError, match="no commit yet"):
        lin.base_commit()


@pytest.mark.parametrize("run", ["", "a/b", "bad..name", "sp ace"])
def test_run_name_must_fit_a_tag(repo, run):
    with pytest.raises(LineageError, match="run name"):
        Lineage(repo, run, EDITABLE)


def test_base_commit_is_head(repo, lineage):
    assert lineage.base_commit() == git_(repo, "rev-parse", "HEAD").strip()


# --- reading ------------------------------------------------------------------------------------


def test_read_files_returns_the_editable_files(lineage):
    assert lineage.read_files("HEAD") == {"train/train.py": TRAIN, "model/gpt.py": GPT}


def test_read_files_names_the_missing_file(repo):
    with Lineage(repo, "run1", [*EDITABLE, "optim/muon.py"]) as lin:
        with pytest.raises(LineageError, match="optim/muon.py"):
            lin.read_files("HEAD")


def test_read_files_of_an_unknown_revision(lineage):
    with pytest.raises(LineageError, match="nosuchrev"):
        lineage.read_files("nosuchrev")


# --- commits ------------------------------------------------------------------------------------


def test_commit_variant_replaces_editable_and_keeps_the_rest(repo, lineage):
    base = lineage.base_commit()
    new_train = TRAIN.replace("0.01", "0.02")
    sha = lineage.commit_variant({"train/train.py": new_train, "model/gpt.py": GPT}, [base], "lr 0.02\n\nwhy")
    assert sha != base
    assert sorted(tree_files(repo, sha)) == sorted(SEED)
    assert show(repo, sha, "train/train.py") == new_train
    assert show(repo, sha, "eval/x.py") == SEED["eval/x.py"]
    assert show(repo, sha, "README") == SEED["README"]
    assert git_(repo, "log", "-1", "--format=%P", sha).split() == [base]
    assert git_(repo, "log", "-1", "--format=%B", sha).strip() == "lr 0.02\n\nwhy"
    assert lineage.read_files(sha)["train/train.py"] == new_train


def test_commit_variant_with_a_subset_keeps_the_parents_other_editable_files(repo, lineage):
    sha = lineage.commit_variant({"model/gpt.py": GPT + "# x\n"}, [lineage.base_commit()], "gpt only")
    assert show(repo, sha, "train/train.py") == TRAIN
    assert show(repo, sha, "model/gpt.py") == GPT + "# x\n"


def test_commit_variant_keeps_an_executable_bit(repo, lineage, tmp_path):
    index = {"GIT_INDEX_FILE": str(tmp_path / "scratch-index")}
    git_(repo, "read-tree", "HEAD", env=index)
    git_(repo, "update-index", "--chmod=+x", "train/train.py", env=index)
    tree = git_(repo, "write-tree", env=index).strip()
    executable = git_(repo, "commit-tree", tree, "-p", "HEAD", "-m", "exec").strip()
    sha = child(lineage, executable, train=TRAIN + "# x\n")
    assert git_(repo, "ls-tree", sha, "train/train.py").startswith("100755")
    assert git_(repo, "ls-tree", sha, "model/gpt.py").startswith("100644")


def test_commit_variant_refuses_a_file_outside_the_editable_surface(lineage):
    with pytest.raises(LineageError, match="eval/x.py"):
        lineage.commit_variant({"eval/x.py": "HARNESS = False\n"}, [lineage.base_commit()], "hack")


def test_commit_variant_needs_one_or_two_parents(lineage):
    with pytest.raises(LineageError, match="one or two parents"):
        lineage.commit_variant({}, [], "orphan")


def test_commit_identity_defaults_to_evoresearch(repo, lineage):
    sha = child(lineage, lineage.base_commit(), train=TRAIN + "# y\n")
    assert git_(repo, "log", "-1", "--format=%an <%ae>|%cn <%ce>", sha).strip() == \
        "evoresearch <evoresearch@localhost>|evoresearch <evoresearch@localhost>"


def test_commit_identity_is_the_repositorys_user_when_configured(repo):
    git_(repo, "config", "user.name", "Ada")
    git_(repo, "config", "user.email", "ada@example.com")
    with Lineage(repo, "run1", EDITABLE) as lin:
        sha = child(lin, lin.base_commit(), train=TRAIN + "# z\n")
    assert git_(repo, "log", "-1", "--format=%an <%ae>", sha).strip() == "Ada <ada@example.com>"


def test_two_parents_make_a_merge_commit(repo, lineage):
    base = lineage.base_commit()
    a = child(lineage, base, train=TRAIN.replace("0.01", "0.03"))
    b = child(lineage, base, gpt=GPT.replace("depth = 4", "depth = 6"))
    files, conflicts = lineage.three_way_merge(lineage.merge_base(a, b), a, b)
    assert conflicts == []
    m = lineage.commit_variant(files, [a, b], "crossover")
    assert git_(repo, "log", "-1", "--format=%P", m).split() == [a, b]
    assert "0.03" in show(repo, m, "train/train.py") and "depth = 6" in show(repo, m, "model/gpt.py")


# --- tags ---------------------------------------------------------------------------------------


def test_tag_and_tags_round_trip(repo, lineage):
    base = lineage.base_commit()
    a = child(lineage, base, train=TRAIN + "# a\n")
    seed_figures = {"val_bpb": 1.2345678901234567, "peak_mem_mb": 512.5, "test_bpb": None, "status": "ok"}
    crash_figures = {"val_bpb": None, "status": "crash", "log": "line 1\nline 2\n# not a comment"}
    assert lineage.refs.tag(base, 0, seed_figures) == "search/run1/v0000"
    assert lineage.refs.tag(a, 12, crash_figures) == "search/run1/v0012"
    assert lineage.refs.tags() == {0: (base, seed_figures), 12: (a, crash_figures)}
    message = git_(repo, "for-each-ref", "--format=%(contents)", "refs/tags/search/run1/v0012")
    assert message.strip() == json.dumps(crash_figures, sort_keys=True)
    assert git_(repo, "cat-file", "-t", "search/run1/v0000").strip() == "tag"


def test_tags_belong_to_their_run(repo, lineage):
    base = lineage.base_commit()
    with Lineage(repo, "run10", EDITABLE) as other:
        other.refs.tag(base, 1, {"val_bpb": 2.0})
        lineage.refs.tag(base, 1, {"val_bpb": 1.0})
        assert other.refs.tags() == {1: (base, {"val_bpb": 2.0})}
    assert lineage.refs.tags() == {1: (base, {"val_bpb": 1.0})}


def test_tag_rewrite_on_the_same_commit_updates_the_figures(lineage):
    base = lineage.base_commit()
    lineage.refs.tag(base, 3, {"status": "running"})
    lineage.refs.tag(base, 3, {"status": "ok", "val_bpb": 1.5})
    assert lineage.refs.tags() == {3: (base, {"status": "ok", "val_bpb": 1.5})}


def test_tag_on_another_commit_is_an_error(lineage):
    base = lineage.base_commit()
    a = child(lineage, base, train=TRAIN + "# a\n")
    lineage.refs.tag(base, 1, {"val_bpb": 1.0})
    with pytest.raises(LineageError, match="search/run1/v0001 already names commit"):
        lineage.refs.tag(a, 1, {"val_bpb": 0.9})
    assert lineage.refs.tags() == {1: (base, {"val_bpb": 1.0})}


def test_tag_refuses_figures_that_are_not_json(lineage):
    with pytest.raises(LineageError, match="JSON"):
        lineage.refs.tag(lineage.base_commit(), 1, {"val_bpb": object()})


def test_tags_rejects_a_foreign_tag_under_the_run(repo, lineage):
    git_(repo, "tag", "search/run1/latest")
    with pytest.raises(LineageError, match="search/run1/latest"):
        lineage.refs.tags()
    git_(repo, "tag", "-d", "search/run1/latest")


def test_create_branch_at_a_variant_never_moves_an_existing_one(repo, lineage):
    base = lineage.base_commit()
    a = child(lineage, base, train=TRAIN + "# a\n")
    assert lineage.create_branch("best-a", a[:12]) == a
    assert git_(repo, "rev-parse", "refs/heads/best-a").strip() == a
    assert git_(repo, "symbolic-ref", "HEAD").strip() == "refs/heads/main"  # nothing checked out
    with pytest.raises(LineageError, match="branch best-a already exists"):
        lineage.create_branch("best-a", base)
    assert git_(repo, "rev-parse", "refs/heads/best-a").strip() == a
    with pytest.raises(LineageError, match="not a valid branch name"):
        lineage.create_branch("two..dots", a)
    with pytest.raises(LineageError, match="is not a commit"):
        lineage.create_branch("ghost", "0" * 40)
    git_(repo, "branch", "-D", "best-a")  # the fixture checks the user's branches on teardown


# --- merging and comparing ----------------------------------------------------------------------


def test_merge_base_is_the_common_ancestor(lineage):
    base = lineage.base_commit()
    a = child(lineage, base, train=TRAIN + "# a\n")
    b = child(lineage, base, gpt=GPT + "# b\n")
    a2 = child(lineage, a, gpt=GPT + "# a2\n")
    assert lineage.merge_base(a2, b) == base
    assert lineage.merge_base(a2, a) == a


def test_merge_base_of_unrelated_histories_is_none(repo, lineage):
    empty_tree = git_(repo, "hash-object", "-t", "tree", "-w", "--stdin", input="").strip()
    orphan = git_(repo, "commit-tree", empty_tree, "-m", "orphan").strip()
    unrelated = lineage.commit_variant(lineage.read_files("HEAD"), [orphan], "unrelated")
    assert lineage.merge_base(lineage.base_commit(), unrelated) is None


def test_three_way_merge_clean_in_different_regions_and_files(lineage):
    base = lineage.base_commit()
    a = child(lineage, base, train=TRAIN.replace("LR = 0.01", "LR = 0.05"))
    b = child(lineage, base, train=TRAIN.replace("return LR * STEPS", "return LR * STEPS * 2"),
              gpt=GPT.replace("width = 64", "width = 128"))
    merged, conflicts = lineage.three_way_merge(lineage.merge_base(a, b), a, b)
    assert conflicts == []
    assert "LR = 0.05" in merged["train/train.py"] and "LR * STEPS * 2" in merged["train/train.py"]
    assert merged["model/gpt.py"] == GPT.replace("width = 64", "width = 128")
    assert "<<<<<<<" not in merged["train/train.py"]


def test_three_way_merge_conflict_on_the_same_line_keeps_markers(lineage):
    base = lineage.base_commit()
    a = child(lineage, base, train=TRAIN.replace("LR = 0.01", "LR = 0.05"))
    b = child(lineage, base, train=TRAIN.replace("LR = 0.01", "LR = 0.002"), gpt=GPT + "# b\n")
    merged, conflicts = lineage.three_way_merge(base, a, b)
    assert conflicts == ["train/train.py"]
    text = merged["train/train.py"]
    assert "<<<<<<< a\nLR = 0.05" in text
    assert "||||||| base\nLR = 0.01" in text
    assert "=======\nLR = 0.002" in text and ">>>>>>> b\n" in text
    assert text.endswith("return LR * STEPS\n")
    assert merged["model/gpt.py"] == GPT + "# b\n"


def test_three_way_merge_without_base_merges_from_empty(lineage):
    base = lineage.base_commit()
    a = child(lineage, base, train=TRAIN + "# a\n")
    merged, conflicts = lineage.three_way_merge(None, a, a)
    assert conflicts == [] and merged == lineage.read_files(a)
    b = child(lineage, base, train=TRAIN + "# b\n")
    merged, conflicts = lineage.three_way_merge(None, a, b)
    assert conflicts == ["train/train.py"]
    assert merged["model/gpt.py"] == GPT


def test_diff_of_the_editable_files(lineage):
    base = lineage.base_commit()
    a = child(lineage, base, train=TRAIN.replace("STEPS = 10", "STEPS = 20"))
    text = lineage.diff(base, a)
    assert "--- a/train/train.py\n+++ b/train/train.py\n" in text
    assert "-STEPS = 10  # steps\n+STEPS = 20  # steps\n" in text
    assert "model/gpt.py" not in text
    assert lineage.diff(base, base) == ""


# --- remote -------------------------------------------------------------------------------------


def test_push_and_fetch_through_a_bare_remote(repo, lineage, tmp_path):
    bare = tmp_path / "shared.git"
    git_(tmp_path, "init", "-q", "--bare", str(bare))
    url = bare.as_uri()
    other = tmp_path / "other"
    git_(tmp_path, "clone", "-q", str(repo), str(other))

    base = lineage.base_commit()
    a = child(lineage, base, train=TRAIN + "# a\n")
    m = lineage.commit_variant(lineage.read_files(a), [a, base], "merge")
    with Lineage(repo, "run1", EDITABLE, remote=url) as pusher:
        pusher.refs.tag(base, 0, {"val_bpb": 1.5})
        pusher.refs.tag(m, 1, {"val_bpb": 1.25, "test_bpb": None})
        pusher.refs.push()
    assert git_(bare, "for-each-ref", "--format=%(refname)", "refs/tags").split() == \
        ["refs/tags/search/run1/v0000", "refs/tags/search/run1/v0001"]

    git_(other, "remote", "add", "shared", url)
    with Lineage(other, "run1", EDITABLE, remote="shared") as reader:
        assert reader.refs.tags() == {}
        reader.refs.fetch([m, a])
        assert reader.refs.tags() == {0: (base, {"val_bpb": 1.5}), 1: (m, {"val_bpb": 1.25, "test_bpb": None})}
        assert reader.read_files(m)["train/train.py"] == TRAIN + "# a\n"
        assert reader.merge_base(m, base) == base

        # a resumed run rewrites figures on the same commit: the push updates the remote tag
        lineage.refs.tag(m, 1, {"val_bpb": 1.2})
        with Lineage(repo, "run1", EDITABLE, remote=url) as pusher:
            pusher.refs.push()
        reader.refs.fetch([])
        assert reader.refs.tags()[1] == (m, {"val_bpb": 1.2})


def test_fetch_names_commits_the_remote_lacks(repo, lineage, tmp_path):
    bare = tmp_path / "shared.git"
    git_(tmp_path, "init", "-q", "--bare", str(bare))
    with Lineage(repo, "run1", EDITABLE, remote=bare.as_uri()) as lin:
        lin.refs.tag(lin.base_commit(), 0, {})
        lin.refs.push()
        with pytest.raises(LineageError, match="1234567890ab"):
            lin.refs.fetch(["1234567890ab" + "0" * 28])


def test_push_to_a_missing_remote_reports_git(repo, tmp_path):
    with Lineage(repo, "run1", EDITABLE, remote=str(tmp_path / "nowhere.git")) as lin:
        lin.refs.tag(lin.base_commit(), 0, {})
        with pytest.raises(LineageError, match="nowhere.git"):
            lin.refs.push()
        with pytest.raises(LineageError, match="nowhere.git"):
            lin.refs.fetch([])


def test_push_and_fetch_without_a_remote_do_nothing(repo, lineage):
    lineage.refs.tag(lineage.base_commit(), 0, {})

    def state() -> dict:
        return {"refs": git_(repo, "for-each-ref", "--format=%(refname) %(objectname)"),
                "config": git_(repo, "config", "--local", "--list"), "remotes": git_(repo, "remote"),
                "fetched": (repo / ".git" / "FETCH_HEAD").exists()}

    before = state()
    lineage.refs.push()
    lineage.refs.fetch([lineage.base_commit()])
    assert state() == before
    assert before["remotes"] == "" and "refs/tags/search/run1/v0000" in before["refs"] and not before["fetched"]


# --- materialize_commit -------------------------------------------------------------------------


def test_materialize_commit_writes_a_variants_files(repo, lineage, tmp_path):
    a = child(lineage, lineage.base_commit(), gpt=GPT + "# m\n")
    lineage.refs.tag(a, 7, {"val_bpb": 1.0})
    dest = materialize_commit(repo, "search/run1/v0007", EDITABLE, tmp_path / "variant")
    assert (dest / "model" / "gpt.py").read_text() == GPT + "# m\n"
    assert (dest / "train" / "train.py").read_text() == TRAIN
    with pytest.raises(LineageError, match="has no optim.py"):
        materialize_commit(repo, a, ["optim.py"], tmp_path / "v2")


def test_signing_config_does_not_block_unattended_commits_and_tags(repo):
    git_(repo, "config", "commit.gpgSign", "true")
    git_(repo, "config", "tag.gpgSign", "true")
    git_(repo, "config", "gpg.program", "false")
    with Lineage(repo, "run1", EDITABLE) as lin:
        sha = child(lin, lin.base_commit(), train=TRAIN + "# unsigned\n")
        lin.refs.tag(sha, 1, {"val_bpb": 1.0})
        assert lin.refs.tags() == {1: (sha, {"val_bpb": 1.0})}


def test_one_lineage_shared_by_threads(lineage):
    from concurrent.futures import ThreadPoolExecutor

    base = lineage.base_commit()

    def make(number: int) -> str:
        sha = child(lineage, base, train=TRAIN + f"# variant {number}\n")
        lineage.refs.tag(sha, number, {"n": number})
        return sha

    with ThreadPoolExecutor(max_workers=4) as pool:
        shas = list(pool.map(make, range(1, 13)))
    assert lineage.refs.tags() == {n: (sha, {"n": n}) for n, sha in zip(range(1, 13), shas)}


def test_push_rejected_by_the_remote_carries_its_message(repo, tmp_path):
    bare = tmp_path / "guarded.git"
    git_(tmp_path, "init", "-q", "--bare", str(bare))
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'tags are frozen on this server' >&2\nexit 1\n")
    hook.chmod(0o755)
    with Lineage(repo, "run1", EDITABLE, remote=bare.as_uri()) as lin:
        lin.refs.tag(lin.base_commit(), 0, {})
        with pytest.raises(LineageError, match="tags are frozen on this server"):
            lin.refs.push()


def test_a_queued_candidate_reaches_another_machine_before_it_has_a_tag(repo, lineage, tmp_path):
    bare = tmp_path / "shared.git"
    git_(tmp_path, "init", "-q", "--bare", str(bare))
    other = tmp_path / "other"
    git_(tmp_path, "clone", "-q", str(bare), str(other))
    base = lineage.base_commit()
    a = child(lineage, base, train=TRAIN + "# queued\n")
    with Lineage(repo, "run1", EDITABLE, remote=str(bare)) as producer:
        producer.refs.mark_candidate(a, 7)
        producer.refs.tag(base, 0, {"val_bpb": 1.5})
        producer.refs.push([producer.refs.tag_ref(0)])  # only the ref named
    assert git_(bare, "for-each-ref", "--format=%(refname) %(objectname)", "refs/search-candidates").split() == \
        ["refs/search-candidates/run1/v0007", a]
    assert git_(bare, "for-each-ref", "--format=%(refname)", "refs/tags").split() == ["refs/tags/search/run1/v0000"]
    with Lineage(other, "run1", EDITABLE, remote=str(bare)) as worker:
        worker.refs.fetch([a])
        assert worker.read_files(a)["train/train.py"] == TRAIN + "# queued\n"
        assert worker.refs.tags() == {0: (base, {"val_bpb": 1.5})}  # a candidate ref is not a variant tag
    # Without a remote the ref is still made: git gc keeps a commit that waits in the queue.
    b = child(lineage, base, train=TRAIN + "# local\n")
    lineage.refs.mark_candidate(b, 8)
    assert git_(repo, "rev-parse", "refs/search-candidates/run1/v0008").strip() == b
