"""Structured-config schema: the typed shape of every configuration group.

Hydra validates the YAML in `conf/` and every command-line override against these dataclasses,
so a misspelt key or a string where a number belongs is an error that names it, not a silent
default. Each group's YAML files fill one of the nodes below. The code receives these dataclasses
(`load_config`), never a dict with its defaults restated. Hydra and OmegaConf are imported only
where they are used, so pure modules may import the schema and `UserError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
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
    allow_dirty: bool = False  # start a run although the editable files have uncommitted edits (the seed is HEAD)


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


OPERATOR_NAMES = ("mutation", "crossover", "merge", "tune")  # search.rates keys (search.operators.OPERATORS)
TUNE_SAMPLERS = ("tpe", "random")
# Settings a resumed run may change: stop rules, the LLM's endpoint, limits and prices, workers and
# places. Everything else makes the results comparable and is the run's identity.
RESUMABLE = ("run", "storage", "scheduler", "llm", "lineage.remote", "lineage.allow_dirty", "ablation", "pick",
             "out", "branch", "variant", "search.max_trials", "search.max_hours", "search.max_generations",
             "search.queue_size", "search.overlap", "data.cache_dir", "trial.sandbox", "trial.threads",
             "trial.variant", "trial.log_every")


def check_run_name(name: Any) -> None:
    """A run name is one plain directory name under outputs/ and part of git tag names.

    Raises:
        UserError: for an empty name, a path (separators, `..`), whitespace or a leading dot or dash.
    """
    text = "" if name is None else str(name)
    problem = ("is empty" if not text else "holds a path separator" if "/" in text or "\\" in text
               else "holds whitespace" if any(c.isspace() for c in text)
               else "starts with a dot or a dash" if text[0] in ".-" else None)
    if problem:
        raise UserError(f"run.name={text!r} {problem}: give a plain name such as run.name=my-run "
                        "(letters, digits, -, _ and .); outputs/<run.name>/ holds the run")


def check_values(conf: Config) -> None:
    """Values the schema's types admit but that cannot work, said before anything is written.

    Raises:
        UserError: naming the first setting out of range and what it must be.
    """
    t, s, d, sc, llm = conf.trial, conf.search, conf.data, conf.scheduler, conf.llm
    rules: list[tuple[bool, str]] = [
        (t.budget_seconds > 0, f"trial.budget_seconds={t.budget_seconds} must be positive"),
        (t.budget_tolerance >= 0, f"trial.budget_tolerance={t.budget_tolerance} must be 0 or more"),
        (t.startup_seconds > 0 and t.eval_seconds > 0, "trial.startup_seconds and trial.eval_seconds must be positive"),
        (t.clock_skip_steps >= 0, f"trial.clock_skip_steps={t.clock_skip_steps} must be 0 or more"),
        (t.seq_len >= 2, f"trial.seq_len={t.seq_len} must be at least 2"),
        (t.vocab_size >= 256, f"trial.vocab_size={t.vocab_size} must be at least 256 (the byte tokens)"),
        (t.eval_tokens >= 1 and t.test_tokens >= 1, "trial.eval_tokens and trial.test_tokens must be at least 1"),
        (t.eval_batch_rows >= 1, f"trial.eval_batch_rows={t.eval_batch_rows} must be at least 1"),
        (t.max_steps is None or t.max_steps >= 1, f"trial.max_steps={t.max_steps} must be at least 1 (or null)"),
        (t.memory_limit_mb is None or t.memory_limit_mb > 0,
         f"trial.memory_limit_mb={t.memory_limit_mb} must be positive (or null: no cap)"),
        (t.threads is None or t.threads >= 1, f"trial.threads={t.threads} must be at least 1 (or null)"),
        (conf.population is None or conf.population >= 1,
         f"population={conf.population} must be a positive integer (or null for the single lineage)"),
        (s.max_trials >= 1, f"search.max_trials={s.max_trials} must be at least 1"),
        (s.max_hours is None or s.max_hours > 0, f"search.max_hours={s.max_hours} must be positive (or null)"),
        (s.max_generations is None or s.max_generations >= 1,
         f"search.max_generations={s.max_generations} must be at least 1 (or null)"),
        (s.noise_repeats >= 1, f"search.noise_repeats={s.noise_repeats} must be at least 1"),
        (s.noise_k >= 0, f"search.noise_k={s.noise_k} must be 0 or more"),
        (s.queue_size >= 1, f"search.queue_size={s.queue_size} must be at least 1"),
        (s.tournament_size >= 1, f"search.tournament_size={s.tournament_size} must be at least 1"),
        (s.failures_in_prompt >= 0, f"search.failures_in_prompt={s.failures_in_prompt} must be 0 or more"),
        (s.preflight_steps >= 1, f"search.preflight_steps={s.preflight_steps} must be at least 1"),
        (s.tune_sampler in TUNE_SAMPLERS, f"search.tune_sampler={s.tune_sampler!r} is not one of {', '.join(TUNE_SAMPLERS)}"),
        (s.tune_startup_trials >= 1, f"search.tune_startup_trials={s.tune_startup_trials} must be at least 1"),
        (s.tune_count is None or s.tune_count >= 1,
         f"search.tune_count={s.tune_count!r}: give how many constants a tune child changes (at least 1), "
         "or null for all of search.tune_ranges"),
        (s.early_stop_margin is None or s.early_stop_margin > 0,
         f"search.early_stop_margin={s.early_stop_margin} must be positive (or null: no early stop)"),
        (all(name in OPERATOR_NAMES for name in s.rates),
         f"search.rates names an unknown operator {next((n for n in s.rates if n not in OPERATOR_NAMES), '')!r}; "
         f"known: {', '.join(OPERATOR_NAMES)}"),
        (all(rate >= 0 for rate in s.rates.values()), "search.rates must all be 0 or more"),
        (0 <= d.val_fraction < 1 and 0 <= d.test_fraction < 1 and d.val_fraction + d.test_fraction < 1,
         f"data.val_fraction={d.val_fraction} and data.test_fraction={d.test_fraction} must each be in [0, 1) "
         "and leave a training share"),
        (d.max_chars is None or d.max_chars > 0, f"data.max_chars={d.max_chars} must be positive (or null)"),
        (d.num_shards >= 1, f"data.num_shards={d.num_shards} must be at least 1"),
        (sc.heartbeat_seconds > 0, f"scheduler.heartbeat_seconds={sc.heartbeat_seconds} must be positive"),
        (sc.stale_after_seconds is None or sc.stale_after_seconds > 0,
         f"scheduler.stale_after_seconds={sc.stale_after_seconds} must be positive (or null)"),
        (sc.workers == "auto" or (isinstance(sc.workers, int) and not isinstance(sc.workers, bool) and sc.workers >= 0),
         f"scheduler.workers={sc.workers!r}: give a number of workers (0: produce only) or auto"),
        (llm.timeout > 0 and llm.max_retries >= 0 and llm.patch_retries >= 0,
         "llm.timeout must be positive, llm.max_retries and llm.patch_retries 0 or more"),
        (llm.max_tokens is None or llm.max_tokens >= 1, f"llm.max_tokens={llm.max_tokens} must be at least 1 (or null)"),
        (llm.spend_cap is None or llm.spend_cap >= 0, f"llm.spend_cap={llm.spend_cap} must be 0 or more (or null)"),
        (conf.ablation.repeats is None or conf.ablation.repeats >= 1,
         f"ablation.repeats={conf.ablation.repeats} must be at least 1 (or null)"),
        (conf.ablation.max_changes >= 1, f"ablation.max_changes={conf.ablation.max_changes} must be at least 1"),
        (bool(conf.editable), "editable must name at least one file"),
    ]
    for ok, message in rules:
        if not ok:
            raise UserError(message)


def run_identity(conf: Config, program_text: str) -> dict[str, Any]:
    """The settings that make a run's results comparable: everything but `RESUMABLE`, with the
    program's text in place of its path."""
    flat = _flatten(asdict(conf))
    identity = {k: v for k, v in flat.items()
                if not any(k == r or k.startswith(r + ".") for r in RESUMABLE)}
    identity["program"] = program_text
    return identity


