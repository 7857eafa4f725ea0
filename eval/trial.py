"""The trial entry point: train one variant for a fixed budget and measure it.

    python -m eval.trial <spec.json>

Run by `search.run.runner` in its own process group; it reads the spec the runner wrote, imports the
variant's `train/train.py` from the variant directory, hands it a `TrialContext`, and after
training probes causality, evaluates val and test bits per byte, and writes the record JSON. The
variant never sees the validation or test tokens, never computes its own metric, and never
touches the clock. From the variant's import on, an audit hook (eval/confine.py) refuses writes
outside the trial directory, reading the evaluation data and the network; a variant that tried
is `rejected`. `trial.memory_limit_mb` caps the process's memory; running out is `oom`.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any
from eval.record import Status


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m eval.trial <spec.json>", file=sys.stderr)
        return 2
    # The watchdog stops a variant with a KeyboardInterrupt, which Python only raises if SIGINT has its
    # handler: a search started in the background (`... &`, some schedulers) hands SIGINT down ignored.
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)
    # The runner's one-time token arrives on stdin and is read before any variant code runs.
    token = sys.stdin.readline().strip() if not sys.stdin.isatty() else ""
    sys.stdin.close()
    _die_with_parent()
    spec = json.loads(Path(argv[0]).read_text())
    limit_memory(spec["trial"].get("memory_limit_mb"))
    record = run_trial(spec)
    from eval.files import write_atomic

    payload = json.loads(record.to_json())
    payload["token"] = token
    write_atomic(Path(spec["record_path"]), json.dumps(payload, indent=2).encode("utf-8"))
    print(record.summary(), flush=True)
    return 0


def _die_with_parent(poll_seconds: float = 1.0) -> None:
    """Kill this trial's process group if the process that started it dies (a killed search
    must not leave trials training on the device while its resumed successor starts new ones)."""
    import os
    import signal
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:
                os.killpg(os.getpgid(0), signal.SIGKILL)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


MEMORY_HEADROOM_MB = 256  # above trial.memory_limit_mb, for the harness to record an oom


def limit_memory(limit_mb: int | None) -> None:
    """Cap this process's memory at `limit_mb` (None: no cap); allocations past it fail in Python.

    RLIMIT_DATA, not RLIMIT_AS: since Linux 4.7 it counts the private writable mappings (the heap,
    anonymous mmaps, thread stacks), which is what a growing tensor or list takes, and leaves out
    reserved address space that is never backed. Measured here with torch 2.13 on CPU: importing
    torch, numpy and tiktoken and training a small model takes 0.79 GB of address space but 0.30 GB
    of data, and 40 threads reserve 1.9 GB of address space for 0.26 GB resident; under a 1 GB
    RLIMIT_AS a variant got 0.19 GB of tensors, under a 1 GB RLIMIT_DATA 0.70 GB. Over the limit,
    torch raises "DefaultCPUAllocator: can't allocate memory", numpy and Python MemoryError.
    The hard limit sits MEMORY_HEADROOM_MB above: the harness lifts the soft limit to it to write the
    oom record (a variant could do the same, and gain only that much).
    """
    if not limit_mb:
        return
    import resource

    soft, hard = (int(limit_mb) * 2**20, (int(limit_mb) + MEMORY_HEADROOM_MB) * 2**20)
    _, current = resource.getrlimit(resource.RLIMIT_DATA)
    if current != resource.RLIM_INFINITY:
        soft, hard = min(soft, current), min(hard, current)
    resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


def _memory_headroom() -> None:
    """Lift the soft memory limit to the hard one, so the harness can finish after an oom."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (hard, hard))


def out_of_memory(exc: BaseException, limit_mb: int | None) -> str | None:
    """The oom reason for an exception that means memory ran out, or None for any other exception."""
    import torch

    first = (str(exc).strip().splitlines() or [""])[0]
    # torch.OutOfMemoryError is the device-agnostic name from torch 2.5 on; 2.4 has only the CUDA one.
    if isinstance(exc, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)):
        return f"out of GPU memory: {first}"
    if isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and (
            "can't allocate memory" in first or "not enough memory" in first)):
        where = (f"over trial.memory_limit_mb={limit_mb} (the process's RLIMIT_DATA)" if limit_mb
                 else "the machine ran out (no trial.memory_limit_mb set)")
        detail = f"{type(exc).__name__}: {first}" if str(exc).strip() else type(exc).__name__
        return f"out of memory, {where}: {detail}"[:1000]
    return None


def _terminate_self() -> None:
    """End this trial process (SIGTERM, default action) when the watchdog's interrupts do not land."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGTERM)


def select_device(name: str):
    """The torch device for `trial.device` (auto: cuda, then mps, then cpu)."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"trial.device={name} but CUDA is not available on this machine; use trial.device=auto")
    return device


