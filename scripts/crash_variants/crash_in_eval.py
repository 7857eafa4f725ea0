"""A variant whose model trains but fails in evaluation mode (a bug on the eval path)."""
import torch
import torch.nn.functional as F


class Model(torch.nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.table = torch.nn.Embedding(vocab, vocab)

    def forward(self, idx):
        if not self.training:
            raise RuntimeError("eval path not implemented")
        return self.table(idx)


def train(ctx):
    model = Model(ctx.vocab_size).to(ctx.device)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    batches = ctx.batches(8)
    for _ in ctx.steps():
        x, y = next(batches)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        ctx.record_loss(loss)
    return model