def identity_differences(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """`key: <before> -> <now>` for each setting of the identity that differs."""
    def show(value: Any) -> str:
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."

    keys = sorted(set(before) | set(now))
    return [f"{k}: {show(before.get(k))} -> {show(now.get(k))}" for k in keys if before.get(k) != now.get(k)]


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key not in ("constants", "rates", "tune_ranges"):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def override_problem(override: str, conf_dir: Path) -> str | None:
    """An override naming a setting (of the schema) or a group option (a YAML file of `conf_dir/<group>/`)
    that does not exist, with a suggestion; None for one that exists."""
    if "=" not in override:
        return None
    key, value = override.split("=", 1)
    key = key.lstrip("+~")
    if key.startswith("hydra.") or key == "hydra":
        return None
    groups = {g.name: sorted(f.stem for f in g.glob("*.yaml")) for g in conf_dir.iterdir() if g.is_dir()}
    if key in groups:
        for choice in value.split(","):  # a sweep (-m) names several
            if choice not in groups[key] and not (choice in ("null", "") and key == "experiment"):
                return (f"{key}={value}: there is no {key} option {choice!r}"
                        f"{did_you_mean(choice, groups[key], key + '=')}; the options are: {', '.join(groups[key])}")
        return None
    node: Any = Config
    parts = key.split(".")
    if parts[:2] == ["search", "rates"] and len(parts) == 3 and parts[2] not in OPERATOR_NAMES:
        return (f"search.rates.{parts[2]}: there is no operator {parts[2]!r}"
                f"{did_you_mean(parts[2], list(OPERATOR_NAMES), 'search.rates.')}; the operators are: "
                f"{', '.join(OPERATOR_NAMES)}")
    for depth, part in enumerate(parts):
        if not dataclasses.is_dataclass(node):
            return None  # inside a mapping (search.rates, trial.constants): any key
        hints = typing.get_type_hints(node)
        if part not in hints:
            where = ".".join(key.split(".")[:depth])
            near = [f"{where}.{n}" if where else n for n in hints]
            return (f"unknown setting {key!r}{did_you_mean(key, near)}: `python -m search <command> --cfg job` "
                    "prints every setting")
        node = hints[part]
    return None


def did_you_mean(name: str, known: list[str], prefix: str = "") -> str:
    """` (did you mean <prefix><the nearest of known>?)`, or nothing when none is near."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def config_dict(conf: Config) -> dict[str, Any]:
    """The configuration as plain containers (JSON, a child process, the study)."""
    return asdict(conf)


def register_configs() -> None:
    """Register the schema with Hydra's ConfigStore (idempotent)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="schema", node=Config)
