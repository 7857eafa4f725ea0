"""Text corpora for the harness: ``load_documents(data)`` turns the data config into documents.

    from eval.data.sources import load_documents
    corpus = load_documents({"source": "shakespeare", "name": "shakespeare", ...})

``data`` is a plain dict (the ``data`` group of the config, already resolved); missing keys take
the defaults in ``DEFAULTS``. Sources:

- ``shakespeare``: tiny Shakespeare, a local ``path`` or downloaded from ``url``; one document per
  blank-line separated block (a speech).
- ``tinystories``: a TinyStories text file from ``url``; documents split on ``<|endoftext|>``.
- ``climbmix``: parquet shards (by default the public climbmix-400b-shuffle shards), the
  ``text_column`` of each row a document.
- ``files``: the user's ``.txt`` / ``.jsonl`` / ``.parquet`` files (globs allowed).
- ``pydocs``: the docstrings of the Python standard library, one document per module; needs no
  network, so it is the default and the source the tests and CPU smoke runs use.

Downloads go through ``eval.data.download.download`` into ``<cache_dir>/downloads/<name>/``.
"""

from __future__ import annotations

import ast
import fcntl
import glob
import hashlib
import json
import os
import platform
import re
import sysconfig
import time
import urllib.parse
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from eval.data import DataError
from eval.data.download import DownloadError, download
from eval.files import write_atomic

__all__ = ["Corpus", "DataError", "DownloadError", "SOURCES", "fingerprint_documents", "load_documents"]

SOURCES = ("shakespeare", "tinystories", "climbmix", "files", "pydocs")

SHAKESPEARE_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
TINYSTORIES_URL = (
    "https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main/TinyStoriesV2-GPT4-valid.txt"
)
# The public climbmix-400b-shuffle shards, numbered 00000..06542. Our own document-hash split
# decides val and test, so any shards can be used.
CLIMBMIX_URL_TEMPLATE = (
    "https://huggingface.co/datasets/karpathy/climbmix-400b-shuffle/resolve/main/shard_{index:05d}.parquet"
)
TINYSTORIES_SEPARATOR = "<|endoftext|>"

DEFAULTS: dict[str, Any] = {
    "name": "pydocs",
    "source": "pydocs",
    "path": None,
    "url": None,
    "urls": [],
    "url_template": None,
    "num_shards": 1,
    "sha256": None,
    "paths": [],
    "text_column": "text",
    "doc_separator": None,
    "max_chars": None,
    "cache_dir": "~/.cache/evoresearch",
}

FILE_SUFFIXES = (".txt", ".jsonl", ".parquet")
PYDOCS_MIN_CHARS = 200  # modules with fewer characters of docstrings are left out
PYDOCS_SKIP_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__"})
_PYDOCS_CACHE_SEPARATOR = "\x1e"  # ASCII record separator: never in a docstring we keep
_BLANK_LINES = re.compile(r"\n\s*\n")
_READ_CHARS = 1 << 22


@dataclass
class Corpus:
    """Documents of one data source, in a fixed order.

    Attributes:
        name: the data config's name (also the download cache folder).
        documents: the documents, each a non-empty string.
        fingerprint: sha256 hex over the documents in order (see ``fingerprint_documents``).
        origin: where they came from, for people: a path, a URL or a description.
    """

    name: str
    documents: list[str]
    fingerprint: str
    origin: str

    @property
    def num_chars(self) -> int:
        return sum(len(doc) for doc in self.documents)


def fingerprint_documents(documents: Iterable[str]) -> str:
    """sha256 hex over the documents in order, each prefixed by its UTF-8 byte length.

    The length prefix keeps document boundaries in the hash: ``["ab", "c"]`` and ``["a", "bc"]``
    differ.
    """
    hasher = hashlib.sha256()
    for doc in documents:
        data = doc.encode("utf-8", "surrogatepass")
        hasher.update(len(data).to_bytes(8, "little"))
        hasher.update(data)
    return hasher.hexdigest()


