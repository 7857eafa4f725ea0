"""Runtime confinement of a variant: an audit hook that refuses what a variant may not do.

`eval/trial.py` installs it before the variant is imported; from then on, in this process:

- opening a file for writing (or removing, renaming, linking, creating a directory) is refused
  outside the trial directory, the working directory and the temp directory;
- opening anything in the prepared-data directory (the validation and test token files above all)
  or the data cache's downloads and other prepared keys (their raw text holds the val and test
  documents) is refused, except the training split and the tokenizer; the harness lifts this for
  its own evaluation with `permit`, on its own thread only;
- socket connect, bind and sendto are refused: a trial has no business on the network.

A refusal raises PermissionError naming the rule, and is remembered: a variant that catches the
exception is still rejected (`Confinement.violations`). This is defence in depth, also for
`python -m search trial` on a directory that never went through the static guards: it sees only
what Python audits, so ctypes, a subprocess, or os calls relative to a directory descriptor get
past it. Bubblewrap (`search/sandbox.py`, trial.sandbox) is the wall around the whole process tree.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

# Flags that make an open a write (O_RDONLY is 0, so a read is whatever has none of them).
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# Events that change the file system, and the positions of their path arguments.
CHANGE_EVENTS = {
    "os.remove": (0,), "os.rename": (0, 1), "os.mkdir": (0,), "os.rmdir": (0,), "os.symlink": (1,),
    "os.link": (1,), "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,),
    "shutil.rmtree": (0,),
}
SOCKET_EVENTS = {"socket.connect": "opened a network connection", "socket.bind": "bound a network address",
                 "socket.sendto": "sent a network packet", "socket.sendmsg": "sent a network packet"}
WATCHED = frozenset({"open", *CHANGE_EVENTS, *SOCKET_EVENTS})
PREFIX = "evoresearch confinement"


class Confinement:
    """The rules of one trial process; an instance is the audit hook.

    Args:
        write_roots: directories under which the variant may write.
        protected: directory -> what it holds, in words ("the validation data"); nothing in it may be
            opened. A more specific (longer) directory or file wins over its parent.
        readable: files inside protected directories that may still be opened (the training split
            and the tokenizer, which the harness has already loaded).
    """

    def __init__(self, write_roots: list[str | Path], protected: dict[str | Path, str],
                 readable: list[str | Path] = ()):
        self.write_roots = tuple(sorted({_real(p) for p in write_roots}))
        self.protected = sorted(((_real(p), label) for p, label in protected.items()), key=lambda x: -len(x[0]))
        self.readable = frozenset(_real(p) for p in readable)
        self.violations: list[str] = []
        self._permitted: dict[int, frozenset[str]] = {}  # thread id -> files it may open
        self._lock = threading.Lock()

    # --- the rules, as a pure check (what the hook refuses and why)
    def check(self, event: str, args: tuple[Any, ...]) -> str | None:
        """What the variant did wrong with this audit event, in words, or None if it is allowed."""
        if event == "open":
            path, flags = args[0], args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            if isinstance(args[1], str) and any(c in args[1] for c in "wax+"):
                flags |= os.O_WRONLY  # builtins.open passes its mode string as well as the flags
            real = _path(path)
            if real is None:
                return None
            label = self._protected_label(real)
            if label is not None:
                return f"the variant tried to read {label} ({real})"
            if flags & WRITE_FLAGS and not self._writable(real):
                return f"the variant wrote outside its trial directory ({real})"
            return None
        if event in CHANGE_EVENTS:
            for i in CHANGE_EVENTS[event]:
                real = _path(args[i]) if i < len(args) else None
                if real is None:
                    continue
                label = self._protected_label(real)
                if label is not None:
                    return f"the variant tried to change {label} ({real})"
                if not self._writable(real):
                    return f"the variant wrote outside its trial directory ({real}: {event})"
            if event == "os.link":  # a hard link inside the trial directory to a protected file reads it
                real = _path(args[0])
                label = self._protected_label(real) if real is not None else None
                if label is not None:
                    return f"the variant tried to read {label} ({real})"
            return None
        if event in SOCKET_EVENTS:
            return f"the variant {SOCKET_EVENTS[event]} ({_address(args[1] if len(args) > 1 else None)})"
        return None

    def _protected_label(self, real: str) -> str | None:
        if real in self.readable or real in self._permitted.get(threading.get_ident(), ()):
            return None
        for root, label in self.protected:
            if real == root or real.startswith(root + os.sep):
                return label
        return None

    def _writable(self, real: str) -> bool:
        if real == os.devnull:
            return True
        return any(real == root or real.startswith(root + os.sep) for root in self.write_roots)

    # --- the hook
    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if event not in WATCHED:  # most audited events (imports, compile, getframe) end here, cheaply
            return
        problem = self.check(event, args)
        if problem is None:
            return
        with self._lock:
            self.violations.append(problem)
        raise PermissionError(f"{PREFIX}: {problem}; a trial may write only in its trial directory and "
                              "the temp directory, read no evaluation data and use no network")

    @contextlib.contextmanager
    def permit(self, *paths: str | Path) -> Iterator[None]:
        """Let the calling thread (only) open these protected files: the harness's own evaluation."""
        ident = threading.get_ident()
        before = self._permitted.get(ident, frozenset())
        self._permitted[ident] = before | {_real(p) for p in paths}
        try:
            yield
        finally:
            self._permitted[ident] = before

    def reason(self) -> str:
        """The first violation (and how many more), for the trial record; "" if none."""
        if not self.violations:
            return ""
        more = len(self.violations) - 1
        return self.violations[0] + (f" (and {more} more refused operation{'s' if more > 1 else ''})" if more else "")


