"""Structured-config schema: the typed shape of every configuration group.

Hydra validates the YAML in `conf/` and every command-line override against these dataclasses,
so a misspelt key or a string where a number belongs is an error that names it, not a silent
default. Each group's YAML files fill one of the nodes below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class DataConfig:
    """Where the text comes from and how it is split (group `data/`)."""

    name: str = "pydocs"  # cache key prefix and label in records
    source: str = "pydocs"  # shakespeare | tinystories | climbmix | files | pydocs
    path: Optional[str] = None  # shakespeare: a local copy of the corpus (no download)
    url: Optional[str] = None  # shakespeare / tinystories: where to download it
    urls: List[str] = field(default_factory=list)  # climbmix: shard URLs (or url_template)
    url_template: Optional[str] = None  # climbmix: a URL with {index} for the shard number
    num_shards: int = 1  # climbmix: how many shards to download
    sha256: Optional[str] = None  # expected sha256 of a single download, checked when set
    paths: List[str] = field(default_factory=list)  # files: .txt, .jsonl or .parquet files
    text_column: str = "text"  # files / climbmix: the text field of jsonl / parquet rows
    doc_separator: Optional[str] = None  # txt sources: string between documents (None: blank lines)
    max_chars: Optional[int] = None  # cap on the corpus size in characters (None: all of it)
    val_fraction: float = 0.05  # share of documents in the validation split (selection)
    test_fraction: float = 0.05  # share of documents in the held-out test split (never selects)
    cache_dir: str = "~/.cache/evoresearch"  # downloads, tokenizers and token arrays


@dataclass
class TrialConfig:
    """One fixed-budget training run of a variant (group `trial/`)."""

    name: str = "cpu"  # preset name, written into every record
    budget_seconds: float = 60.0  # training seconds (startup, compilation, evaluation excluded)
    budget_tolerance: float = 0.10  # overrun allowed before the harness stops the variant
    startup_seconds: float = 120.0  # allowance for imports, model build, compilation
    eval_seconds: float = 300.0  # allowance for the probe and evaluation after training
    clock_skip_steps: int = 1  # first steps left off the clock (compilation, warm-up)
    seq_len: int = 256  # tokens per row, for training and evaluation
    vocab_size: int = 2048  # BPE vocabulary (special tokens come on top)
    eval_tokens: int = 65536  # validation tokens for val_bpb (fixed so runs compare)
    test_tokens: int = 32768  # held-out test tokens for test_bpb (never used to select)
    eval_batch_rows: int = 16  # rows per evaluation forward pass
    seed: int = 0  # torch / data-order seed of the trial
    device: str = "auto"  # auto (cuda, then mps, then cpu) | cuda | cuda:N | mps | cpu
    threads: Optional[int] = None  # torch CPU threads (None: torch's default)
    constants: Dict[str, Any] = field(default_factory=dict)  # seed constants the preset sets
    variant: Optional[str] = None  # a directory or a git commit (None: this checkout's seed)
    diverge_loss: float = 1.0e4  # a reported training loss above this is divergence
    log_every: int = 10  # print a progress line every N steps


@dataclass
class RunConfig:
    """The name and place of this invocation's outputs (key `run`)."""

    name: str = "${now:%Y-%m-%d_%H-%M-%S}"  # outputs/<name>/ holds the files; reuse to resume


@dataclass
class Config:
    """The root of the composed configuration."""

    data: DataConfig = field(default_factory=DataConfig)
    trial: TrialConfig = field(default_factory=TrialConfig)
    run: RunConfig = field(default_factory=RunConfig)
    editable: List[str] = field(default_factory=lambda: ["train/train.py", "model/gpt.py"])
    population: Optional[int] = None  # null: single-lineage autoresearch mode


def register_configs() -> None:
    """Register the schema with Hydra's ConfigStore (idempotent)."""
    cs = ConfigStore.instance()
    cs.store(name="schema", node=Config)
