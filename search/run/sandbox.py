"""The optional bubblewrap sandbox around a trial process (`trial.sandbox`: auto | bwrap | none).

Under bubblewrap (`bwrap`, Debian package `bubblewrap`) the trial process sees the whole system
read-only, `/dev` (devices bound, so CUDA keeps working; a private `/dev/shm`), its own `/proc` and
process namespace, a private writable `/tmp`, its trial directory writable, and no network (only a
loopback of its own). It dies with the search (`--die-with-parent`), and run as root it keeps no
capabilities (root with CAP_SYS_ADMIN could remount `/` writable). Caches a GPU trial writes
(torch.compile's, Triton's, CUDA's) point into the private `/tmp`: one trial cannot plant compiled
code for the next.

`auto` uses bubblewrap where a one-time probe (the same arguments around `true`) succeeds, and says
once, in one line, when it does not. `bwrap` that does not work is a SandboxError naming why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable
from search.config import UserError

MODES = ("auto", "bwrap", "none")
SANDBOX_TMP = "/tmp"  # the private tmpfs inside the sandbox
PROBE_TIMEOUT = 20.0  # seconds; a working bwrap answers in milliseconds
# Where a sandboxed trial's caches go (inside the private /tmp, gone with the trial).
SANDBOX_CACHES = {
    "TMPDIR": f"{SANDBOX_TMP}/tmp",  # not /tmp itself: paths under /tmp the trial needs are bound there
    "TORCHINDUCTOR_CACHE_DIR": f"{SANDBOX_TMP}/torchinductor",
    "TRITON_CACHE_DIR": f"{SANDBOX_TMP}/triton",
    "XDG_CACHE_HOME": f"{SANDBOX_TMP}/xdg-cache",
    "CUDA_CACHE_PATH": f"{SANDBOX_TMP}/nv-compute-cache",
}


class SandboxError(RuntimeError):
    """trial.sandbox asks for something this machine cannot do (the message says what to do)."""


@dataclass(frozen=True)
class Sandbox:
    """How trial processes are confined here.

    Attributes:
        mode: "bwrap" or "none" (what `auto` resolved to).
        bwrap: the bwrap executable (None without the sandbox).
        note: why there is no sandbox, when `auto` found none ("" otherwise).
    """

    mode: str
    bwrap: str | None = None
    note: str = ""

    def command(self, argv: list[str], trial_dir: Path, read_only: Iterable[str | Path] = ()) -> list[str]:
        """`argv` wrapped to run in the sandbox with `trial_dir` writable (unchanged without one).

        Args:
            argv: the trial command.
            trial_dir: the one directory the trial may write (besides its private /tmp).
            read_only: paths the trial must read (the harness, the variant, the data, Python); those
                under /tmp are bound again over the private /tmp, which would hide them.
        """
        if self.mode != "bwrap":
            return list(argv)
        return [self.bwrap or "bwrap", *bwrap_arguments(trial_dir, read_only), "--", *argv]

    def environment(self, env: dict[str, str], trial_dir: Path | None = None) -> dict[str, str]:
        """Variables to set in the trial's environment `env`: its caches and temp dir.

        Inside bwrap they all point into the private /tmp. Without it the temp directory is the
        trial's own (`<trial_dir>/tmp`, made here), since the harness's confinement lets a variant
        write only in its trial directory, its temp directory and the compile caches; those stay
        shared between trials where torch and Triton keep them by default (in the system's temp
        directory), unless the user chose other places.
        """
        if self.mode == "bwrap":
            return dict(SANDBOX_CACHES)
        system_tmp = tempfile.gettempdir()
        user = os.getuid()
        out = {name: os.path.join(system_tmp, f"{prefix}_{user}")
               for name, prefix in (("TORCHINDUCTOR_CACHE_DIR", "torchinductor"), ("TRITON_CACHE_DIR", "triton"))
               if not env.get(name)}
        if trial_dir is not None:
            own = Path(trial_dir) / "tmp"
            own.mkdir(parents=True, exist_ok=True)
            out["TMPDIR"] = str(own)
        return out


def bwrap_arguments(trial_dir: Path | None, read_only: Iterable[str | Path] = ()) -> list[str]:
    """The bwrap options: read-only system, devices, private /tmp and /dev/shm, no network."""
    args = ["--die-with-parent", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    if os.geteuid() == 0:
        args += ["--cap-drop", "ALL"]  # root keeps every capability in the sandbox otherwise
    args += ["--ro-bind", "/", "/", "--dev-bind", "/dev", "/dev", "--tmpfs", "/dev/shm", "--proc", "/proc",
             "--tmpfs", SANDBOX_TMP, "--dir", SANDBOX_CACHES["TMPDIR"]]
    writable = _real(trial_dir) if trial_dir is not None else None
    for path in _under_tmp(read_only, writable):
        args += ["--ro-bind", path, path]
    if writable is not None:
        args += ["--bind", writable, writable, "--chdir", writable]
    return args


def resolve_sandbox(setting: str, *, which=shutil.which, probe=None) -> Sandbox:
    """The Sandbox for `trial.sandbox` on this machine (the bwrap probe runs once per process).

    Raises:
        ValueError: for a setting other than auto, bwrap or none.
        SandboxError: for `bwrap` when bubblewrap is missing or does not work here.
    """
    if setting not in MODES:
        raise UserError(f"trial.sandbox={setting!r} is not one of {', '.join(MODES)}")
    if setting == "none":
        return Sandbox("none")
    path = which("bwrap")
    problem = "bwrap is not installed (no `bwrap` on PATH)" if path is None else (probe or _probe)(path)
    if problem is None:
        return Sandbox("bwrap", bwrap=path)
    if setting == "bwrap":
        raise SandboxError(f"trial.sandbox=bwrap but {problem}; install bubblewrap (Debian/Ubuntu: "
                           "`apt-get install bubblewrap`; unprivileged users also need user namespaces "
                           "enabled), or run without the sandbox: trial.sandbox=none")
    note = f"{problem}; trials run without the sandbox (trial.sandbox=auto; install bubblewrap to confine them)"
    if note not in _announced:
        _announced.add(note)
        print(f"sandbox: {note}", file=sys.stderr, flush=True)
    return Sandbox("none", note=note)


_probed: dict[str, str | None] = {}
_announced: set[str] = set()


def _probe(bwrap: str) -> str | None:
    """None if bwrap runs `true` with the trial's kind of arguments, else what went wrong (cached)."""
    if bwrap not in _probed:
        try:
            done = subprocess.run([bwrap, *bwrap_arguments(None), "--", "true"], stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=PROBE_TIMEOUT)
            err = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            _probed[bwrap] = None if done.returncode == 0 else f"bubblewrap does not work here ({bwrap}: {err})"
        except (OSError, subprocess.TimeoutExpired) as exc:
            _probed[bwrap] = f"bubblewrap does not work here ({bwrap}: {exc})"
    return _probed[bwrap]


def _real(path: str | Path) -> str:
    return os.path.realpath(os.fspath(path))


def _under_tmp(paths: Iterable[str | Path], writable: str | None) -> list[str]:
    """The existing paths under /tmp, outermost first, without repeats, nested ones or the writable dir."""
    found = sorted({_real(p) for p in paths if p and os.path.exists(p)})
    kept: list[str] = []
    for p in found:
        if not p.startswith(SANDBOX_TMP + "/") or any(p == k or p.startswith(k + "/") for k in kept):
            continue
        if writable is not None and (p == writable or p.startswith(writable + "/")):
            continue
        kept.append(p)
    return kept
