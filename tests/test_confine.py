"""The variant's confinement (eval/confine.py): which audited operations it refuses, and the hook for real."""

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from search import PROJECT_ROOT
from eval.confine import Confinement, for_trial


@pytest.fixture
def layout(tmp_path):
    """A trial directory, a temp directory and a data cache laid out as eval/data/prepare.py makes it."""
    trial, tmp = tmp_path / "trial", tmp_path / "tmp"
    prepared = tmp_path / "cache" / "prepared" / "key"
    for d in (trial, tmp, prepared, tmp_path / "cache" / "downloads"):
        d.mkdir(parents=True)
    for name in ("train.npz", "val.npz", "test.npz", "tokenizer.json", "meta.json"):
        (prepared / name).write_bytes(b"x")
    (tmp_path / "cache" / "downloads" / "corpus.txt").write_text("raw text")
    data = {"train": str(prepared / "train.npz"), "val": str(prepared / "val.npz"),
            "test": str(prepared / "test.npz"), "tokenizer": str(prepared / "tokenizer.json")}
    spec = {"data": data}
    return tmp_path, spec


def confinement(layout) -> Confinement:
    root, spec = layout
    data = spec["data"]
    prepared = Path(data["train"]).parent
    return Confinement(
        write_roots=[root / "trial", root / "tmp"],
        protected={prepared: "the prepared data other than the training split", data["val"]: "the validation data",
                   data["test"]: "the test data", root / "cache": "the data cache"},
        readable=[data["train"], data["tokenizer"]],
    )


def opened(path, flags=os.O_RDONLY, mode=None):
    return ("open", (path, mode, flags))


