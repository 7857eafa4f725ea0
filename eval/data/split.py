"""Deterministic train / val / test split by document.

A document's split depends only on its content (a SHA-256 of its UTF-8 bytes), so the split is
the same on every machine, in every process and whatever order the documents arrive in, and two
identical documents always land in the same split (no copy of a validation document can leak
into training).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable

from eval.data import DataError

SPLITS = ("train", "val", "test")
_BUCKETS = 1_000_000


@dataclass
class Split:
    """Documents of each split, in a stable order (by content hash)."""

    train: list[str]
    val: list[str]
    test: list[str]

    def counts(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in SPLITS}


def document_bucket(doc: str) -> tuple[int, str]:
    """The bucket in [0, 1e6) of a document and its hex digest."""
    digest = hashlib.sha256(doc.encode("utf-8")).hexdigest()
    return int(digest[:15], 16) % _BUCKETS, digest


def assign_split(doc: str, val_fraction: float, test_fraction: float) -> str:
    """Name of the split ('train', 'val' or 'test') a document belongs to."""
    bucket, _ = document_bucket(doc)
    return _split_of_bucket(bucket, val_fraction, test_fraction)


def _split_of_bucket(bucket: int, val_fraction: float, test_fraction: float) -> str:
    if bucket < val_fraction * _BUCKETS:
        return "val"
    if bucket < (val_fraction + test_fraction) * _BUCKETS:
        return "test"
    return "train"


def split_documents(docs: Iterable[str], val_fraction: float, test_fraction: float) -> Split:
    """Split documents by content hash.

    Args:
        docs: the corpus documents.
        val_fraction: expected share of documents in `val`.
        test_fraction: expected share of documents in `test`.

    Returns:
        A Split whose lists are each ordered by content hash, so the order is stable too.

    Raises:
        ValueError: if the fractions are outside [0, 1) or leave no training share.
    """
    for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise DataError(f"data.{name} must be in [0, 1), got {frac}")
    if val_fraction + test_fraction >= 1.0:
        raise DataError(
            f"data.val_fraction + data.test_fraction = {val_fraction + test_fraction} leaves no "
            "documents for training; lower them"
        )
    parts: dict[str, list[tuple[str, str]]] = {name: [] for name in SPLITS}
    for doc in docs:
        bucket, digest = document_bucket(doc)
        parts[_split_of_bucket(bucket, val_fraction, test_fraction)].append((digest, doc))
    ordered = {name: [doc for _, doc in sorted(items)] for name, items in parts.items()}
    return Split(**ordered)
