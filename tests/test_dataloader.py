import numpy as np
import pytest

from eval.data.dataloader import TokenStore, eval_rows, iter_pieces, pack_rows, train_rows

BOS = 99


def _store(lengths, vocab=99):
    rng = np.random.default_rng(0)
    return TokenStore.from_docs([rng.integers(0, vocab - 1, n).tolist() for n in lengths], vocab + 1)


def test_rows_are_full_bos_aligned_and_unpadded():
    store = _store([5, 17, 3, 40, 9, 1, 12] * 20)
    rows = list(pack_rows(iter_pieces(store, range(store.num_docs), BOS, 17), 17))
    assert rows and all(len(r) == 17 and r[0] == BOS for r in rows)
    # every token in a row is a real token: BOS or a document token, no filler value
    assert all(((r >= 0) & (r <= BOS)).all() for r in rows)


def test_pieces_keep_every_token_of_long_documents():
    store = _store([50])
    pieces = list(iter_pieces(store, [0], BOS, 11))
    assert all(p[0] == BOS and len(p) <= 11 for p in pieces)
    assert np.concatenate([p[1:] for p in pieces]).tolist() == store.doc(0).tolist()


def test_packing_uses_most_tokens():
    store = _store(list(range(1, 60)) * 10)
    rows = list(pack_rows(iter_pieces(store, range(store.num_docs), BOS, 65), 65))
    packed = sum(len(r) for r in rows)
    available = store.num_tokens + store.num_docs  # tokens plus one BOS per document
    assert packed > 0.9 * available


def test_eval_rows_fixed_and_deterministic():
    store = _store([30] * 50)
    a = eval_rows(store, BOS, 16, 100)
    b = eval_rows(store, BOS, 16, 100)
    assert a.shape == (7, 17) and (a == b).all()


def test_eval_rows_too_few_tokens_names_the_fix():
    store = _store([10] * 3)
    with pytest.raises(ValueError, match=r"the val split has 30 tokens in 3 documents, which pack into 1 rows of 16; "
                       r"trial.eval_tokens=10,000 needs 625 rows. Lower trial.eval_tokens, raise data.val_fraction"):
        eval_rows(store, BOS, 16, 10_000)
    with pytest.raises(ValueError, match=r"trial.test_tokens=10,000 needs 625 rows. Lower trial.test_tokens, raise "
                       r"data.test_fraction"):
        eval_rows(store, BOS, 16, 10_000, "test")


def test_train_rows_reshuffle_each_epoch_and_depend_on_seed():
    store = _store([7] * 40)
    gen = train_rows(store, BOS, 7, seed=1)
    first = [next(gen).tolist() for _ in range(40)]
    other = train_rows(store, BOS, 7, seed=2)
    assert first != [next(other).tolist() for _ in range(40)]
    assert first == [r.tolist() for r in (next(train_rows(store, BOS, 7, seed=1)) for _ in range(1))] + first[1:]


def test_store_save_load(tmp_path):
    store = _store([3, 4, 5])
    store.save(tmp_path / "s.npz")
    back = TokenStore.load(tmp_path / "s.npz")
    assert back.tokens.tolist() == store.tokens.tolist() and back.offsets.tolist() == store.offsets.tolist()
    assert back.tokens.dtype == np.uint16
