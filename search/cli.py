"""The command line: `python -m search <command> [Hydra overrides]`.

Hydra's `@hydra.main` reads `sys.argv` itself, so the command word is taken out of `sys.argv`
before the Hydra entry point of that command is called; everything else (overrides, `--cfg job`,
`--help`, `-m` multirun) is Hydra's as usual. Each entry point only unwraps the config and calls a
plain function that tests call directly.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from eval.data import DataError
from eval.record import Status
from search import PROJECT_ROOT
from search.config import (Config, UserError, check_run_name, check_values, config_dict, load_config,
                           override_problem, register_configs)
from search.lineage.repo import LineageError
from search.run.sandbox import SandboxError

register_configs()

# Mistakes in the command, the settings or the data: one line and exit 2. Anything else is a bug and
# shows its traceback.
USER_ERRORS = (UserError, DataError, LineageError, SandboxError, FileNotFoundError)
CONF_DIR = str(PROJECT_ROOT / "conf")

USAGE = """usage: python -m search <command> [overrides] [--help] [--cfg job]

commands:
  run     the search: `+population=8` for a population of 8 variants, none for the single-lineage
          loop (keep a change only if it beats the best beyond noise). The same run.name resumes.
  trial   train one variant (the seed, or trial.variant=<dir or commit>) for a fixed budget,
          print its summary and write its record under outputs/<run.name>/trial/
  worker  `worker run.name=<name> storage.url=<db url> lineage.remote=<git url>`: train the queued
          trials of a run whose producer (`run ... scheduler.workers=0`) runs on another machine
  report  `report lineage run.name=<name>`: plots, lineage tree, paths from the seed and tables
          of a run (finished, interrupted or running) in outputs/<name>/report/
          `report ablation run.name=<name> [variant=v0042]`: trains the variant without each of its
          changes and the seed with each alone; which changes matter, beyond noise
  export  `export run.name=<name> [pick=best|v0042|pareto:<max_mb>] out=<dir>`: the variant as a
          directory that trains with one command; `branch=<name>` instead: a git branch at it

