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


# --- trial fixtures: the composed smoke configuration and its prepared data, once per session
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
VARIANTS = Path(__file__).resolve().parent / "variants"


def compose_config(overrides):
    """The composed, resolved configuration, as the CLI would see it (plain containers)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from search.cli import CONF_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    GlobalHydra.instance().clear()
    return OmegaConf.to_container(cfg, resolve=True)


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


def make_variant(dest: Path, train_file: str) -> Path:
    """A variant directory holding tests/variants/<train_file> as train/train.py and the tiny model."""
    (dest / "train").mkdir(parents=True)
    (dest / "model").mkdir(parents=True)
    shutil.copy(VARIANTS / train_file, dest / "train" / "train.py")
    shutil.copy(VARIANTS / "tiny_model.py", dest / "model" / "gpt.py")
    return dest


# --- the scripted OpenAI-compatible server (see tests/openai_server.py)
from openai_server import ScriptedOpenAIServer  # noqa: E402


@pytest.fixture
def openai_server():
    """A scripted OpenAI-compatible server on 127.0.0.1: `push(steps)`, `base_url`, `requests`."""
    server = ScriptedOpenAIServer()
    yield server
    server.close()
