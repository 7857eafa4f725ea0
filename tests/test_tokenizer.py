import numpy as np
import pytest

from eval.data.tokenizer import BOS, load_tokenizer, save_tokenizer, train_tokenizer

TEXTS = [
    "The quick brown fox jumps over the lazy dog. " * 20,
    "Ünïcödé text, emoji 🙂 and numbers 12345 survive the round trip.",
    "def f(x):\n    return x ** 2\n",
] * 20


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, 300, name="evoresearch-test")


def test_round_trip_including_unicode(tok, tmp_path):
    for text in TEXTS[:3] + ["  leading spaces\n\n\ttabs", "日本語のテキスト"]:
        assert tok.decode(tok.encode(text)) == text
    save_tokenizer(tok, tmp_path / "tok.json")
    again = load_tokenizer(tmp_path / "tok.json")
    assert again.encode(TEXTS[0]) == tok.encode(TEXTS[0])
    assert again.vocab_size == tok.vocab_size == 301


def test_bos_is_special_and_not_produced_by_text(tok):
    assert tok.bos_id == 300
    assert tok.bos_id not in tok.encode(f"text with {BOS} inside")


def test_merges_compress(tok):
    assert len(tok.encode(TEXTS[0])) < len(TEXTS[0].encode()) / 2


def test_token_bytes_table(tok):
    tb = tok.token_bytes()
    assert tb.shape == (tok.vocab_size,)
    assert tb[tok.bos_id] == 0
    assert (tb[:256] == 1).all()
    ids = tok.encode(TEXTS[1])
    assert int(tb[np.array(ids)].sum()) == len(TEXTS[1].encode("utf-8"))


def test_vocab_below_bytes_is_an_error():
    with pytest.raises(ValueError, match="at least 256"):
        train_tokenizer(TEXTS, 100, name="x")


def test_missing_file_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        load_tokenizer(tmp_path / "nothing.json")
