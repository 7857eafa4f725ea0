"""Writing a file so that no reader ever sees half of it (standard library only).

The engine (`search/`) and the harness (`eval/`) both write through `write_atomic`; it lives in
`eval/` because the harness may never import the engine, while the engine may import the harness.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def write_atomic(path: Path | str, data: bytes | str, *,
                 before_replace: Callable[[], None] | None = None) -> None:
    """Write `data` to `path` through `<name>.tmp` beside it and a rename: a crash leaves the old file or the new.

    The temporary name is fixed, so a test or a failpoint can find it: one writer per path at a time.
    A failed write leaves `<name>.tmp` behind (the next write replaces it) and `path` as it was.

    Args:
        path: the file to write; its directory is made if missing.
        data: bytes, or text (written as UTF-8, newlines as given).
        before_replace: called after the data is written and before the rename (a failpoint hook).

    Raises:
        OSError: when the directory, the temporary file or the rename fails (a full disk, no permission).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    if before_replace is not None:
        before_replace()
    os.replace(tmp, path)
