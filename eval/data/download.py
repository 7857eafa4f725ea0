"""Resumable, verified HTTP downloads for the data cache.

    from eval.data.download import download
    path = download("https://example.org/input.txt", Path("cache/input.txt"), sha256=None)

Bytes stream into ``<dest>.part``. If that file is already there (an earlier run was cut off),
the transfer resumes with an HTTP ``Range`` request; a server without range support answers 200
and the transfer starts over. ``dest`` appears only after the size declared by the server (and the
sha256, when given) checked out, through an atomic rename, so it never exists half-written.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from eval.data import DataError

USER_AGENT = "evoresearch-data/0.1"
PROGRESS_INTERVAL_S = 0.25  # at most four progress updates a second

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class DownloadError(DataError):
    """A download failed, was cut short, or did not verify."""


def file_sha256(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 digest of a file's contents."""
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            hasher.update(chunk)
    return hasher.hexdigest()


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    timeout: float = 60,
    chunk_bytes: int = 1 << 20,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest``, resuming an earlier partial transfer and verifying the result.

    Args:
        url: the http(s) URL to fetch.
        dest: where the verified file goes; its folder is created.
        sha256: expected hex digest of the whole file, or None to check only the size.
        timeout: seconds to wait for the connection and for each read.
        chunk_bytes: bytes read and written at a time.
        progress: write a one-line progress meter to stderr.

    Returns:
        ``dest``. Beside it, ``<dest>.sha256`` holds the digest of what was downloaded.

    Raises:
        DownloadError: on an HTTP error status, an unreachable server, a transfer cut short (the
            ``.part`` file is kept so that running again resumes it), or a size or sha256 mismatch
            (the ``.part`` file is deleted). When ``dest`` already exists and ``sha256`` is given
            but does not match, the error names the file to delete.
    """
    dest = Path(dest)
    expected = sha256.strip().lower() if sha256 else None
    if dest.exists():
        if expected is not None:
            got = file_sha256(dest, chunk_bytes)
            if got != expected:
                raise DownloadError(
                    f"{dest} is already present but its sha256 is {got}, expected {expected} "
                    f"(source {url}). Delete {dest} and run again to download it afresh."
                )
        return dest

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    digest = _fetch(url, part, expected, timeout=timeout, chunk_bytes=chunk_bytes, progress=progress)
    os.replace(part, dest)
    dest.with_suffix(dest.suffix + ".sha256").write_text(f"{digest}  {dest.name}\n")
    return dest


def _fetch(
    url: str, part: Path, expected: str | None, *, timeout: float, chunk_bytes: int, progress: bool
) -> str:
    """Stream ``url`` into ``part`` (resuming it when it exists); return the verified digest."""
    offset = part.stat().st_size if part.exists() else 0
    response = _open(url, offset, timeout)
    if response is None:  # 416: the .part does not fit the file on the server; start over
        part.unlink()
        offset = 0
        response = _open(url, 0, timeout)
    with response:
        offset, total = _resume_point(response, offset, url)
        hasher = hashlib.sha256()
        if offset:
            with open(part, "rb") as f:
                while chunk := f.read(chunk_bytes):
                    hasher.update(chunk)
        done = offset
        meter = _Progress(part.name.removesuffix(".part"), total, offset) if progress else None
        try:
            with open(part, "ab" if offset else "wb") as f:
                while chunk := response.read(chunk_bytes):
                    f.write(chunk)
                    hasher.update(chunk)
                    done += len(chunk)
                    if meter is not None:
                        meter.update(done)
        except (OSError, http.client.HTTPException) as exc:
            raise DownloadError(
                f"download of {url} was interrupted after {_size(done)} of {_size(total)} "
                f"({type(exc).__name__}: {exc}). The partial file {part} is kept: "
                f"run again to resume it."
            ) from exc
        finally:
            if meter is not None:
                meter.close(done)

    if total is not None and done < total:
        raise DownloadError(
            f"download of {url} stopped early: got {done} of {total} bytes. The partial file "
            f"{part} is kept: run again to resume it."
        )
    if total is not None and done > total:
        part.unlink()
        raise DownloadError(
            f"download of {url} is larger than the server declared: expected {total} bytes, "
            f"got {done}. The partial file was deleted; run again, and if it recurs, check the URL."
        )
    digest = hasher.hexdigest()
    if expected is not None and digest != expected:
        part.unlink()
        raise DownloadError(
            f"sha256 mismatch for {url}: expected {expected}, got {digest}. The download was "
            f"deleted. Check that the URL and the configured sha256 belong together (the file may "
            f"have changed upstream); fix or clear data.sha256 and run again."
        )
    return digest


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse | None:
    """GET ``url`` from byte ``offset``; None when the server says the range is unsatisfiable."""
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        request = urllib.request.Request(url, headers=headers)
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            return None
        raise DownloadError(
            f"GET {url} failed with HTTP {exc.code} {exc.reason}. {_status_hint(exc.code)}"
        ) from exc
    except ValueError as exc:
        raise DownloadError(f"{url!r} is not a valid http(s) URL ({exc}); fix it in the config.") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        kept = " The partial file is kept and will be resumed." if offset else ""
        raise DownloadError(
            f"could not download {url}: {reason}. Check the URL and the network connection, "
            f"then run again.{kept}"
        ) from exc


def _resume_point(response: http.client.HTTPResponse, offset: int, url: str) -> tuple[int, int | None]:
    """(byte offset the body starts at, total file size or None) from the response headers."""
    if response.status == 206:
        match = _CONTENT_RANGE.fullmatch((response.headers.get("Content-Range") or "").strip())
        if match is None or int(match.group(1)) != offset:
            raise DownloadError(
                f"{url} answered a range request for byte {offset} with Content-Range "
                f"{response.headers.get('Content-Range')!r}. Delete the .part file beside the "
                f"destination and run again."
            )
        total = match.group(3)
        return offset, None if total == "*" else int(total)
    if response.status == 200:
        if offset:
            print(f"note: {url} does not support resuming; starting over", file=sys.stderr)
        length = response.headers.get("Content-Length")
        return 0, int(length) if length and length.isdigit() else None
    raise DownloadError(f"GET {url} answered HTTP {response.status}, expected 200 or 206.")


def _status_hint(code: int) -> str:
    if code == 404:
        return "Check the URL in the data config (data.url, data.urls or data.url_template)."
    if code in (401, 403):
        return "The server refused access: check the URL, or download the file yourself and use source=files."
    if code >= 500:
        return "The server failed; try again later."
    return "Check the URL in the data config."


def _size(n: int | None) -> str:
    return "an unknown size" if n is None else f"{n} bytes"


class _Progress:
    """One stderr line, rewritten in place at most every PROGRESS_INTERVAL_S seconds."""

    def __init__(self, label: str, total: int | None, start: int, clock: Callable[[], float] = time.monotonic):
        self.label, self.total, self.start, self.clock = label, total, start, clock
        self.t0 = clock()
        self.last = float("-inf")
        self.width = 0

    def update(self, done: int, *, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self.last < PROGRESS_INTERVAL_S:
            return
        self.last = now
        rate = (done - self.start) / max(now - self.t0, 1e-9) / 1e6
        if self.total:
            amount = f"{done / 1e6:.1f}/{self.total / 1e6:.1f} MB ({100 * done / self.total:.0f}%)"
        else:
            amount = f"{done / 1e6:.1f} MB"
        line = f"{self.label}: {amount} {rate:.1f} MB/s"
        sys.stderr.write("\r" + line.ljust(self.width))
        sys.stderr.flush()
        self.width = len(line)

    def close(self, done: int) -> None:
        self.update(done, force=True)
        sys.stderr.write("\n")
        sys.stderr.flush()
