"""Structured-config schema: the typed shape of every configuration group.

Hydra validates the YAML in `conf/` and every command-line override against these dataclasses,
so a misspelt key or a string where a number belongs is an error that names it, not a silent
default. Each group's YAML files fill one of the nodes below. The code receives these dataclasses
(`load_config`), never a dict with its defaults restated. Hydra and OmegaConf are imported only
where they are used, so pure modules may import the schema and `UserError`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Mapping, Optional



class UserError(ValueError):
    """A mistake in the command, the settings or the data: the message says what to change. The
    command line prints it as one line and exits 2; any other exception shows its traceback."""


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
    max_steps: Optional[int] = None  # stop after this many steps even within budget (preflight)
    sandbox: str = "auto"  # bwrap: read-only system, writable trial dir, no network | none | auto: bwrap where it works
    memory_limit_mb: Optional[int] = None  # cap on the trial process's memory on the CPU (None: no cap); over it: status oom


@dataclass
class LLMConfig:
    """The LLM behind the mutation and crossover operators (group `llm/`)."""

    name: str = "openai"  # preset name
    model: str = "gpt-4.1-mini"  # the model name the endpoint serves
    base_url: Optional[str] = None  # an OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp...)
    api_key_env: str = "OPENAI_API_KEY"  # the environment variable holding the key (never logged)
    temperature: float = 0.8
    max_tokens: Optional[int] = 8192  # answer length cap
    timeout: float = 300.0  # seconds per request
    max_retries: int = 4  # the client's retries on 429 / 5xx / timeouts, with backoff
    price_prompt_per_million: float = 0.0  # USD per 1M prompt tokens (0: cost not tracked)
    price_completion_per_million: float = 0.0  # USD per 1M completion tokens
    spend_cap: Optional[float] = None  # USD; no request is made past it
    patch_retries: int = 2  # re-asks after an answer whose edits do not apply


@dataclass
class SearchConfig:
    """The loop: stop rules, operators, selection, noise (group `search/`)."""

    name: str = "default"
    max_trials: int = 20  # trained trials (baseline repeats included), then stop
    max_hours: Optional[float] = None  # wall-clock stop rule
    max_generations: Optional[int] = None  # population mode: stop after this many generations
    noise_repeats: int = 3  # trainings of the seed (different seeds) measuring the noise floor
    noise_k: float = 2.0  # an improvement must exceed noise_k standard deviations of the seed
    queue_size: int = 2  # candidates waiting ahead of the workers (the LLM works meanwhile)
    overlap: bool = True  # propose while training; false: strictly propose, then train, then propose
    rates: Dict[str, float] = field(default_factory=lambda: {"mutation": 0.6, "crossover": 0.15, "merge": 0.1, "tune": 0.15})
    tournament_size: int = 2
    failures_in_prompt: int = 5  # recent failed trials shown to the LLM with their causes
    preflight: bool = True  # a few steps on the candidate before its full trial
    preflight_steps: int = 2
    seed: int = 0  # the search's own random choices
    tune_ranges: Dict[str, Any] = field(default_factory=dict)  # NAME: [low, high, log?] for the tuner
    early_stop_margin: Optional[float] = None  # stop a trial whose loss is this fraction above the best's at equal progress
    tune_sampler: str = "tpe"  # the tune operator's sampler: tpe (learns from results) | random (uniform draws)
    tune_startup_trials: int = 5  # tpe: results told before it stops drawing at random and starts learning
    tune_count: Optional[int] = None  # constants of tune_ranges a tune child changes, chosen at random (None: all)


@dataclass
class SchedulerConfig:
    """Workers and trial bookkeeping (group `scheduler/`)."""

    workers: Any = 1  # trial workers in this process, "auto": one per visible GPU, 0: produce only
    heartbeat_seconds: float = 30.0  # a worker marks its running trial alive this often
    stale_after_seconds: Optional[float] = None  # a RUNNING trial silent this long is re-queued (None: 4 heartbeats, at least 60 s)


@dataclass
class StorageConfig:
    """Where the Optuna study lives (group `storage/`)."""

    url: Optional[str] = None  # None: sqlite in outputs/<run>/; journal:<path>; postgresql://...


@dataclass
class LineageConfig:
    """Where the variants' commits and tags go (key `lineage`)."""

    repo: Optional[str] = None  # a git repository (None: the one holding this checkout)
    remote: Optional[str] = None  # a shared git remote for several machines


@dataclass
class AblationConfig:
    """`python -m search report ablation`: how a variant is taken apart (key `ablation`)."""

    repeats: Optional[int] = None  # trainings of each candidate (trial seeds seed, seed+1, ...); null: search.noise_repeats
    max_changes: int = 12  # at most this many changes: beyond it steps are not split, then early steps are joined
    hunks: bool = True  # split a lineage step into its hunks when each applies to the step's parent alone
    work: bool = True  # train the queued ablation trials here; false: only queue them (a running search trains them)


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
    llm: LLMConfig = field(default_factory=LLMConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    lineage: LineageConfig = field(default_factory=LineageConfig)
    ablation: AblationConfig = field(default_factory=AblationConfig)
    program: str = "conf/program.md"  # the research direction given to the LLM with every request
    editable: List[str] = field(default_factory=lambda: ["train/train.py", "model/gpt.py"])
    population: Optional[int] = None  # null: single-lineage autoresearch mode
    # `python -m search export` and `report`: which variant, and where it goes
    pick: str = "best"  # export: best | v0042 | pareto:<max_memory_mb> (lowest val_bpb within that memory)
    out: Optional[str] = None  # export: the new directory to write the variant into
    branch: Optional[str] = None  # export: instead, a git branch at the variant's commit in lineage.repo
    variant: Optional[str] = None  # report ablation: the variant to take apart (null: the best)


def load_config(values: Mapping[str, Any]) -> Config:
    """The typed configuration from plain, resolved values (a composed Hydra config, a run's
    config.json, the settings a producer stored in its study), checked against the schema.

    Raises:
        UserError: naming a key the schema does not have or a value of the wrong type.
    """
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(Config), values))  # type: ignore[return-value]
    except Exception as exc:  # omegaconf's ValidationError, ConfigKeyError, ... name the key
        raise UserError(f"settings do not fit the schema: {exc}".splitlines()[0]) from exc


def config_dict(conf: Config) -> dict[str, Any]:
    """The configuration as plain containers (JSON, a child process, the study)."""
    return asdict(conf)


def register_configs() -> None:
    """Register the schema with Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="schema", node=Config)
