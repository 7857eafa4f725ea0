"""Where a variant's files come from: this checkout, a directory, or a commit."""

from __future__ import annotations

from pathlib import Path

from search import PROJECT_ROOT
from search.lineage.repo import materialize_commit



def resolve_variant(variant: str | None, editable: list[str], scratch: Path) -> Path:
    """The directory holding the variant's editable files.

    Args:
        variant: None (this checkout's seed), a directory, or a git commit / tag / branch.
        editable: the editable files a variant consists of.
        scratch: where to write a commit's files.

    Raises:
        FileNotFoundError: if a directory lacks an editable file (names it).
        search.lineage.repo.LineageError: if `variant` is neither a directory nor a commit.
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
