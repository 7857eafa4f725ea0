"""Variants as git commits and tags: making, reading, merging, pushing and fetching them.

Every evaluated variant of a search run is a commit whose parents are its parent variants (two for
a crossover, which makes it a merge commit), tagged `search/<run>/v<NNNN>` with an annotated tag
whose message is its figures as one line of JSON. Commits are made with plumbing and a private
index file, so the user's checked-out branch, HEAD, index (`.git/index`) and working tree are
never touched (`checkout` writes a commit's editable files into a directory). Commits and tags are
never GPG-signed (an unattended search cannot answer a passphrase prompt), whatever
`commit.gpgSign` / `tag.gpgSign` say.

Threads: a `Lineage` holds one GitPython `Repo`, which is not thread-safe, so every method takes
the instance's lock (reads too: they share the Repo's `git cat-file` processes). One instance can
therefore be shared by a producer and a worker thread; several instances (one per thread or per
process) on the same repository are also fine, because git itself locks the refs it updates.
"""

from __future__ import annotations

import json
import re
import tempfile
import threading
from pathlib import Path
from typing import Any

import git

DEFAULT_NAME = "evoresearch"
DEFAULT_EMAIL = "evoresearch@localhost"
TAG_PREFIX = "search"
CANDIDATE_REFS = "refs/search-candidates"  # refs/search-candidates/<run>/v<NNNN>: queued commits
DEFAULT_MODE = "100644"
TAG_NUMBER = re.compile(r"v(\d{4,})")
MERGE_LABELS = ("a", "base", "b")


class LineageError(Exception):
    """A git operation on the lineage failed; the message names the commit or path."""


def _git_error(exc: git.GitCommandError) -> str:
    """The most useful line(s) git printed for a failed command."""
    text = (exc.stderr or exc.stdout or "").strip()
    text = re.sub(r"^\s*stderr: '?|'$", "", text).strip()
    return text or str(exc)


def _remote_says(progress: git.RemoteProgress) -> str:
    """The server's own messages during a push (hooks, policies), as a suffix for an error."""
    lines = [line[len("remote:"):].strip() for line in progress.other_lines if line.startswith("remote:")]
    lines = [line for line in lines if line]
    return f" (remote: {' / '.join(lines)})" if lines else ""