Overrides are Hydra's: `data=shakespeare data.path=FILE trial=cpu trial.budget_seconds=30`.
`python -m search <command> --help` lists the configuration groups and their options.
Without `trial=...` or `experiment=...`, the `gpu` preset is used when CUDA is available and the
`cpu` preset otherwise.
"""


def resolved(cfg: DictConfig) -> Config:
    """The composed config, resolved and typed (the schema's dataclasses)."""
    return load_config(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]


def trial_command(cfg: DictConfig, run_dir: Path) -> "TrialRecord":  # noqa: F821
    """Prepare the data, materialize the variant, run one trial and return its record."""
    from eval.data.prepare import prepare_data
    from search.run.runner import run_trial_process
    from search.lineage.checkout import resolve_variant

    conf = resolved(cfg)
    plain = config_dict(conf)  # the trial spec and the data settings are the harness's plain JSON
    trial, data = plain["trial"], plain["data"]
    prepared = prepare_data(data, trial["vocab_size"])
    prepared.check_evaluation(trial)
    variant_dir = resolve_variant(conf.trial.variant, conf.editable, run_dir / "variant")
    spec = {"variant_dir": str(variant_dir), "data": prepared.spec(), "trial": trial, "editable": conf.editable}
    print(f"trial: preset {trial['name']}, budget {trial['budget_seconds']:.0f}s, data {data['name']}, "
          f"variant {variant_dir}", flush=True)
    record = run_trial_process(spec, run_dir / "trial", echo=sys.stdout)
    if record.status != Status.OK and record.log_tail and record.reason:
        print(f"trial: {record.status}: {record.reason}", flush=True)
    print(f"trial: record written to {run_dir / 'trial' / 'record.json'}", flush=True)
    return record


_exit_codes: list[int] = []  # Hydra drops a task's return value; each task appends its exit code


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _trial_main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        record = trial_command(cfg, run_dir)
    except USER_ERRORS as exc:
        _user_error(exc, run_dir)
        return
    _exit_codes.append(0 if record.status == Status.OK else 1)


def _user_error(exc: Exception, run_dir: Path | None = None) -> None:
    """A mistake in the command or the data: one clear line, not a traceback. The run directory
    goes again when it holds nothing but what Hydra wrote into it for this command."""
    print(f"error: {exc}", file=sys.stderr)
    _exit_codes.append(2)
    if run_dir is not None:
        _remove_if_only_hydra(run_dir)


def _remove_if_only_hydra(run_dir: Path) -> None:
    """Remove `run_dir` if it holds only what Hydra made for this command (`.hydra/` and the
    command's log, whose lines the console showed): the command failed before writing anything."""
    if not run_dir.is_dir():
        return
    for entry in run_dir.iterdir():
        if entry.name == ".hydra" and entry.is_dir():
            continue
        if entry.suffix == ".log" and entry.is_file():
            continue
        return
    shutil.rmtree(run_dir, ignore_errors=True)


def run_command(cfg: DictConfig, run_dir: Path, llm=None) -> "RunSummary":  # noqa: F821
    """Run (or resume) the search described by the config; returns its summary."""
    from search.run.loop import SearchRun

    conf = resolved(cfg)
    population = conf.population
    if population is not None and population < 1:
        raise UserError(f"population must be a positive integer (or null for the single lineage), got {population!r}")
    search = SearchRun.open(conf, run_dir, llm=llm)
    try:
        return search.run()
    finally:
        search.close()


def _storage_error(exc: Exception) -> bool:
    """The machine would not store the run (disk full, read-only or forbidden output): one line
    saying what to fix; the run resumes with the same command afterwards."""
    from search.run.loop import is_fatal

    if not is_fatal(exc):
        return False
    print(f"error: the run's files could not be written: {exc}\nfree some space (or make the output "
          "directory writable), then run the same command again: the run resumes where it stopped", file=sys.stderr)
    _exit_codes.append(2)
    return True


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _run_main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    if hc.mode == RunMode.MULTIRUN:  # each combination of a sweep is its own run, study and lineage
        cfg.run.name = run_dir.name
    try:
        run_command(cfg, run_dir)
    except USER_ERRORS as exc:
        if not _storage_error(exc):
            _user_error(exc, run_dir)
        return
    except KeyboardInterrupt:
        _exit_codes.append(130)
        return
    except Exception as exc:
        if not _storage_error(exc):
            raise
        return
    _exit_codes.append(0)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _worker_main(cfg: DictConfig) -> None:
    from search.run.remote_worker import worker_command

    hc = HydraConfig.get()
    data_overridden = any(o.split("=", 1)[0].lstrip("+~").split(".")[0] == "data" for o in hc.overrides.task)
    try:
        worker_command(resolved(cfg), Path(hc.runtime.output_dir), data_overridden)
    except USER_ERRORS as exc:
        if not _storage_error(exc):
            _user_error(exc)
        return
    except KeyboardInterrupt:
        print("interrupted: this worker's trial is re-queued for the run's other workers", file=sys.stderr)
        _exit_codes.append(130)
        return
    except Exception as exc:
        if not _storage_error(exc):
            raise
        return
    _exit_codes.append(0)


COMMANDS: dict[str, Callable[[], Any]] = {"run": _run_main, "trial": _trial_main, "worker": _worker_main}


# --- report and export: the Compose API (no output directory or logging of their own)

REPORT_USAGE = """usage: python -m search report <kind> run.name=<name> [overrides]

kinds:
  lineage   progress and Pareto plots, the lineage tree, each front member's path from the seed with
            its diffs, and tables; written to outputs/<name>/report/ (index.html, report.md, PNGs)
  ablation  [variant=v0042 (default: the best)] [ablation.repeats=N]: cuts the variant's difference from
            the seed into changes (lineage steps, and their hunks where each applies alone), trains the
            variant without each change and the seed with each alone (ablation.repeats trial seeds,
            through the run's study; a rerun trains only what is missing) and writes
            outputs/<name>/report/ablation-<variant>.{md,html,png,json}

The run is outputs/<run.name>/ (or hydra.run.dir=<dir> if the run was given one).
"""

EXPORT_USAGE = """usage: python -m search export run.name=<name> [pick=best|v0042|pareto:<max_mb>] out=<dir>
       python -m search export run.name=<name> [pick=...] branch=<name>

pick=best (the default): the lowest val_bpb among ok variants; pick=v0042: that variant;
pick=pareto:<max_mb>: the lowest val_bpb with peak_mem_mb <= max_mb.
out=<dir>: a new directory holding the variant, the harness and train_variant.py (one command trains it).
branch=<name>: a git branch at the variant's commit in the run's lineage.repo (never moves an existing one).
"""


def _compose(overrides: list[str]) -> DictConfig:
    """The configuration `overrides` compose to, Hydra's own section included (Compose API)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose(config_name="config", overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def compose_run_config(overrides: list[str]) -> tuple[DictConfig, Path]:
    """The composed config of `overrides` and the run directory it names (hydra.run.dir).

    Raises:
        ValueError: if no run.name is given (naming the runs that exist) or an override is wrong.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from search.record.runs import list_runs

    for override in overrides:
        problem = override_problem(override, Path(CONF_DIR))
        if problem:
            raise UserError(problem)
    try:
        cfg = _compose(overrides)
        run_dir = Path(cfg.hydra.run.dir)
    except (HydraException, OmegaConfBaseException) as exc:
        raise UserError(" ".join(str(exc).split())) from None
    if not any(o.split("=", 1)[0].lstrip("+~") == "run.name" for o in overrides):
        runs = list_runs(run_dir.parent)
        raise UserError(f"name the run: run.name=<name> (the runs in {run_dir.parent}: "
                         f"{', '.join(runs) if runs else 'none'})")
    return cfg, run_dir


def report_command(kind: str, overrides: list[str]) -> list[Path]:
    """Build the report `kind` of the run the overrides name; returns the files written."""
    from search.report.lineage import write_lineage_report
    from search.record.runs import load_run

    if kind not in REPORT_KINDS:
        raise UserError(f"unknown report {kind!r}; the reports are: {', '.join(REPORT_KINDS)}")
    cfg, run_dir = compose_run_config(overrides)
    state = load_run(run_dir, cfg.run.name)
    if kind == "ablation":
        from search.ablation.run import run_ablation
        from search.ablation.report import write_ablation_report

        result = run_ablation(state, OmegaConf.to_object(cfg.ablation), cfg.variant)
        written = write_ablation_report(state, result)
        print(f"ablation of {result.target} (delta = without the change - with it; positive: it helps):\n"
              f"{written.table}", flush=True)
        return [written.html, written.markdown, written.image, written.record]
    files = write_lineage_report(state)
    return [files.html, files.markdown, *files.images]


def export_command(overrides: list[str]) -> "Export":  # noqa: F821
    """Export the variant the overrides pick as a directory (out=) or a branch (branch=)."""
    from search.report.export import branch_variant, export_variant
    from search.record.runs import load_run

    cfg, run_dir = compose_run_config(overrides)
    if not cfg.out and not cfg.branch:
        raise UserError("export needs out=<dir> (a standalone directory) or branch=<name> (a git branch at the "
                         "variant's commit)")
    if cfg.out and cfg.branch:
        raise UserError("give out=<dir> or branch=<name>, not both")
    state = load_run(run_dir, cfg.run.name)
    if cfg.branch:
        return branch_variant(state, cfg.pick, cfg.branch)
    return export_variant(state, cfg.pick, Path(cfg.out))


REPORT_KINDS = ("lineage", "ablation")


def _report_main(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        print(REPORT_USAGE)
        return 0
    try:
        paths = report_command(args[0], args[1:])
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the ablation's running trial was re-queued
        print("interrupted: run the same command again to go on where it stopped", file=sys.stderr)
        return 130
    for path in paths:
        print(path)
    return 0


def _export_main(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):
        print(EXPORT_USAGE)
        return 0
    try:
        done = export_command(args)
    except (*USER_ERRORS, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if done.branch:
        print(f"export: branch {done.branch} at {done.commit[:12]} ({done.variant})")
    else:
        print(f"export: {done.variant} ({done.commit[:12]}) written to {done.out}")
        print(f"export: train it there with `cd {done.out} && python train_variant.py`")
    return 0


PLAIN_COMMANDS: dict[str, Callable[[list[str]], int]] = {"report": _report_main, "export": _export_main}


def command_usage(command: str) -> str:
    """The USAGE entry of one command (its lines up to the next command)."""
    lines = USAGE.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith(f"  {command} "))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("  ") and lines[i][2] != " "
                or not lines[i].strip()), len(lines))
    return "python -m search " + command + ": " + " ".join(line.strip() for line in lines[start:end])[len(command):].strip()


