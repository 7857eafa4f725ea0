import torch

from eval.probe import probe_causality


class Causal(torch.nn.Module):
    """Each position sees a running mean of the embeddings up to and including itself."""

    def __init__(self, vocab=32, dim=16, peek=0):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(vocab, dim)
        self.out = torch.nn.Linear(dim, vocab)
        self.peek = peek

    def forward(self, idx):
        h = self.emb(idx)
        T = idx.shape[1]
        mask = torch.tril(torch.ones(T, T), diagonal=self.peek)
        h = (mask / mask.sum(-1, keepdim=True)) @ h
        return self.out(h)


def test_causal_model_passes():
    res = probe_causality(Causal(), 32, 64, torch.device("cpu"))
    assert res.passed and res.max_leak <= res.tolerance


def test_model_that_looks_one_token_ahead_is_caught():
    res = probe_causality(Causal(peek=1), 32, 64, torch.device("cpu"))
    assert not res.passed
    assert "looks ahead" in res.reason()


def test_model_that_sees_the_whole_sequence_is_caught():
    class Bidirectional(Causal):
        def forward(self, idx):
            return self.out(self.emb(idx).mean(1, keepdim=True).expand(-1, idx.shape[1], -1))

    assert not probe_causality(Bidirectional(), 32, 64, torch.device("cpu")).passed


def test_probe_restores_training_mode():
    m = Causal()
    m.train()
    probe_causality(m, 32, 16, torch.device("cpu"))
    assert m.training
