"""The data pipeline of the harness: sources (local files, downloads, the standard library's
docstrings), download with resume and checks, the split by content hash, the BPE tokenizer, token
arrays and the rows a trial trains and evaluates on, cached by their settings (`prepare`).

May import: the standard library, numpy, tiktoken, rustbpe, pyarrow, `eval.files`. Never `search`.
"""


class DataError(ValueError):
    """The data cannot be had or used as configured; the message says what to change."""