def code_hash(variant_dir: Path, editable: list[str]) -> str:
    """SHA-256 over the variant's editable files (path and content), the variant's identity."""
    h = hashlib.sha256()
    for rel in sorted(editable):
        path = variant_dir / rel
        h.update(rel.encode() + b"\0")
        h.update(path.read_bytes() if path.exists() else b"<missing>")
        h.update(b"\0")
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    import numpy
    import tiktoken
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "tiktoken": tiktoken.__version__,
        "cuda": str(torch.version.cuda),
        "platform": platform.platform(),
    }


def run_trial(spec: dict[str, Any]):
    """Run the whole trial described by `spec` and return its TrialRecord (never raises)."""
    from eval.record import TrialRecord

    t_cfg = spec["trial"]
    base: dict[str, Any] = {"preset": t_cfg["name"], "seed": t_cfg["seed"], "data": spec["data"]["info"]}
    try:
        return _run(spec, base)
    except Exception as exc:  # harness-side failure before the variant ran
        return TrialRecord(status="crash", reason=f"harness error: {exc}", log_tail=traceback.format_exc(), **base)


def _run(spec: dict[str, Any], base: dict[str, Any]):
    import numpy as np
    import torch

    from eval import confine
    from eval.context import TrialContext, TrialDiverged, TrialStopped, Watchdog
    from eval.data.dataloader import TokenStore, eval_rows
    from eval.measure import TrainingClock, peak_flops, peak_memory_mb
    from eval.metric import evaluate_bpb
    from eval.probe import probe_causality
    from eval.record import TrialRecord
    from eval.data.tokenizer import load_tokenizer

    t_cfg = spec["trial"]
    variant_dir = Path(spec["variant_dir"]).resolve()
    trial_dir = Path(spec["record_path"]).parent if spec.get("record_path") else Path.cwd()
    memory_limit = t_cfg.get("memory_limit_mb")
    spawn_time = float(spec.get("spawn_time", time.time()))
    if t_cfg.get("threads"):
        torch.set_num_threads(int(t_cfg["threads"]))
    device = select_device(t_cfg["device"])
    base["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    base["versions"] = library_versions()
    base["code_hash"] = code_hash(variant_dir, spec["editable"])
    print(f"trial: variant {variant_dir} code {base['code_hash'][:12]} on {base['device']}", flush=True)
    print(f"trial: versions {json.dumps(base['versions'])}", flush=True)
    base["sandbox"] = spec.get("sandbox") or "none"
    print(f"trial: sandbox {base['sandbox']}, memory limit "
          f"{f'{memory_limit} MB' if memory_limit else 'none'}, confinement on", flush=True)

    tok = load_tokenizer(Path(spec["data"]["tokenizer"]))
    train_store = TokenStore.load(Path(spec["data"]["train"]))
    torch.manual_seed(t_cfg["seed"])
    np.random.seed(t_cfg["seed"] % 2**32)
    autocast = torch.bfloat16 if device.type == "cuda" else None

    def total_seconds() -> float:
        return time.time() - spawn_time

    # The variant is confined from its import on (the harness has loaded what it needs to train).
    guard = confine.install(confine.for_trial(spec, trial_dir))

    def ended(status: str, reason: str, **figures: Any) -> TrialRecord:
        figures.setdefault("peak_mem_mb", peak_memory_mb(device))
        figures.setdefault("total_seconds", total_seconds())
        if guard.violations:  # whatever else happened, and even if the variant caught the refusal
            if status != Status.OK and confine.PREFIX not in reason:
                reason = f"{guard.reason()}; the trial then ended {status}: {reason}"
            else:
                reason = guard.reason()
            status = "rejected"
            for key in ("val_bpb", "test_bpb", "uniform_bpb"):
                figures.pop(key, None)
        return TrialRecord(status=status, reason=reason, **base, **figures)

    def failed(exc: BaseException, what: str, **figures: Any) -> TrialRecord:
        oom = out_of_memory(exc, memory_limit)
        if oom:
            if memory_limit:
                _memory_headroom()
            return ended("oom", f"{oom} ({what})", log_tail=traceback.format_exc(), **figures)
        return ended("crash", f"{type(exc).__name__} {what}: {exc}", log_tail=traceback.format_exc(), **figures)

    # --- import the variant and apply the preset's constants
    try:
        module = _import_variant(variant_dir)
        applied = _apply_constants(module, t_cfg.get("constants") or {})
    except Exception as exc:
        return failed(exc, "while importing the variant")
    base["constants"] = applied
    if not callable(getattr(module, "train", None)):
        return ended("crash", "train/train.py defines no train(ctx) function")

    # --- train, on the harness's clock, under the watchdog
    clock = TrainingClock(t_cfg["budget_seconds"], t_cfg["clock_skip_steps"])
    ctx = TrialContext(
        device=device, vocab_size=tok.vocab_size, seq_len=t_cfg["seq_len"], bos_id=tok.bos_id,
        seed=t_cfg["seed"], train_store=train_store, clock=clock, diverge_loss=t_cfg["diverge_loss"],
        log_every=t_cfg["log_every"], max_steps=t_cfg.get("max_steps"), stop_curve=t_cfg.get("stop_curve"),
        log=lambda m: print(m, flush=True),
    )
    watchdog = Watchdog(clock, t_cfg["budget_seconds"], t_cfg["budget_tolerance"], t_cfg["startup_seconds"],
                        escalate=_terminate_self)
    watchdog.start()
    try:
        model = module.train(ctx)
    except KeyboardInterrupt:
        watchdog.stop()
        reason = watchdog.fired or "interrupted"
        return ended("timeout" if watchdog.fired else "stopped", reason, **_train_figures(ctx, clock))
    except TrialDiverged as exc:
        watchdog.stop()
        return ended("diverged", str(exc), **_train_figures(ctx, clock))
    except TrialStopped as exc:
        watchdog.stop()
        saved = max(0.0, t_cfg["budget_seconds"] - clock.training_seconds)
        return ended("stopped", str(exc), saved_seconds=saved, **_train_figures(ctx, clock))
    except Exception as exc:
        watchdog.stop()
        return failed(exc, "in train()", **_train_figures(ctx, clock))
    watchdog.stop()
    training_figures = _train_figures(ctx, clock)
    if not isinstance(model, torch.nn.Module):
        return ended("crash", f"train(ctx) returned {type(model).__name__}, not the trained nn.Module",
                     **training_figures)
    n_params = sum(p.numel() for p in model.parameters())
    n_embed = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    training_figures["num_params_M"] = n_params / 1e6
    flops = peak_flops(device)
    if flops and clock.training_seconds > 0:
        tokens_per_s = ctx.tokens_served / max(clock.training_seconds, 1e-9)
        training_figures["mfu_percent"] = 100.0 * 6.0 * (n_params - n_embed) * tokens_per_s / flops

    # --- probe, then evaluate on tokens the variant never saw
    print("trial: causality probe", flush=True)
    try:
        probe = probe_causality(model, tok.vocab_size, t_cfg["seq_len"], device, autocast_dtype=autocast)
    except Exception as exc:
        return failed(exc, "in the model's forward during the causality probe", **training_figures)
    base["probe"] = {"max_leak": probe.max_leak, "tolerance": probe.tolerance, "passed": probe.passed}
    if not probe.passed:
        return ended("rejected", probe.reason(), **training_figures)

    print("trial: evaluating val and test bits per byte", flush=True)
    token_bytes = tok.token_bytes()
    results = {}
    for split, n_tokens in (("val", t_cfg["eval_tokens"]), ("test", t_cfg["test_tokens"])):
        with guard.permit(spec["data"][split]):  # the harness's own read, on this thread only
            store = TokenStore.load(Path(spec["data"][split]))
        rows = eval_rows(store, tok.bos_id, t_cfg["seq_len"], n_tokens, split)
        try:
            results[split] = evaluate_bpb(model, rows, token_bytes, device, t_cfg["eval_batch_rows"], autocast)
        except Exception as exc:
            return failed(exc, "during evaluation", **training_figures)
    val, test = results["val"], results["test"]
    if not math.isfinite(val.bpb):
        return ended("diverged", f"val_bpb is {val.bpb}", **training_figures)
    uniform = math.log2(tok.vocab_size) * val.tokens / val.bytes
    return ended("ok", "", val_bpb=val.bpb, test_bpb=test.bpb, uniform_bpb=uniform, eval_tokens=val.tokens,
                 test_tokens=test.tokens, **training_figures)


def _train_figures(ctx, clock) -> dict[str, Any]:
    secs = clock.training_seconds
    return {
        "loss_curve": ctx.loss_curve(),
        "training_seconds": secs,
        "num_steps": clock.steps_done,
        "tokens_M": ctx.tokens_served / 1e6,
        "tokens_per_second": (ctx.tokens_served / secs) if secs > 0 else None,
    }


def _import_variant(variant_dir: Path):
    """Import train/train.py (and through it model/gpt.py) from the variant directory."""
    train_py = variant_dir / "train" / "train.py"
    if not train_py.exists():
        raise FileNotFoundError(f"{train_py} does not exist; a variant directory holds train/train.py")
    sys.path.insert(0, str(variant_dir))
    for name in [m for m in sys.modules if m in ("train", "model") or m.startswith(("train.", "model."))]:
        del sys.modules[name]
    return importlib.import_module("train.train")


def _apply_constants(module, constants: dict[str, Any]) -> dict[str, Any]:
    """Set the preset's UPPER_SNAKE constants on the variant module; a missing name is an error."""
    for name, value in constants.items():
        if not hasattr(module, name):
            raise AttributeError(
                f"the trial preset sets {name}={value!r} but the variant's train/train.py has no constant {name}"
            )
        setattr(module, name, value)
    return dict(constants)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