def load_documents(data: dict) -> Corpus:
    """Load the documents the data config names.

    Args:
        data: the data config as a plain dict (keys as in ``DEFAULTS``; missing ones take those
            defaults; ``val_fraction`` / ``test_fraction`` and other keys are ignored here).

    Returns:
        The corpus, cut at ``max_chars`` when set: documents are added until at least that many
        characters are collected (the last one is kept whole).

    Raises:
        ValueError: ``source`` is not one of ``SOURCES``.
        DataError: a file, URL, column or field the config names is missing or unusable; the
            message names it and says what to do (``DownloadError`` for failed downloads).
    """
    cfg = {**DEFAULTS, **dict(data)}
    source = cfg["source"]
    if source not in _LOADERS:
        raise DataError(f"unknown data.source {source!r}; valid sources: {', '.join(SOURCES)}")
    name = str(cfg["name"])
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise DataError(f"data.name {name!r} must be a plain name (letters, digits, '.', '_', '-'): it names a cache folder")
    max_chars = cfg["max_chars"]
    if max_chars is not None and (not isinstance(max_chars, int) or max_chars <= 0):
        raise DataError(f"data.max_chars must be a positive integer or null, not {max_chars!r}")

    documents, origin = _LOADERS[source](cfg)
    documents = _take(documents, max_chars)
    if not documents:
        raise DataError(f"data source {source!r} produced no documents from {origin}; check that it holds text")
    corpus = Corpus(name=name, documents=documents, fingerprint=fingerprint_documents(documents), origin=origin)
    print(f"data: {name} ({source}): {len(documents):,} documents, {corpus.num_chars:,} chars from {origin}")
    return corpus


# ---------------------------------------------------------------------------
# Sources: each returns (iterator of documents, origin)
# ---------------------------------------------------------------------------


def _shakespeare(cfg: dict) -> tuple[Iterator[str], str]:
    if cfg["path"] is not None:
        path = Path(os.path.expanduser(str(cfg["path"])))
        if not path.is_file():
            raise DataError(
                f"shakespeare: data.path={cfg['path']} does not exist ({path}). Fix the path, or set "
                f"data.path=null to download {cfg['url'] or SHAKESPEARE_URL}."
            )
        return _split_text_file(path, _BLANK_LINES), str(path)
    url = cfg["url"] or SHAKESPEARE_URL
    path = download(url, _download_dest(cfg, url), sha256=cfg["sha256"])
    return _split_text_file(path, _BLANK_LINES), url


def _tinystories(cfg: dict) -> tuple[Iterator[str], str]:
    url = cfg["url"] or TINYSTORIES_URL
    path = download(url, _download_dest(cfg, url), sha256=cfg["sha256"])
    return _split_text_file(path, re.compile(re.escape(TINYSTORIES_SEPARATOR))), url


def _climbmix(cfg: dict) -> tuple[Iterator[str], str]:
    urls = _as_list(cfg["urls"], "data.urls")
    if urls:
        origin = ", ".join(urls) if len(urls) <= 3 else f"{urls[0]}, ... ({len(urls)} shards)"
    else:
        template = cfg["url_template"] or CLIMBMIX_URL_TEMPLATE
        num_shards = cfg["num_shards"]
        if not isinstance(num_shards, int) or num_shards < 1:
            raise DataError(f"data.num_shards must be a positive integer, not {num_shards!r}")
        urls = _shard_urls(template, num_shards)
        origin = f"{template} (indexes 0..{num_shards - 1})"
    dests = [_download_dest(cfg, url) for url in urls]
    if len(set(dests)) != len(dests):
        raise DataError(
            f"climbmix: two shard URLs end in the same file name, so they would share a cache file: {urls}. "
            f"Give each shard a distinct file name."
        )
    if cfg["sha256"] is not None and len(urls) > 1:
        raise DataError(
            f"data.sha256 applies to a single file but climbmix has {len(urls)} shards; "
            f"set data.sha256=null (each shard's size is still verified)."
        )
    column = cfg["text_column"]

    def documents() -> Iterator[str]:
        for url, dest in zip(urls, dests):  # one shard at a time, so max_chars saves downloads
            path = download(url, dest, sha256=cfg["sha256"])
            yield from _parquet_texts(path, column, hint=f"downloaded from {url}; delete it to fetch it again")

    return documents(), origin