def test_writes_only_in_the_trial_and_temp_directories(layout):
    root, _ = layout
    c = confinement(layout)
    assert c.check(*opened(root / "trial" / "out.txt", os.O_WRONLY | os.O_CREAT)) is None
    assert c.check(*opened(str(root / "tmp" / "x" / "y.bin"), mode="wb")) is None
    assert c.check(*opened(os.devnull, os.O_RDWR)) is None
    problem = c.check(*opened(root / "elsewhere.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC))
    assert problem == f"the variant wrote outside its trial directory ({root / 'elsewhere.txt'})"
    assert c.check(*opened(str(root / "elsewhere.txt"), mode="a")) is not None  # the mode string counts too
    assert c.check(*opened(root / "elsewhere.txt")) is None  # reading is not writing
    assert c.check(*opened(3, os.O_WRONLY)) is None  # a descriptor was checked when it was opened


def test_paths_are_resolved_before_they_are_judged(layout, monkeypatch):
    root, _ = layout
    c = confinement(layout)
    (root / "trial" / "escape").symlink_to(root)  # a link inside the trial directory pointing out of it
    assert "outside" in c.check(*opened(root / "trial" / "escape" / "x.txt", os.O_WRONLY | os.O_CREAT))
    assert "outside" in c.check(*opened(str(root / "trial" / ".." / "x.txt"), os.O_WRONLY))
    monkeypatch.chdir(root / "trial")
    assert c.check(*opened("relative.txt", os.O_WRONLY | os.O_CREAT)) is None
    assert "outside" in c.check(*opened("../relative.txt", os.O_WRONLY | os.O_CREAT))


def test_the_evaluation_data_cannot_be_opened(layout):
    root, spec = layout
    c = confinement(layout)
    data = spec["data"]
    assert c.check(*opened(data["val"])) == f"the variant tried to read the validation data ({data['val']})"
    assert "the test data" in c.check(*opened(data["test"]))
    assert "the prepared data other than the training split" in c.check(*opened(Path(data["val"]).parent / "meta.json"))
    assert "the data cache" in c.check(*opened(root / "cache" / "downloads" / "corpus.txt"))
    assert c.check(*opened(data["train"])) is None and c.check(*opened(data["tokenizer"])) is None
    (root / "trial" / "v").symlink_to(data["val"])  # a link to it is the same file
    assert "validation" in c.check(*opened(root / "trial" / "v"))
    assert "validation" in c.check("os.link", (data["val"], str(root / "trial" / "hard"), None, None))
    assert "validation" in c.check("os.rename", (data["val"], str(root / "trial" / "moved"), None, None))


def test_changing_files_outside_is_refused(layout):
    root, _ = layout
    c = confinement(layout)
    outside, inside = str(root / "x"), str(root / "trial" / "x")
    assert "outside" in c.check("os.remove", (outside, None))
    assert c.check("os.remove", (inside, None)) is None
    assert "outside" in c.check("os.rename", (inside, outside, None, None))
    assert "outside" in c.check("os.mkdir", (outside, 0o777, None))
    assert "outside" in c.check("shutil.rmtree", (outside, None))
    assert "outside" in c.check("os.symlink", ("/etc/passwd", outside, None))
    assert c.check("os.symlink", (outside, inside, None)) is None  # where a link points is not written
    assert c.check("os.chmod", (5, 0o777, None)) is None


def test_network_is_refused(layout):
    c = confinement(layout)
    assert c.check("socket.connect", (None, ("127.0.0.1", 8080))) == "the variant opened a network connection (127.0.0.1:8080)"
    assert c.check("socket.connect", (None, ("::1", 80, 0, 0))) == "the variant opened a network connection ([::1]:80)"
    assert "bound a network address" in c.check("socket.bind", (None, ("0.0.0.0", 0)))
    assert "sent a network packet" in c.check("socket.sendto", (None, ("8.8.8.8", 53)))
    assert c.check("socket.getaddrinfo", ("example.com", 80, 0, 0, 0)) is None


def test_the_hook_raises_and_remembers(layout):
    root, _ = layout
    c = confinement(layout)
    c("import", ("os", None, [], [], []))  # unwatched events pass untouched
    with pytest.raises(PermissionError, match="evoresearch confinement: the variant wrote outside"):
        c(*opened(root / "x", os.O_WRONLY))
    with pytest.raises(PermissionError):
        c("socket.connect", (None, ("127.0.0.1", 1)))
    assert c.reason() == f"the variant wrote outside its trial directory ({root / 'x'}) (and 1 more refused operation)"


def test_permit_lets_only_the_calling_thread_read(layout):
    _, spec = layout
    c = confinement(layout)
    val = spec["data"]["val"]
    seen = []
    with c.permit(val):
        assert c.check(*opened(val)) is None
        other = threading.Thread(target=lambda: seen.append(c.check(*opened(val))))
        other.start()
        other.join()
        assert "test data" in c.check(*opened(spec["data"]["test"]))
    assert seen and "validation" in seen[0]
    assert "validation" in c.check(*opened(val))


def test_for_trial_protects_the_data_and_the_raw_text_of_the_cache(layout, monkeypatch):
    root, spec = layout
    (root / "cache" / "other.txt").write_text("a cache_dir may be any directory, even the home directory")
    monkeypatch.delenv("TRITON_CACHE_DIR", raising=False)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(root / "inductor"))
    c = for_trial(spec, root / "trial")
    assert "validation" in c.check(*opened(spec["data"]["val"]))
    assert "data cache" in c.check(*opened(root / "cache" / "downloads" / "corpus.txt"))
    assert "data cache" in c.check(*opened(root / "cache" / "prepared" / "another-key" / "val.npz"))
    assert c.check(*opened(root / "cache" / "other.txt")) is None
    assert c.check(*opened(root / "inductor" / "k.py", os.O_WRONLY | os.O_CREAT)) is None
    assert c.check(*opened(root / "trial" / "ckpt.pt", os.O_WRONLY | os.O_CREAT)) is None


HOOKED = """
import json, os, socket, sys
from eval.confine import Confinement, install
trial, val, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = install(Confinement([trial], {val: "the validation data"}))
out = {}
for name, act in [
    ("write_in", lambda: open(os.path.join(trial, "ok.txt"), "w").close()),
    ("write_out", lambda: open(os.path.join(os.path.dirname(trial), "planted.txt"), "w").close()),
    ("read_val", lambda: open(val, "rb").read()),
    ("connect", lambda: socket.create_connection(("127.0.0.1", port), timeout=2)),
]:
    try:
        act()
        out[name] = "done"
    except PermissionError as exc:
        out[name] = str(exc)
out["violations"] = c.violations
print(json.dumps(out))
"""


def test_installed_hook_refuses_real_operations(tmp_path):
    trial = tmp_path / "trial"
    trial.mkdir()
    val = tmp_path / "val.npz"
    val.write_bytes(b"secret")
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    try:
        done = subprocess.run([sys.executable, "-c", HOOKED, str(trial), str(val), str(server.getsockname()[1])],
                              capture_output=True, text=True, timeout=60, cwd=trial,
                              env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)))
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        with pytest.raises(BlockingIOError):
            server.accept()  # nobody connected
    finally:
        server.close()
    assert out["write_in"] == "done" and (trial / "ok.txt").exists()
    assert "wrote outside its trial directory" in out["write_out"] and not (tmp_path / "planted.txt").exists()
    assert "tried to read the validation data" in out["read_val"]
    assert "opened a network connection (127.0.0.1:" in out["connect"]
    assert len(out["violations"]) == 3
