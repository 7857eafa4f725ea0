"""Prepare a data source once: documents -> split -> tokenizer -> token arrays, cached.

The cache lives in `<data.cache_dir>/prepared/<key>/`, where the key is a hash of everything
that decides the result (the data settings, the vocabulary size, and the size and modification
time of local input files). A directory counts as prepared only once its `meta.json` exists,
which is written last; a crash half-way leaves nothing that a later run would trust.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval.data.dataloader import TokenStore
from eval.data.split import SPLITS, split_documents
from eval.data.tokenizer import save_tokenizer, train_tokenizer
from eval.files import write_atomic
from eval.data import DataError

PREPARE_VERSION = 1  # bump when the preparation changes what it produces
TOKENIZER_MAX_CHARS = 100_000_000  # characters of training text the BPE is trained on at most

_KEY_FIELDS = (
    "source", "path", "url", "urls", "url_template", "num_shards", "sha256", "paths",
    "text_column", "doc_separator", "max_chars", "val_fraction", "test_fraction",
)


@dataclass
class PreparedData:
    """Paths of a prepared data source and what it holds."""

    directory: Path
    meta: dict[str, Any]

    def paths(self) -> dict[str, str]:
        d = self.directory
        return {"tokenizer": str(d / "tokenizer.json"), **{s: str(d / f"{s}.npz") for s in SPLITS}}

    def check_evaluation(self, trial: dict[str, Any]) -> None:
        """Raise ValueError, before anything trains, when the val or test split is too small for the
        preset's evaluation (trial.eval_tokens, trial.test_tokens at trial.seq_len). A trial would
        otherwise train its whole budget first and then fail, and so would every trial of a search."""
        from eval.data.dataloader import eval_rows
        from eval.data.tokenizer import load_tokenizer

        bos_id = load_tokenizer(self.directory / "tokenizer.json").bos_id
        for split, key in (("val", "eval_tokens"), ("test", "test_tokens")):
            store = TokenStore.load(self.directory / f"{split}.npz")
            try:
                eval_rows(store, bos_id, trial["seq_len"], trial[key], split)
            except ValueError as exc:
                raise DataError(f"data {self.meta.get('name')} is too small for the {trial.get('name')} preset's "
                                 f"evaluation: {exc}") from None

    def spec(self) -> dict[str, Any]:
        """What a trial spec needs: the file paths and a summary for the record."""
        info = {k: self.meta[k] for k in ("name", "source", "fingerprint", "vocab_size", "tokens", "documents")}
        return {**self.paths(), "info": info}


def cache_key(data: dict[str, Any], vocab_size: int) -> str:
    """Hash of the settings and inputs that decide the prepared data."""
    material: dict[str, Any] = {k: data.get(k) for k in _KEY_FIELDS}
    material["vocab_size"] = vocab_size
    material["version"] = PREPARE_VERSION
    local = ([data["path"]] if data.get("path") else []) + list(data.get("paths") or [])
    stats = []
    for pattern in local:
        for p in sorted(glob.glob(os.path.expanduser(pattern))) or [pattern]:
            st = os.stat(p) if os.path.exists(p) else None
            stats.append([os.path.abspath(p), st.st_size if st else None, st.st_mtime_ns if st else None])
    material["local_files"] = stats
    if data.get("source") == "pydocs":
        material["python"] = platform.python_version()
    blob = json.dumps(material, sort_keys=True, default=str).encode()
    return f"{data.get('name', data.get('source'))}-v{vocab_size}-{hashlib.sha256(blob).hexdigest()[:16]}"


def prepare_data(data: dict[str, Any], vocab_size: int, log=print) -> PreparedData:
    """Prepare (or find in the cache) the tokenizer and token arrays of a data source.

    Args:
        data: the resolved `data` config (see search.config.DataConfig).
        vocab_size: BPE vocabulary size (special tokens come on top).
        log: where progress lines go.

    Returns:
        PreparedData with the cache directory and its meta (documents, tokens per split...).

    Raises:
        eval.data.sources.DataError: for a source that cannot be read or downloaded (names it).
        DataError: for a split that comes out empty.

    A preparation that fails leaves nothing in the cache.
    """
    root = Path(os.path.expanduser(data["cache_dir"])) / "prepared"
    directory = root / cache_key(data, vocab_size)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one preparer per key; the others wait, then reuse
        meta_path = directory / "meta.json"
        if meta_path.exists():
            return PreparedData(directory, json.loads(meta_path.read_text()))
        directory.mkdir(parents=True, exist_ok=True)  # a failed preparer before us removed it
        try:
            return _prepare(data, vocab_size, directory, log)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)  # no half entry, no empty folder in the cache
            raise


def _prepare(data: dict[str, Any], vocab_size: int, directory: Path, log) -> PreparedData:
    """Prepare the cache entry `directory` (its lock held); meta.json, written last, completes it."""
    from eval.data.sources import load_documents

    meta_path = directory / "meta.json"
    t0 = time.perf_counter()
    log(f"data: preparing {data.get('name')} ({data['source']}) into {directory}")
    corpus = load_documents(data)
    split = split_documents(corpus.documents, data["val_fraction"], data["test_fraction"])
    counts = split.counts()
    for name, n in counts.items():
        if n == 0 and (name == "train" or data[f"{name}_fraction"] > 0):
            raise DataError(
                f"the {name} split of data source {data.get('name')} is empty ({corpus.origin} gave "
                f"{len(corpus.documents)} documents); use a larger corpus or change data.val_fraction / "
                "data.test_fraction"
            )
    log(f"data: {len(corpus.documents)} documents split {counts} in {time.perf_counter() - t0:.1f}s")
    tok = train_tokenizer(_capped(split.train, TOKENIZER_MAX_CHARS), vocab_size,
                          name=f"evoresearch-{directory.name}")
    save_tokenizer(tok, directory / "tokenizer.json")
    log(f"data: tokenizer of {tok.vocab_size} tokens trained in {time.perf_counter() - t0:.1f}s")
    tokens = {}
    for name in SPLITS:
        store = TokenStore.from_docs(tok.encode_batch(getattr(split, name)), tok.vocab_size)
        tmp = directory / f"{name}.npz.tmp"
        store.save(tmp)
        os.replace(tmp, directory / f"{name}.npz")
        tokens[name] = store.num_tokens
    meta = {
        "name": data.get("name"), "source": data["source"], "origin": corpus.origin,
        "fingerprint": corpus.fingerprint, "vocab_size": tok.vocab_size, "documents": counts,
        "tokens": tokens, "chars": sum(len(d) for d in corpus.documents),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    write_atomic(meta_path, json.dumps(meta, indent=2).encode())
    log(f"data: tokens {tokens} ready in {meta['seconds']:.1f}s")
    return PreparedData(directory, meta)


def _capped(docs: list[str], max_chars: int):
    total = 0
    for doc in docs:
        if total >= max_chars:
            return
        total += len(doc)
        yield doc