def _files(cfg: dict) -> tuple[Iterator[str], str]:
    paths = _expand_paths(_as_list(cfg["paths"], "data.paths"))
    column = cfg["text_column"]
    separator = cfg["doc_separator"]
    if separator is not None and not (isinstance(separator, str) and separator):
        raise DataError(f"data.doc_separator must be a non-empty string or null, not {separator!r}")
    pattern = _BLANK_LINES if separator is None else re.compile(re.escape(separator))

    def documents() -> Iterator[str]:
        for path in paths:
            suffix = path.suffix.lower()
            if suffix == ".txt":
                yield from _split_text_file(path, pattern)
            elif suffix == ".jsonl":
                yield from _jsonl_texts(path, column)
            else:
                yield from _parquet_texts(path, column, hint="one of data.paths")

    origin = ", ".join(map(str, paths)) if len(paths) <= 3 else f"{paths[0]}, ... ({len(paths)} files)"
    return documents(), origin


def _pydocs(cfg: dict) -> tuple[Iterator[str], str]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    version = platform.python_version()
    key = hashlib.sha256(str(stdlib).encode()).hexdigest()[:8]
    cache = _cache_dir(cfg) / "pydocs" / f"stdlib-docstrings-{platform.python_implementation()}-{version}-{key}.txt"
    origin = f"docstrings of the Python {version} standard library ({stdlib})"
    if cache.is_file():
        return iter(_read_text(cache).split(_PYDOCS_CACHE_SEPARATOR)), origin
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(cache.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one writer of the cache (its temporary name is fixed); the others reuse it
        if cache.is_file():
            return iter(_read_text(cache).split(_PYDOCS_CACHE_SEPARATOR)), origin
        t0 = time.perf_counter()
        documents = stdlib_docstrings(stdlib)
        write_atomic(cache, _PYDOCS_CACHE_SEPARATOR.join(documents))
    print(
        f"data: pydocs: {len(documents):,} modules, {sum(map(len, documents)):,} chars of docstrings "
        f"in {time.perf_counter() - t0:.1f}s; cached at {cache}"
    )
    return iter(documents), origin


def _read_text(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


_LOADERS: dict[str, Callable[[dict], tuple[Iterator[str], str]]] = {
    "shakespeare": _shakespeare,
    "tinystories": _tinystories,
    "climbmix": _climbmix,
    "files": _files,
    "pydocs": _pydocs,
}


def stdlib_docstrings(stdlib: Path) -> list[str]:
    """One document per standard-library module: its docstrings, in source order, joined by blank lines.

    Modules are ordered by path relative to ``stdlib``; test suites, IDLE, lib2to3 and
    site-packages are left out, and so are files that do not parse and modules with fewer than
    ``PYDOCS_MIN_CHARS`` characters of docstrings.
    """
    files: list[Path] = []
    for folder, dirs, names in os.walk(stdlib):
        dirs[:] = [d for d in dirs if d not in PYDOCS_SKIP_DIRS]
        files.extend(Path(folder, n) for n in names if n.endswith(".py"))
    files.sort(key=lambda p: p.relative_to(stdlib).as_posix())
    documents = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences in old modules
        for path in files:
            try:
                tree = ast.parse(path.read_bytes(), filename=str(path))
            except (SyntaxError, ValueError, OSError):
                continue
            text = "\n\n".join(_docstrings(tree))
            if len(text) >= PYDOCS_MIN_CHARS:
                text = text.replace(_PYDOCS_CACHE_SEPARATOR, "")
                documents.append(text.encode("utf-8", "replace").decode("utf-8"))
    return documents


def _docstrings(node: ast.AST) -> Iterator[str]:
    """Docstrings of a module, class or function and of the definitions inside it, in source order."""
    if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        doc = ast.get_docstring(node, clean=True)
        if doc and doc.strip():
            yield doc.strip()
    for field in ("body", "orelse", "finalbody", "handlers", "cases"):
        children = getattr(node, field, None)
        if isinstance(children, list):  # statement blocks only; expressions hold no definitions
            for child in children:
                yield from _docstrings(child)


# ---------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------


def _split_text_file(path: Path, separator: re.Pattern) -> Iterator[str]:
    """Stream a UTF-8 text file as stripped, non-empty documents between matches of ``separator``."""
    rest = ""
    try:
        with open(path, encoding="utf-8") as f:  # universal newlines: \r\n reads as \n
            while chunk := f.read(_READ_CHARS):
                pieces = separator.split(rest + chunk)
                rest = pieces.pop()
                for piece in pieces:
                    if doc := piece.strip():
                        yield doc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc}); convert it to UTF-8 or remove it from the data config") from exc
    if doc := rest.strip():
        yield doc


