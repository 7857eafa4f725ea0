"""Shared fixtures. Plain helpers live in tests/support.py; nothing imports this module."""

from __future__ import annotations

import pytest

from httpserver import FileServer
from openai_server import ScriptedOpenAIServer
from support import SHAKESPEARE, compose_config, make_repo


@pytest.fixture
def file_server():
    """A scriptable static-file HTTP server on 127.0.0.1 (see tests/httpserver.py)."""
    server = FileServer()
    yield server
    server.close()


@pytest.fixture
def openai_server():
    """A scripted OpenAI-compatible server on 127.0.0.1: `push(steps)`, `base_url`, `requests`."""
    server = ScriptedOpenAIServer()
    yield server
    server.close()


@pytest.fixture
def seed_repo(tmp_path):
    """tmp_path/repo: a git repository holding this checkout's seed files in one commit, for a test
    run's lineage (module- and session-scoped fixtures call support.make_repo themselves)."""
    return make_repo(tmp_path / "repo")


@pytest.fixture(scope="session")
def smoke_setup(tmp_path_factory):
    """(config, prepared data) for experiment=cpu_smoke on the shared Shakespeare file."""
    if not SHAKESPEARE.exists():
        pytest.skip(f"{SHAKESPEARE} is missing")
    from eval.data.prepare import prepare_data

    cache = tmp_path_factory.mktemp("cache")
    conf = compose_config(["experiment=cpu_smoke", f"data.path={SHAKESPEARE}", f"data.cache_dir={cache}"])
    prepared = prepare_data(conf["data"], conf["trial"]["vocab_size"], log=lambda m: None)
    return conf, prepared