class Lineage:
    """The commits and tags of one search run in one git repository.

    Args:
        repo_path: the repository (or any path inside its working tree).
        run: the run name; tags are `search/<run>/v<NNNN>`. No `/` (it would nest runs).
        editable: the editable files (paths relative to the repository root).
        remote: a configured remote name or a URL to push tags to and fetch them from; None for a
            single-machine run (then `push` and `fetch` do nothing).

    Raises:
        LineageError: if `repo_path` is not a git repository or `run` is not a valid tag part.
    """

    def __init__(self, repo_path: Path, run: str, editable: list[str], remote: str | None = None):
        try:
            self._repo = git.Repo(repo_path, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise LineageError(f"{repo_path} is not a git repository: run `git init` there and commit "
                               "the seed files, or point lineage.repo at a repository") from exc
        self._lock = threading.RLock()
        self.run = run
        self.editable = list(editable)
        self.remote = remote
        try:
            self._check_names()
            self._env = self._identity_env()
        except BaseException:
            self._repo.close()
            raise

    def _check_names(self) -> None:
        if not self.editable:
            raise LineageError("the editable list is empty: a variant needs at least one file")
        for rel in self.editable:
            parts = Path(rel).parts
            if not rel or Path(rel).is_absolute() or ".." in parts:
                raise LineageError(f"editable file {rel!r} must be a path relative to the repository root")
        if not self.run or "/" in self.run:
            raise LineageError(f"run name {self.run!r} must be non-empty and contain no '/'")
        status, _, _ = self._repo.git.check_ref_format(
            self._tag_name(0, full=True), with_extended_output=True, with_exceptions=False)
        if status != 0:
            raise LineageError(f"run name {self.run!r} cannot be part of a git tag name "
                               "(see `git check-ref-format`): choose another run.name")

    def _identity_env(self) -> dict[str, str]:
        """Author/committer/tagger: the repository's configured user, else evoresearch."""
        configured = []
        for key in ("user.name", "user.email"):
            status, value, _ = self._repo.git.config(
                "--get", key, with_extended_output=True, with_exceptions=False)
            configured.append(status == 0 and bool(value.strip()))
        if all(configured):
            return {}
        return {"GIT_AUTHOR_NAME": DEFAULT_NAME, "GIT_AUTHOR_EMAIL": DEFAULT_EMAIL,
                "GIT_COMMITTER_NAME": DEFAULT_NAME, "GIT_COMMITTER_EMAIL": DEFAULT_EMAIL}

    # --- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the Repo's helper processes (`git cat-file`); the instance is unusable after."""
        with self._lock:
            self._repo.close()

    def __enter__(self) -> Lineage:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # --- reading ------------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The repository's working tree (or git directory for a bare repository)."""
        return Path(self._repo.working_tree_dir or self._repo.git_dir)

    def base_commit(self) -> str:
        """The sha of HEAD: the seed of a new run.

        Raises:
            LineageError: if the repository has no commit yet.
        """
        with self._lock:
            try:
                return self._repo.head.commit.hexsha
            except ValueError as exc:
                raise LineageError(f"the repository {self.root} has no commit yet: commit the seed "
                                   f"files ({', '.join(self.editable)}) first") from exc

    def read_files(self, rev: str) -> dict[str, str]:
        """The editable files at `rev` (a sha, tag or branch), as text.

        Raises:
            LineageError: if `rev` is not a commit, or it lacks an editable file (named).
        """
        with self._lock:
            return self._read_files(self._resolve(rev))

    def _resolve(self, rev: str) -> str:
        """The full sha of the commit `rev` names."""
        status, out, _ = self._repo.git.rev_parse(
            "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}",
            with_extended_output=True, with_exceptions=False)
        if status != 0 or not out.strip():
            raise LineageError(f"{rev!r} is not a commit of {self.root}")
        return out.strip()

    def _read_files(self, sha: str, missing_ok: bool = False) -> dict[str, str]:
        tree = self._repo.commit(sha).tree
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
        with self._lock:
            sha_a, sha_b = self._resolve(a), self._resolve(b)
            status, out, err = self._repo.git.merge_base(
                sha_a, sha_b, with_extended_output=True, with_exceptions=False)
            if status == 1 and not out.strip():
                return None
            if status != 0:
                raise LineageError(f"git merge-base {a} {b} failed: {err.strip()}")
            return out.strip()

    def diff(self, a: str, b: str) -> str:
        """The unified diff of the editable files from `a` to `b` ('' if they are the same)."""
        with self._lock:
            sha_a, sha_b = self._resolve(a), self._resolve(b)
            return self._repo.git.diff(
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
        with self._lock, tempfile.TemporaryDirectory(prefix="evoresearch-index-") as tmp:
            shas = [self._resolve(p) for p in parents]
            env = {**self._env, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
            g = self._repo.git
            try:
                g.read_tree(shas[0], env=env)
                tree = self._repo.commit(shas[0]).tree
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
                                   f"{_git_error(exc)}") from exc

    @staticmethod
    def _mode(tree: git.Tree, rel: str) -> str:
        """The parent's file mode for `rel` (keeps an executable bit), 100644 for a new file."""
        try:
            return f"{(tree / rel).mode:o}"
        except KeyError:
            return DEFAULT_MODE

    # --- tags ---------------------------------------------------------------------------------

    def tag_ref(self, number: int) -> str:
        """The full ref name of variant `number`'s tag (for `push`)."""
        return self._tag_name(number, full=True)

    def _tag_name(self, number: int, full: bool = False) -> str:
        name = f"{TAG_PREFIX}/{self.run}/v{number:04d}"
        return f"refs/tags/{name}" if full else name

    def _tag_target(self, ref: str) -> str | None:
        status, out, _ = self._repo.git.rev_parse(
            "--verify", "--quiet", f"{ref}^{{commit}}", with_extended_output=True, with_exceptions=False)
        return out.strip() if status == 0 and out.strip() else None

    def tag(self, sha: str, number: int, figures: dict) -> str:
        """Tag commit `sha` as variant `number` with its figures (one line of JSON).

        Tagging the same commit again rewrites the figures (a resumed run may complete them).

        Returns:
            The tag name, `search/<run>/v<NNNN>`.

        Raises:
            LineageError: if the tag already names another commit, `sha` is not a commit, or the
                figures are not JSON-serialisable.
        """
        if number < 0:
            raise LineageError(f"variant number must be >= 0, got {number}")
        name = self._tag_name(number)
        try:
            message = json.dumps(figures, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise LineageError(f"the figures for {name} are not JSON-serialisable: {exc}") from exc
        with self._lock:
            target = self._resolve(sha)
            existing = self._tag_target(self._tag_name(number, full=True))
            if existing is not None and existing != target:
                raise LineageError(f"tag {name} already names commit {existing[:12]}, not {target[:12]}: "
                                   "variant numbers of a run must not be reused")
            try:
                self._repo.git.tag("--annotate", "--no-sign", "--force", "--message", message, name, target,
                                   env=self._env)
            except git.GitCommandError as exc:
                raise LineageError(f"creating tag {name} failed: {_git_error(exc)}") from exc
            return name

    def tags(self) -> dict[int, tuple[str, dict]]:
        """Every variant tag of this run: number -> (commit sha, figures).

        Raises:
            LineageError: if a tag under `search/<run>/` is not one this module writes (names it).
        """
        prefix = f"refs/tags/{TAG_PREFIX}/{self.run}/"
        with self._lock:
            out = self._repo.git.for_each_ref(
                "--format=%(refname)%00%(objecttype)%00%(*objectname)%00%(contents:subject)", prefix)
        found: dict[int, tuple[str, dict]] = {}
        for line in filter(None, out.split("\n")):
            ref, kind, target, subject = line.split("\0", 3)
            match = TAG_NUMBER.fullmatch(ref[len(prefix):])
            if kind != "tag" or match is None:
                raise LineageError(f"{ref} is not an annotated variant tag (search/<run>/v<NNNN>)")
            try:
                figures = json.loads(subject)
            except json.JSONDecodeError as exc:
                raise LineageError(f"tag {ref} does not hold JSON figures: {subject[:80]!r}") from exc
            found[int(match.group(1))] = (target, figures)
        return dict(sorted(found.items()))

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
        with self._lock:
            sha = self._resolve(rev)
            status, _, _ = self._repo.git.check_ref_format(ref, with_extended_output=True, with_exceptions=False)
            if status != 0 or name.startswith("-"):
                raise LineageError(f"{name!r} is not a valid branch name (see `git check-ref-format`)")
            existing = self._tag_target(ref)
            if existing is not None:
                raise LineageError(f"branch {name} already exists in {self.root} (at {existing[:12]}); "
                                   "choose another name")
            # An empty old value makes git refuse if the branch appeared meanwhile.
            status, _, err = self._repo.git.update_ref("-m", f"evoresearch: {self.run} variant", ref, sha, "",
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
        with self._lock, tempfile.TemporaryDirectory(prefix="evoresearch-merge-") as tmp:
            ours = self._read_files(self._resolve(a))
            theirs = self._read_files(self._resolve(b))
            ancestor = self._read_files(self._resolve(base), missing_ok=True) if base is not None else {}
            merged: dict[str, str] = {}
            conflicts: list[str] = []
            for rel in self.editable:
                paths = []
                for label, text in zip(MERGE_LABELS, (ours[rel], ancestor.get(rel, ""), theirs[rel])):
                    path = Path(tmp) / label
                    path.write_bytes(text.encode("utf-8"))
                    paths.append(str(path))
                label_args = [arg for label in MERGE_LABELS for arg in ("-L", label)]
                status, out, err = self._repo.git.merge_file(
                    "-p", "--diff3", *label_args, *paths, with_extended_output=True, with_exceptions=False,
                    stdout_as_string=False, strip_newline_in_stdout=False)
                if not 0 <= status < 128:
                    raise LineageError(f"git merge-file failed on {rel}: {err.strip()}")
                merged[rel] = out.decode("utf-8")
                if status > 0:
                    conflicts.append(rel)
            return merged, conflicts

    # --- remote -------------------------------------------------------------------------------

    def _refspec(self) -> list[str]:
        """Every ref of this run: its variant tags and its candidates' refs."""
        patterns = [f"refs/tags/{TAG_PREFIX}/{self.run}/*", f"{CANDIDATE_REFS}/{self.run}/*"]
        return [f"+{p}:{p}" for p in patterns]

    def _candidate_ref(self, number: int) -> str:
        return f"{CANDIDATE_REFS}/{self.run}/v{number:04d}"

    def mark_candidate(self, sha: str, number: int) -> None:
        """Point the ref `refs/search-candidates/<run>/v<NNNN>` at a queued candidate's commit and
        push it: a worker on another machine fetches the commit from the remote through it, and
        `git gc` keeps a commit that waits long in the queue.

        Raises:
            LineageError: if `sha` is not a commit, or the push fails.
        """
        ref = self._candidate_ref(number)
        with self._lock:
            self._repo.git.update_ref(ref, self._resolve(sha))
        self.push([ref])

    def push(self, refs: list[str] | None = None) -> None:
        """Push this run's tags and candidate refs (and so their commits) to the remote; nothing
        without a remote.

        Refs are force-pushed, because a resumed run may rewrite a tag's figures.

        Args:
            refs: full ref names to push (`tag_ref(n)`, a candidate's ref); None: all of the run's.

        Raises:
            LineageError: with the remote's message, if the push fails or a tag is rejected.
        """
        if self.remote is None:
            return
        specs = [f"+{r}:{r}" for r in refs] if refs is not None else self._refspec()
        with self._lock:
            remote = git.Remote(self._repo, self.remote)
            progress = git.RemoteProgress()  # keeps the `remote:` lines a server hook prints
            try:
                results = remote.push(specs, progress=progress)
                results.raise_if_error()
            except git.GitCommandError as exc:
                raise LineageError(f"pushing the tags of run {self.run} to {self.remote} failed: "
                                   f"{_git_error(exc)}{_remote_says(progress)}") from exc
            failed = git.PushInfo.ERROR | git.PushInfo.REJECTED | git.PushInfo.REMOTE_REJECTED \
                | git.PushInfo.REMOTE_FAILURE
            rejected = [f"{info.remote_ref_string}: {info.summary.strip()}"
                        for info in results if info.flags & failed]
            if rejected:
                raise LineageError(f"{self.remote} rejected tags of run {self.run}: {'; '.join(rejected)}"
                                   f"{_remote_says(progress)}")

    def fetch(self, shas: list[str]) -> None:
        """Fetch this run's tags from the remote and make sure the commits `shas` are here.

        Commits that no tag reaches are asked for by sha (the remote must allow that). Nothing
        happens without a remote.

        Raises:
            LineageError: with the remote's message, or naming the commits still missing.
        """
        if self.remote is None:
            return
        with self._lock:
            remote = git.Remote(self._repo, self.remote)
            try:
                remote.fetch(self._refspec())
            except git.GitCommandError as exc:
                raise LineageError(f"fetching the tags of run {self.run} from {self.remote} failed: "
                                   f"{_git_error(exc)}") from exc
            missing = [sha for sha in shas if not self._has_commit(sha)]
            if missing:
                status, _, err = self._repo.git.fetch(
                    "--no-tags", "--", self.remote, *missing, with_extended_output=True, with_exceptions=False)
                still = [sha for sha in missing if not self._has_commit(sha)]
                if still:
                    detail = f": {err.strip()}" if status != 0 and err.strip() else ""
                    raise LineageError(f"commits {', '.join(s[:12] for s in still)} are not on {self.remote} "
                                       f"under a tag of run {self.run}{detail}")

    def _has_commit(self, sha: str) -> bool:
        status, _, _ = self._repo.git.cat_file("-e", f"{sha}^{{commit}}",
                                               with_extended_output=True, with_exceptions=False)
        return status == 0


__all__ = ["Lineage", "LineageError"]
