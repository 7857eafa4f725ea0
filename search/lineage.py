"""Variants as git commits: the only module that imports git.

For now it reads a variant's editable files out of a commit; the population search adds commits,
merges and tags here.
"""

from __future__ import annotations

from pathlib import Path

import git


class LineageError(Exception):
    """A git operation on the lineage failed; the message names the commit or path."""


def materialize_commit(repo_path: Path, rev: str, editable: list[str], dest: Path) -> Path:
    """Write the editable files of commit `rev` into `dest` (a variant directory).

    Args:
        repo_path: any path inside the repository.
        rev: a commit, tag or branch name.
        editable: the editable files (relative paths) that make a variant.
        dest: the directory to fill.

    Returns:
        dest.

    Raises:
        LineageError: if there is no repository, no such commit, or the commit lacks a file.
    """
    try:
        repo = git.Repo(repo_path, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise LineageError(f"{repo_path} is not inside a git repository, so trial.variant={rev!r} "
                           "cannot name a commit; give a directory instead") from exc
    with repo:
        try:
            commit = repo.commit(rev)
        except (git.BadName, ValueError) as exc:
            raise LineageError(f"trial.variant={rev!r} is neither a directory nor a commit of "
                               f"{repo.working_tree_dir}") from exc
        for rel in editable:
            try:
                blob = commit.tree / rel
            except KeyError as exc:
                raise LineageError(f"commit {commit.hexsha[:12]} has no {rel}") from exc
            out = Path(dest) / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(blob.data_stream.read())
    return Path(dest)