def for_trial(spec: dict[str, Any], trial_dir: Path) -> Confinement:
    """The rules for the trial described by `spec` (data paths from the prepared-data spec)."""
    data = spec["data"]
    prepared = Path(data["train"]).parent
    protected: dict[str | Path, str] = {
        prepared: "the prepared data other than the training split",
        data["val"]: "the validation data",
        data["test"]: "the test data",
    }
    if prepared.parent.name == "prepared":  # <cache_dir>/prepared/<key>/: the cache's other parts hold raw text
        root = prepared.parent.parent
        for part in ("prepared", "downloads", "pydocs"):  # what eval/prepare.py and eval/sources.py write there
            protected[root / part] = "the data cache (its raw text holds the validation and test documents)"
    # Caches a GPU trial writes (torch.compile, Triton), where the user or the runner put them.
    caches = [os.environ[k] for k in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "XDG_CACHE_HOME", "CUDA_CACHE_PATH")
              if os.environ.get(k)]
    return Confinement(
        write_roots=[trial_dir, Path.cwd(), tempfile.gettempdir(), *caches],
        protected=protected,
        readable=[data["train"], data["tokenizer"]],
    )


def install(confinement: Confinement) -> Confinement:
    """Add the audit hook to this process (for good: audit hooks cannot be removed).

    Bytecode writing is turned off first: a `.pyc` written beside a module outside the trial directory
    would be a refused write of the harness's own making (and a way to plant code for a later trial).
    """
    sys.dont_write_bytecode = True
    sys.addaudithook(confinement)
    return confinement


def _real(path: str | Path) -> str:
    return os.path.realpath(os.path.abspath(os.fspath(path)))


def _path(path: Any) -> str | None:
    """The resolved path an audited call names, or None for a file descriptor or something odd."""
    if isinstance(path, int) or path is None:
        return None
    try:
        return _real(os.fsdecode(os.fspath(path)))
    except (TypeError, ValueError):
        return None


def _address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(address, (bytes, bytearray)):
        return os.fsdecode(bytes(address)) or "an abstract socket"
    return str(address)
