"""Where a variant's files come from: this checkout, a directory, or a commit whose editable files
are written out into a directory. Reads git only; commits and tags are made by `repo`.
"""

from __future__ import annotations

from pathlib import Path

import git

from search import PROJECT_ROOT
from search.lineage.repo import LineageError


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


def resolve_variant(variant: str | None, editable: list[str], scratch: Path) -> Path:
    """The directory holding the variant's editable files.

    Args:
        variant: None (this checkout's seed), a directory, or a git commit / tag / branch.
        editable: the editable files a variant consists of.
        scratch: where to write a commit's files.

    Raises:
        FileNotFoundError: if a directory lacks an editable file (names it).
        LineageError: if `variant` is neither a directory nor a commit.
    """
    if variant is None:
        directory = PROJECT_ROOT
    elif Path(variant).expanduser().is_dir():
        directory = Path(variant).expanduser().resolve()
    else:
        return materialize_commit(Path.cwd(), variant, editable, scratch)
    missing = [rel for rel in editable if not (directory / rel).is_file()]
    if missing:
        raise FileNotFoundError(f"variant directory {directory} lacks {', '.join(missing)}")
    return directory


__all__ = ["materialize_commit", "resolve_variant"]
