"""A scriptable static-file HTTP server on 127.0.0.1 for the download and data-source tests.

    server = FileServer()
    url = server.serve("/data.bin", payload, drop_after=100)  # first response stops at byte 100
    ...
    server.requests_for("/data.bin")  # the headers of every request for that path
    server.close()

Range requests (``bytes=N-``) are answered 206 unless a file is served with ``ignore_range``.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class _Script:
    data: bytes
    drop_after: int | None  # close the connection after this many body bytes ...
    drops_left: int  # ... on this many responses, then serve in full
    ignore_range: bool  # answer 200 with the whole file even to a Range request
    status: int | None  # answer every request with this error status


class FileServer:
    """Serves in-memory files by URL path and records the headers of every request."""

    def __init__(self) -> None:
        self._files: dict[str, _Script] = {}
        self._requests: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.file_server = self  # type: ignore[attr-defined]
        self._closed = False
        # a short poll interval so that close() returns at once rather than after 0.5 s
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def serve(
        self,
        path: str,
        data: bytes,
        *,
        drop_after: int | None = None,
        drops: int = 1,
        ignore_range: bool = False,
        status: int | None = None,
    ) -> str:
        """Serve ``data`` at ``path`` as scripted; return its URL."""
        with self._lock:
            self._files[path] = _Script(data, drop_after, drops if drop_after is not None else 0, ignore_range, status)
        return self.url(path)

    def requests_for(self, path: str) -> list[dict[str, str]]:
        """Headers of the requests made for ``path``, oldest first."""
        with self._lock:
            return [headers for p, headers in self._requests if p == path]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _record(self, path: str, headers: dict[str, str]) -> _Script | None:
        with self._lock:
            self._requests.append((path, headers))
            return self._files.get(path)

    def _take_drop(self, script: _Script) -> bool:
        with self._lock:
            if script.drops_left > 0:
                script.drops_left -= 1
                return True
            return False


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        server: FileServer = self.server.file_server  # type: ignore[attr-defined]
        path = urlsplit(self.path).path
        script = server._record(path, dict(self.headers.items()))
        if script is None:
            self.send_error(404)
            return
        if script.status is not None:
            self.send_error(script.status)
            return
        data, start, status = script.data, 0, 200
        range_header = self.headers.get("Range")
        if range_header and not script.ignore_range:
            match = re.fullmatch(r"bytes=(\d+)-", range_header.strip())
            if match is None:
                self.send_error(400, "only 'bytes=N-' ranges are supported")
                return
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        if not script.ignore_range:
            self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if script.drop_after is not None and server._take_drop(script):
            self.wfile.write(body[: script.drop_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass
