"""The one GitPython `Repo` a lineage opens, behind the lock every use of it takes.

GitPython's `Repo` is not thread-safe (reads too share its `git cat-file` processes), so a
`Lineage` and its `RunRefs` hold one `SharedRepo` and take its lock around each git operation.
The lock is re-entrant: a method holding it may call the helpers here, which take it as well.
Also here: the identity new commits and tags are made with, and `LineageError`, the one error of
the package.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import git

DEFAULT_NAME = "evoresearch"
DEFAULT_EMAIL = "evoresearch@localhost"


class LineageError(Exception):
    """A git operation on the lineage failed; the message names the commit or path."""


def git_error_text(exc: git.GitCommandError) -> str:
    """The most useful line(s) git printed for a failed command."""
    text = (exc.stderr or exc.stdout or "").strip()
    text = re.sub(r"^\s*stderr: '?|'$", "", text).strip()
    return text or str(exc)


class SharedRepo:
    """A git repository opened once, with its lock and the identity to commit and tag as.

    Attributes:
        repo: the GitPython `Repo`; use it only while holding `lock`.
        lock: the re-entrant lock that serialises every use of `repo`.
        env: environment variables for commands that write commits or tags (the author,
            committer and tagger: the repository's configured user, else evoresearch).

    Args:
        repo_path: the repository (or any path inside its working tree).

    Raises:
        LineageError: if `repo_path` is not a git repository.
    """

    def __init__(self, repo_path: Path):
        try:
            self.repo = git.Repo(repo_path, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
            raise LineageError(f"{repo_path} is not a git repository: run `git init` there and commit "
                               "the seed files, or point lineage.repo at a repository") from exc
        self.lock = threading.RLock()
        try:
            self.env = self._identity_env()
        except BaseException:
            self.repo.close()
            raise

    def _identity_env(self) -> dict[str, str]:
        """Author/committer/tagger: the repository's configured user, else evoresearch."""
        configured = []
        for key in ("user.name", "user.email"):
            status, value, _ = self.repo.git.config(
                "--get", key, with_extended_output=True, with_exceptions=False)
            configured.append(status == 0 and bool(value.strip()))
        if all(configured):
            return {}
        return {"GIT_AUTHOR_NAME": DEFAULT_NAME, "GIT_AUTHOR_EMAIL": DEFAULT_EMAIL,
                "GIT_COMMITTER_NAME": DEFAULT_NAME, "GIT_COMMITTER_EMAIL": DEFAULT_EMAIL}

    def close(self) -> None:
        """Stop the Repo's helper processes (`git cat-file`); unusable after."""
        with self.lock:
            self.repo.close()

    @property
    def root(self) -> Path:
        """The repository's working tree (or git directory for a bare repository)."""
        return Path(self.repo.working_tree_dir or self.repo.git_dir)

    def resolve(self, rev: str) -> str:
        """The full sha of the commit `rev` names.

        Raises:
            LineageError: if `rev` is not a commit of the repository.
        """
        with self.lock:
            status, out, _ = self.repo.git.rev_parse(
                "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}",
                with_extended_output=True, with_exceptions=False)
        if status != 0 or not out.strip():
            raise LineageError(f"{rev!r} is not a commit of {self.root}")
        return out.strip()

    def ref_target(self, ref: str) -> str | None:
        """The commit the full ref name `ref` points at, or None if there is no such ref."""
        with self.lock:
            status, out, _ = self.repo.git.rev_parse(
                "--verify", "--quiet", f"{ref}^{{commit}}", with_extended_output=True, with_exceptions=False)
        return out.strip() if status == 0 and out.strip() else None

    def has_commit(self, sha: str) -> bool:
        """Whether the commit `sha` is in the repository's object store."""
        with self.lock:
            status, _, _ = self.repo.git.cat_file("-e", f"{sha}^{{commit}}",
                                                  with_extended_output=True, with_exceptions=False)
        return status == 0

    def is_valid_ref(self, ref: str) -> bool:
        """Whether `ref` is a well-formed full ref name (`git check-ref-format`)."""
        with self.lock:
            status, _, _ = self.repo.git.check_ref_format(ref, with_extended_output=True, with_exceptions=False)
        return status == 0


__all__ = ["LineageError", "SharedRepo", "git_error_text"]