def _jsonl_texts(path: Path, column: str) -> Iterator[str]:
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(
                        f"{path}, line {lineno}: not valid JSON ({exc.msg}: column {exc.colno}); each line of a .jsonl "
                        f"file must be one JSON object"
                    ) from exc
                if not isinstance(record, dict) or column not in record:
                    fields = sorted(record) if isinstance(record, dict) else type(record).__name__
                    raise DataError(
                        f"{path}, line {lineno}: no field {column!r} (data.text_column); the line has "
                        f"{fields}. Set data.text_column to the field that holds the text."
                    )
                text = record[column]
                if not isinstance(text, str):
                    raise DataError(
                        f"{path}, line {lineno}: field {column!r} is {type(text).__name__}, not a "
                        f"string; data.text_column must name a text field"
                    )
                if text.strip():
                    yield text
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc}); convert it to UTF-8") from exc


def _parquet_texts(path: Path, column: str, *, hint: str) -> Iterator[str]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path} is not a readable parquet file ({exc}); it was {hint}") from exc
    schema = parquet.schema_arrow
    if column not in schema.names:
        raise DataError(
            f"{path} has no column {column!r} (data.text_column); its columns are {schema.names}. "
            f"Set data.text_column to the one that holds the text."
        )
    kind = schema.field(column).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        raise DataError(f"{path}: column {column!r} holds {kind}, not strings; data.text_column must name a text column")
    for group in range(parquet.num_row_groups):
        for text in parquet.read_row_group(group, columns=[column]).column(0).to_pylist():
            if text is not None and text.strip():
                yield text


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _take(documents: Iterator[str], max_chars: int | None) -> list[str]:
    """Collect documents until ``max_chars`` characters (None: all of them); closes the iterator."""
    taken: list[str] = []
    total = 0
    try:
        for doc in documents:
            taken.append(doc)
            total += len(doc)
            if max_chars is not None and total >= max_chars:
                break
    finally:
        close = getattr(documents, "close", None)
        if close is not None:
            close()
    return taken


def _shard_urls(template: str, num_shards: int) -> list[str]:
    if "{index" not in template:
        raise DataError(
            f"data.url_template {template!r} has no {{index}} placeholder; write it like "
            f"'https://host/path/shard_{{index:05d}}.parquet'"
        )
    try:
        return [template.format(index=i) for i in range(num_shards)]
    except (KeyError, IndexError, ValueError) as exc:
        raise DataError(
            f"data.url_template {template!r} cannot be filled in ({exc!r}); its only placeholder must be "
            f"{{index}} (with an optional format such as {{index:05d}})"
        ) from exc


def _expand_paths(entries: list[str]) -> list[Path]:
    if not entries:
        raise DataError("data.source=files needs data.paths: a list of .txt / .jsonl / .parquet files or globs")
    paths: list[Path] = []
    for entry in entries:
        pattern = os.path.expanduser(str(entry))
        if any(ch in pattern for ch in "*?["):
            matches = [Path(p) for p in sorted(glob.glob(pattern, recursive=True)) if os.path.isfile(p)]
            if not matches:
                raise DataError(f"data.paths entry {entry!r} matches no files; fix the pattern or remove it")
        else:
            path = Path(pattern)
            if not path.exists():
                raise DataError(f"data.paths entry {entry!r} does not exist ({path.resolve()}); fix the path or remove it")
            if not path.is_file():
                raise DataError(f"data.paths entry {entry!r} is a folder; name its files, e.g. '{entry}/*.txt'")
            matches = [path]
        for path in matches:
            if path.suffix.lower() not in FILE_SUFFIXES:
                raise DataError(
                    f"{path} (from data.paths entry {entry!r}) has an unsupported extension; "
                    f"supported: {', '.join(FILE_SUFFIXES)}"
                )
            if path not in paths:
                paths.append(path)
    return paths


def _as_list(value: Any, key: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [str(value)]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    raise DataError(f"{key} must be a list of strings, not {value!r}")


def _cache_dir(cfg: dict) -> Path:
    return Path(os.path.expanduser(str(cfg["cache_dir"])))


def _download_dest(cfg: dict, url: str) -> Path:
    filename = PurePosixPath(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    if not filename:
        raise DataError(f"cannot name a cache file after {url!r}: the URL has no file name at the end of its path")
    return _cache_dir(cfg) / "downloads" / str(cfg["name"]) / filename
