"""Variants as git commits: making, reading and merging them, and a branch at one of them.

Every evaluated variant of a search run is a commit whose parents are its parent variants (two for
a crossover, which makes it a merge commit); its tag and the remote it is pushed to are the run's
refs (`refs`, reached as `Lineage.refs`). Commits are made with plumbing and a private index file,
so the user's checked-out branch, HEAD, index (`.git/index`) and working tree are never touched
(`checkout` writes a commit's editable files into a directory). Commits are never GPG-signed (an
unattended search cannot answer a passphrase prompt), whatever `commit.gpgSign` says.

Threads: a `Lineage` and its `refs` share one GitPython `Repo` (a `SharedRepo`), which is not
thread-safe, so every method of either takes the shared lock (reads too: they share the Repo's
`git cat-file` processes). One instance can therefore be shared by a producer and a worker thread;
several instances (one per thread or per process) on the same repository are also fine, because
git itself locks the refs it updates.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import git

from search.lineage.refs import RunRefs
from search.lineage.shared_repo import LineageError, SharedRepo, git_error_text

DEFAULT_MODE = "100644"
MERGE_LABELS = ("a", "base", "b")


class Lineage:
    """The commits of one search run in one git repository; its tags and remote are `refs`.

    Args:
        repo_path: the repository (or any path inside its working tree).
        run: the run name; tags are `search/<run>/v<NNNN>`. No `/` (it would nest runs).
        editable: the editable files (paths relative to the repository root).
        remote: a configured remote name or a URL to push tags to and fetch them from; None for a
            single-machine run (then `refs.push` and `refs.fetch` do nothing).

    Attributes:
        refs: the run's variant tags and candidate refs, and their exchange with `remote`.

    Raises:
        LineageError: if `repo_path` is not a git repository or `run` is not a valid tag part.
    """

    def __init__(self, repo_path: Path, run: str, editable: list[str], remote: str | None = None):
        self._git = SharedRepo(repo_path)
        self.run = run
        self.editable = list(editable)
        try:
            self._check_editable()
            self.refs = RunRefs(self._git, run, remote)
        except BaseException:
            self._git.close()
            raise

    def _check_editable(self) -> None:
        if not self.editable:
            raise LineageError("the editable list is empty: a variant needs at least one file")
        for rel in self.editable:
            parts = Path(rel).parts
            if not rel or Path(rel).is_absolute() or ".." in parts:
                raise LineageError(f"editable file {rel!r} must be a path relative to the repository root")

    # --- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the Repo's helper processes (`git cat-file`); the instance is unusable after."""
        self._git.close()

    def __enter__(self) -> Lineage:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # --- reading ------------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The repository's working tree (or git directory for a bare repository)."""
        return self._git.root

    def base_commit(self) -> str:
        """The sha of HEAD: the seed of a new run.

        Raises:
            LineageError: if the repository has no commit yet.
        """
        with self._git.lock:
            try:
                return self._git.repo.head.commit.hexsha
            except ValueError as exc:
                raise LineageError(f"the repository {self.root} has no commit yet: commit the seed "
                                   f"files ({', '.join(self.editable)}) first") from exc

    def uncommitted(self) -> list[str]:
        """The editable files whose working-tree or staged content differs from HEAD (a bare
        repository has none)."""
        with self._git.lock:
            if self._git.repo.bare:
                return []
            lines = self._git.repo.git.status("--porcelain", "--untracked-files=no", "--", *self.editable)
        return sorted(line[3:].strip() for line in lines.splitlines() if line.strip())

    def read_files(self, rev: str) -> dict[str, str]:
        """The editable files at `rev` (a sha, tag or branch), as text.

        Raises:
            LineageError: if `rev` is not a commit, or it lacks an editable file (named).
        """
        with self._git.lock:
            return self._read_files(self._git.resolve(rev))

    def _read_files(self, sha: str, missing_ok: bool = False) -> dict[str, str]:
        tree = self._git.repo.commit(sha).tree
        files = {}
        for rel in self.editable:
            try:
                blob = tree / rel
            except KeyError as exc:
                if missing_ok:
                    continue
                raise LineageError(f"commit {sha[:12]} has no {rel}") from exc
            try:
                files[rel] = blob.data_stream.read().decode("utf-8")
            except UnicodeDecodeError as exc:
                raise LineageError(f"{rel} at commit {sha[:12]} is not UTF-8 text") from exc
        return files

    def merge_base(self, a: str, b: str) -> str | None:
        """The best common ancestor of two revisions, or None if they share no history."""
        with self._git.lock:
            sha_a, sha_b = self._git.resolve(a), self._git.resolve(b)
            status, out, err = self._git.repo.git.merge_base(
                sha_a, sha_b, with_extended_output=True, with_exceptions=False)
            if status == 1 and not out.strip():
                return None
            if status != 0:
                raise LineageError(f"git merge-base {a} {b} failed: {err.strip()}")
            return out.strip()

    def diff(self, a: str, b: str) -> str:
        """The unified diff of the editable files from `a` to `b` ('' if they are the same)."""
        with self._git.lock:
            sha_a, sha_b = self._git.resolve(a), self._git.resolve(b)
            return self._git.repo.git.diff(
                "--no-color", "--no-ext-diff", "--no-textconv", "--src-prefix=a/", "--dst-prefix=b/",
                sha_a, sha_b, "--", *self.editable, strip_newline_in_stdout=False)

    # --- writing commits ----------------------------------------------------------------------

    def commit_variant(self, files: dict[str, str], parents: list[str], message: str) -> str:
        """Commit a variant without touching HEAD, the branch, the index or the working tree.

        The commit's tree is the first parent's tree with the editable files in `files` replaced
        (editable files not in `files` keep the first parent's version). Two parents make a merge
        commit.

        Args:
            files: editable path -> new text.
            parents: one or two commits (shas, tags or branches), first parent first.
            message: the commit message.

        Returns:
            The new commit's sha.

        Raises:
            LineageError: if a path is not editable, a parent is not a commit, or git fails.
        """
        if len(parents) not in (1, 2):
            raise LineageError(f"a variant has one or two parents, got {len(parents)}")
        foreign = [rel for rel in files if rel not in self.editable]
        if foreign:
            raise LineageError(f"{', '.join(foreign)} not in the editable files ({', '.join(self.editable)})")
        with self._git.lock, tempfile.TemporaryDirectory(prefix="evoresearch-index-") as tmp:
            shas = [self._git.resolve(p) for p in parents]
            env = {**self._git.env, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
            g = self._git.repo.git
            try:
                g.read_tree(shas[0], env=env)
                tree = self._git.repo.commit(shas[0]).tree
                blob_paths = []
                for i, rel in enumerate(files):
                    path = Path(tmp) / f"blob{i}"
                    path.write_bytes(files[rel].encode("utf-8"))
                    blob_paths.append(str(path))
                blobs = g.hash_object("-w", "--no-filters", "--", *blob_paths).split() if files else []
                for rel, blob in zip(files, blobs):
                    g.update_index("--add", "--cacheinfo", f"{self._mode(tree, rel)},{blob},{rel}", env=env)
                new_tree = g.write_tree(env=env).strip()
                message_file = Path(tmp) / "message"
                message_file.write_bytes(message.encode("utf-8"))
                parent_args = [arg for sha in shas for arg in ("-p", sha)]
                return g.commit_tree(new_tree, *parent_args, "--no-gpg-sign", "-F", str(message_file),
                                     env=env).strip()
            except git.GitCommandError as exc:
                raise LineageError(f"committing a variant on {', '.join(s[:12] for s in shas)} failed: "
                                   f"{git_error_text(exc)}") from exc

    @staticmethod
    def _mode(tree: git.Tree, rel: str) -> str:
        """The parent's file mode for `rel` (keeps an executable bit), 100644 for a new file."""
        try:
            return f"{(tree / rel).mode:o}"
        except KeyError:
            return DEFAULT_MODE

    # --- branches -----------------------------------------------------------------------------

    def create_branch(self, name: str, rev: str) -> str:
        """Create the branch `name` at commit `rev`; HEAD, the index and the working tree stay as
        they are. An existing branch is never moved.

        Returns:
            The full sha the branch points at.

        Raises:
            LineageError: if `name` is not a valid branch name, the branch exists, or `rev` is not
                a commit.
        """
        ref = f"refs/heads/{name}"
        with self._git.lock:
            sha = self._git.resolve(rev)
            if not self._git.is_valid_ref(ref) or name.startswith("-"):
                raise LineageError(f"{name!r} is not a valid branch name (see `git check-ref-format`)")
            existing = self._git.ref_target(ref)
            if existing is not None:
                raise LineageError(f"branch {name} already exists in {self.root} (at {existing[:12]}); "
                                   "choose another name")
            # An empty old value makes git refuse if the branch appeared meanwhile.
            status, _, err = self._git.repo.git.update_ref("-m", f"evoresearch: {self.run} variant", ref, sha, "",
                                                           with_extended_output=True, with_exceptions=False)
            if status != 0:
                raise LineageError(f"creating branch {name} at {sha[:12]} failed: {err.strip()}")
            return sha

    # --- merging ------------------------------------------------------------------------------

    def three_way_merge(self, base: str | None, a: str, b: str) -> tuple[dict[str, str], list[str]]:
        """Merge the editable files of `a` and `b` from their common `base`, file by file.

        Uses `git merge-file` with diff3 markers labelled `a`, `base` and `b`; a conflicted file
        keeps its markers. A file missing at `base`, or `base` None, merges from an empty file.

        Returns:
            (merged files, conflicted paths in the order of `editable`).

        Raises:
            LineageError: if a revision is not a commit or `a` / `b` lacks an editable file.
        """
        with self._git.lock, tempfile.TemporaryDirectory(prefix="evoresearch-merge-") as tmp:
            ours = self._read_files(self._git.resolve(a))
            theirs = self._read_files(self._git.resolve(b))
            ancestor = self._read_files(self._git.resolve(base), missing_ok=True) if base is not None else {}
            merged: dict[str, str] = {}
            conflicts: list[str] = []
            for rel in self.editable:
                paths = []
                for label, text in zip(MERGE_LABELS, (ours[rel], ancestor.get(rel, ""), theirs[rel])):
                    path = Path(tmp) / label
                    path.write_bytes(text.encode("utf-8"))
                    paths.append(str(path))
                label_args = [arg for label in MERGE_LABELS for arg in ("-L", label)]
                status, out, err = self._git.repo.git.merge_file(
                    "-p", "--diff3", *label_args, *paths, with_extended_output=True, with_exceptions=False,
                    stdout_as_string=False, strip_newline_in_stdout=False)
                if not 0 <= status < 128:
                    raise LineageError(f"git merge-file failed on {rel}: {err.strip()}")
                merged[rel] = out.decode("utf-8")
                if status > 0:
                    conflicts.append(rel)
            return merged, conflicts


__all__ = ["Lineage", "LineageError"]
