"""BPE tokenizer: trained with rustbpe, used through tiktoken, saved as plain JSON.

rustbpe trains the merges; it cannot save itself, so the merges are written out as JSON and
loaded back into a `tiktoken.Encoding` built in memory (no download, no registered name).
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import tiktoken

from eval.files import write_atomic
from eval.data import DataError

BOS = "<|bos|>"
SPECIAL_TOKENS = (BOS,)


@dataclass
class Tokenizer:
    """A trained BPE tokenizer.

    Attributes:
        encoding: the tiktoken Encoding doing the work.
        name: a distinctive name (the encoding pickles and caches by it).
    """

    encoding: tiktoken.Encoding
    name: str
    pattern: str
    pieces: list[bytes]  # the byte string of each ordinary token id, by id

    @property
    def vocab_size(self) -> int:
        """Number of token ids, special tokens included."""
        return self.encoding.n_vocab

    @property
    def bos_id(self) -> int:
        return self.encoding.encode_single_token(BOS)

    def encode(self, text: str) -> list[int]:
        """Token ids of ordinary text (special-token strings in it are plain text)."""
        return self.encoding.encode_ordinary(text)

    def encode_batch(self, texts: list[str], num_threads: int = 2) -> list[list[int]]:
        return self.encoding.encode_ordinary_batch(texts, num_threads=num_threads)

    def decode(self, ids: Iterable[int]) -> str:
        return self.encoding.decode(list(ids))

    def token_bytes(self) -> np.ndarray:
        """UTF-8 byte length of every token id; 0 for special tokens (left out of bits per byte)."""
        out = np.zeros(self.vocab_size, dtype=np.int32)
        out[: len(self.pieces)] = [len(piece) for piece in self.pieces]
        return out


def train_tokenizer(texts: Iterable[str], vocab_size: int, name: str) -> Tokenizer:
    """Train a byte-level BPE on `texts`.

    Args:
        texts: the training documents.
        vocab_size: merges plus the 256 byte tokens; special tokens come on top.
        name: a distinctive encoding name.

    Raises:
        ValueError: if vocab_size is under 256.
    """
    import rustbpe

    logging.getLogger("rustbpe").setLevel(logging.WARNING)  # it logs every merge at INFO
    if vocab_size < 256:
        raise DataError(f"trial.vocab_size must be at least 256 (the byte tokens), got {vocab_size}")
    trainer = rustbpe.Tokenizer()
    trainer.train_from_iterator(iter(texts), vocab_size)
    ranks = {bytes(piece): rank for piece, rank in trainer.get_mergeable_ranks()}
    return _build(name, trainer.get_pattern(), ranks)


def _build(name: str, pattern: str, ranks: dict[bytes, int]) -> Tokenizer:
    specials = {tok: len(ranks) + i for i, tok in enumerate(SPECIAL_TOKENS)}
    enc = tiktoken.Encoding(name, pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)
    pieces = [piece for piece, _ in sorted(ranks.items(), key=lambda kv: kv[1])]
    return Tokenizer(encoding=enc, name=name, pattern=pattern, pieces=pieces)


def save_tokenizer(tok: Tokenizer, path: Path) -> None:
    """Write the tokenizer as JSON, atomically."""
    payload = {
        "name": tok.name,
        "pattern": tok.pattern,
        "ranks": [base64.b64encode(piece).decode("ascii") for piece in tok.pieces],
    }
    write_atomic(path, json.dumps(payload).encode("utf-8"))


def load_tokenizer(path: Path) -> Tokenizer:
    """Read a tokenizer saved by `save_tokenizer`.

    Raises:
        FileNotFoundError: naming the path, if it is missing.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"tokenizer file {path} does not exist; prepare the data first")
    payload = json.loads(path.read_text())
    ranks = {base64.b64decode(p): i for i, p in enumerate(payload["ranks"])}
    return _build(payload["name"], payload["pattern"], ranks)

