import math

import numpy as np
import pytest
import torch

from eval.metric import bits_per_byte, evaluate_bpb


class Uniform(torch.nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab
        self.seen = []

    def forward(self, idx):
        self.seen.append(idx.clone())
        return torch.zeros(idx.shape[0], idx.shape[1], self.vocab)


def test_uniform_logits_give_log2_vocab_per_token_over_bytes():
    vocab = 8
    token_bytes = np.array([1, 2, 3, 1, 2, 3, 1, 0])  # id 7 is special
    rows = np.array([[7, 0, 1, 2, 3], [7, 4, 5, 6, 7]])
    res = evaluate_bpb(Uniform(vocab), rows, token_bytes, torch.device("cpu"), batch_rows=1)
    # targets: 0,1,2,3 (bytes 1+2+3+1=7) and 4,5,6,7 (2+3+1+0=6); id 7 is not scored
    assert res.tokens == 7 and res.bytes == 13
    assert res.bpb == pytest.approx(7 * math.log2(vocab) / 13, rel=1e-6)  # float32 logits


def test_model_never_receives_targets():
    model = Uniform(8)
    rows = np.array([[7, 0, 1, 2, 3]])
    evaluate_bpb(model, rows, np.ones(8), torch.device("cpu"))
    assert model.seen[0].tolist() == [[7, 0, 1, 2]]


def test_perfect_model_scores_near_zero():
    class Oracle(torch.nn.Module):
        def forward(self, idx):
            nxt = (idx + 1) % 8
            return torch.nn.functional.one_hot(nxt, 8).float() * 100

    rows = np.array([[0, 1, 2, 3, 4, 5]])
    assert evaluate_bpb(Oracle(), rows, np.ones(8), torch.device("cpu")).bpb < 1e-6


def test_wrong_logit_shape_is_named():
    class Bad(torch.nn.Module):
        def forward(self, idx):
            return torch.zeros(idx.shape[0], 8)

    with pytest.raises(ValueError, match="logits of shape"):
        evaluate_bpb(Bad(), np.array([[0, 1, 2]]), np.ones(8), torch.device("cpu"))


def test_bits_per_byte_formula():
    assert bits_per_byte(math.log(2) * 10, 5) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        bits_per_byte(1.0, 0)
