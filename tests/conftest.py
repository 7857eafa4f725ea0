"""Shared fixtures."""

from __future__ import annotations

import pytest

from httpserver import FileServer


@pytest.fixture
def file_server():
    """A scriptable static-file HTTP server on 127.0.0.1 (see tests/httpserver.py)."""
    server = FileServer()
    yield server
    server.close()
