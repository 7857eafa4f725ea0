"""A variant that crashes once training passes half its budget (a schedule bug, say)."""
import torch
import torch.nn.functional as F


def train(ctx):
    model = torch.nn.Embedding(ctx.vocab_size, ctx.vocab_size).to(ctx.device)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    batches = ctx.batches(8)
    for _ in ctx.steps():
        if ctx.progress > 0.5:
            raise RuntimeError("the warmdown branch has a bug")
        x, y = next(batches)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        ctx.record_loss(loss)
    return model
