"""BOS-aligned packing of documents into fixed-length rows, with no padding.

Every row starts with a BOS token that opens a document, so no row begins in the middle of a
document it has no context for. A document longer than a row is cut into row-sized pieces, each
opened by its own BOS. Pieces are packed best-fit: from a small look-ahead buffer the largest
piece that still fits the row's free space goes in; when none fits, the first one is cropped to
fill the row exactly. Rows are therefore full of real tokens (nothing padded, nothing masked).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from eval.data import DataError


@dataclass
class TokenStore:
    """The tokens of one split: documents concatenated, with their boundaries.

    Attributes:
        tokens: all documents' tokens end to end (no BOS), uint16 or uint32.
        offsets: int64, len = documents + 1; document i is tokens[offsets[i]:offsets[i+1]].
    """

    tokens: np.ndarray
    offsets: np.ndarray

    @property
    def num_docs(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    def doc(self, i: int) -> np.ndarray:
        return self.tokens[self.offsets[i] : self.offsets[i + 1]]

    @classmethod
    def from_docs(cls, docs: Iterable[list[int]], vocab_size: int) -> "TokenStore":
        dtype = np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32
        arrays = [np.asarray(d, dtype=dtype) for d in docs]
        lengths = np.array([len(a) for a in arrays], dtype=np.int64)
        offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        tokens = np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)
        return cls(tokens=tokens, offsets=offsets)

    def save(self, path: Path) -> None:
        """Write as one .npz (tokens, offsets)."""
        with open(path, "wb") as f:
            np.savez(f, tokens=self.tokens, offsets=self.offsets)

    @classmethod
    def load(cls, path: Path) -> "TokenStore":
        with np.load(path) as z:
            return cls(tokens=z["tokens"], offsets=z["offsets"])


def iter_pieces(store: TokenStore, order: Iterable[int], bos_id: int, row_len: int) -> Iterator[np.ndarray]:
    """BOS-opened pieces of the documents in `order`, each at most `row_len` tokens."""
    body = row_len - 1
    for i in order:
        doc = store.doc(int(i))
        if len(doc) == 0:
            continue
        for start in range(0, len(doc), body):
            chunk = doc[start : start + body]
            piece = np.empty(len(chunk) + 1, dtype=np.int64)
            piece[0] = bos_id
            piece[1:] = chunk
            yield piece


def pack_rows(pieces: Iterable[np.ndarray], row_len: int, lookahead: int = 64) -> Iterator[np.ndarray]:
    """Pack BOS-opened pieces into full rows of `row_len` tokens (best fit, crop when none fits).

    Args:
        pieces: pieces of at most `row_len` tokens, each starting with BOS.
        row_len: tokens per row (sequence length + 1, for the shifted targets).
        lookahead: how many pieces the best-fit search looks at.

    Yields:
        int64 arrays of exactly `row_len` tokens, the first of which is BOS. A last partial row
        is dropped.
    """
    source = iter(pieces)
    buffer: deque[np.ndarray] = deque()
    exhausted = False
    while True:
        row = np.empty(row_len, dtype=np.int64)
        filled = 0
        while filled < row_len:
            while not exhausted and len(buffer) < lookahead:
                nxt = next(source, None)
                if nxt is None:
                    exhausted = True
                else:
                    buffer.append(nxt)
            if not buffer:
                return
            free = row_len - filled
            best = -1
            for j, piece in enumerate(buffer):
                if len(piece) <= free and (best < 0 or len(piece) > len(buffer[best])):
                    best = j
                    if len(piece) == free:
                        break
            if best < 0:
                piece = buffer.popleft()[:free]
            else:
                piece = buffer[best]
                del buffer[best]
            row[filled : filled + len(piece)] = piece
            filled += len(piece)
        yield row


def eval_rows(store: TokenStore, bos_id: int, seq_len: int, num_tokens: int, split: str = "val") -> np.ndarray:
    """The fixed evaluation rows: documents in stored order, packed, enough rows for num_tokens.

    Args:
        split: "val" or "test", for the error message (which settings to change).

    Returns:
        int64 array (rows, seq_len + 1), rows = ceil(num_tokens / seq_len).

    Raises:
        ValueError: if the split holds too few tokens, naming what to change.
    """
    need = -(-num_tokens // seq_len)
    rows = []
    for row in pack_rows(iter_pieces(store, range(store.num_docs), bos_id, seq_len + 1), seq_len + 1):
        rows.append(row)
        if len(rows) == need:
            return np.stack(rows)
    setting = "trial.eval_tokens" if split == "val" else "trial.test_tokens"
    raise DataError(
        f"the {split} split has {store.num_tokens:,} tokens in {store.num_docs:,} documents, which pack into "
        f"{len(rows):,} rows of {seq_len}; {setting}={num_tokens:,} needs {need:,} rows. Lower {setting}, raise "
        f"data.{split}_fraction, or use a larger corpus"
    )


def train_rows(store: TokenStore, bos_id: int, seq_len: int, seed: int) -> Iterator[np.ndarray]:
    """Endless training rows; document order reshuffled every epoch from `seed`."""
    if store.num_tokens == 0:
        raise DataError("the training split is empty; use a larger corpus or smaller val/test fractions")
    epoch = 0
    while True:
        order = np.random.default_rng([seed, epoch]).permutation(store.num_docs)
        yield from pack_rows(iter_pieces(store, order, bos_id, seq_len + 1), seq_len + 1)
        epoch += 1


def batch_iterator(rows: Iterator[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """Group rows into (batch_size, row_len) int64 arrays."""
    while True:
        batch = [next(rows) for _ in range(batch_size)]
        yield np.stack(batch)