def default_preset_overrides(overrides: list[str]) -> list[str]:
    """Add `trial=gpu` on a CUDA machine unless the user chose a trial preset or an experiment."""
    chosen = any(o.split("=", 1)[0].lstrip("+~") in ("trial", "experiment") for o in overrides)
    if chosen or any(o in ("--help", "-h", "--hydra-help") for o in overrides):
        return overrides
    if os.environ.get("EVORESEARCH_NO_GPU_DEFAULT"):
        return overrides
    import torch

    return overrides + ["trial=gpu"] if torch.cuda.is_available() else overrides


def command_problem(overrides: list[str]) -> str | None:
    """What is wrong with a `run`, `trial` or `worker` command, found before anything is written
    (Hydra would create the run directory first), or None.

    Checks: every overridden key exists in the schema (even one added with `+`) and every group
    option exists, each with a "did you mean" when a name is near one; Hydra's own composition;
    the run name; values out of range; that the run directory can be written. Commands with flags
    (`--help`, `--cfg`, `-m`) are left to Hydra.
    """
    for override in overrides:
        problem = override_problem(override, Path(CONF_DIR))
        if problem:
            return problem
    if any(o.startswith("-") for o in overrides):
        return None  # Hydra's flags: its help, its printing of the config, sweeps (run directories per job)
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = _compose(overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        cause = f": {exc.__cause__}" if exc.__cause__ and str(exc.__cause__) not in str(exc) else ""
        return " ".join(f"{exc}{cause}".split())
    try:
        check_run_name(cfg.run.name)
        settings = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
        check_values(load_config(OmegaConf.to_container(settings, resolve=True)))
    except UserError as exc:
        return str(exc)
    return _output_dir_problem(Path(cfg.hydra.run.dir))


def _output_dir_problem(run_dir: Path) -> str | None:
    """Why the run directory (hydra.run.dir) cannot be written, or None if it can."""
    existing = run_dir.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        probe = Path(tempfile.mkdtemp(prefix=".evoresearch-write-test-", dir=existing))
        probe.rmdir()
    except OSError as exc:
        return (f"the run directory {run_dir} cannot be written ({exc.strerror}: {existing}): free some space or "
                "make it writable, or choose another with hydra.run.dir=<dir>; a run resumes with the same command")
    return None


def main(argv: list[str] | None = None) -> int:
    """Dispatch `python -m search <command> ...` to the command's Hydra entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, overrides = args[0], args[1:]
    if command in PLAIN_COMMANDS:
        return PLAIN_COMMANDS[command](overrides)
    if command not in COMMANDS:
        print(f"unknown command {command!r}; the commands are: {', '.join([*COMMANDS, *PLAIN_COMMANDS])}\n",
              file=sys.stderr)
        print(USAGE, file=sys.stderr)
        return 2
    if any(o in ("-h", "--help") for o in overrides):
        print(command_usage(command), flush=True)  # what the command does; Hydra lists the groups below
    problem = command_problem(default_preset_overrides(overrides))
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    named = any(o.split("=", 1)[0] == "hydra.job.name" for o in overrides)
    args = default_preset_overrides(overrides)
    if not named:  # the log file: outputs/<run.name>/<command>.log
        # Beside the other overrides: Hydra's parser takes its positional overrides in one run.
        first = next((i for i, a in enumerate(args) if "=" in a and not a.startswith("-")), len(args))
        args = args[:first] + [f"hydra.job.name={command}"] + args[first:]
    sys.argv = [f"python -m search {command}"] + args
    _exit_codes.clear()
    try:
        COMMANDS[command]()
    except ValueError as exc:  # Hydra refuses its own flags together (`-m ... --cfg job`) with a ValueError
        if not _raised_by_hydra(exc):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return max(_exit_codes, default=0)


def _raised_by_hydra(exc: BaseException) -> bool:
    """The exception was raised inside Hydra's own code (its command-line handling), not ours."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and f"{os.sep}hydra{os.sep}" in tb.tb_frame.f_code.co_filename
