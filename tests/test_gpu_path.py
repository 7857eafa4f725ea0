"""The seed's CUDA-only settings, exercised on the CPU where they can be.

On a GPU the seed orthogonalises Muon's updates in bf16, builds AdamW fused, and the harness probes
and evaluates under bf16 autocast. None of that runs on a CPU trial, so a mistake there would first
show on an expensive machine. These tests run the same code with the same dtypes on the CPU.
(torch.compile inside the confined trial process is in tests/test_trial.py.)
"""

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import model.gpt as gpt
from eval.metric import evaluate_bpb
from eval.probe import probe_causality
from search import PROJECT_ROOT

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def seed():
    """The seed's train/train.py as a module of its own (the trial imports it the same way)."""
    spec = importlib.util.spec_from_file_location("seed_train", PROJECT_ROOT / "train" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_gpt(zero_init: bool = True) -> gpt.GPT:
    """A 2-block seed GPT; zero_init=False replaces the seed's zero (and near-zero) output
    projections with random ones, so every block's attention shapes the logits, as after training."""
    torch.manual_seed(0)
    model = gpt.GPT(gpt.GPTConfig(vocab_size=256, n_layer=2, n_head=2, n_embd=64, head_dim=32, seq_len=64))
    if not zero_init:
        with torch.no_grad():
            for block in model.blocks:
                block.attn.c_proj.weight.normal_(0.0, 0.1)
                block.mlp.c_proj.weight.normal_(0.0, 0.1)
            model.lm_head.weight.normal_(0.0, 0.1)
    return model


@pytest.mark.parametrize("shape", [(4, 64, 128), (4, 256, 64)])
def test_bf16_newton_schulz_lands_where_float32_does(seed, shape):
    torch.manual_seed(0)
    G = torch.randn(shape)
    exact = seed.orthogonalize(G, 5, torch.float32)
    fast = seed.orthogonalize(G, 5, torch.bfloat16)
    assert fast.dtype == torch.bfloat16
    values = torch.linalg.svdvals(fast.float())
    # The quintic's coefficients aim every singular value at roughly [0.7, 1.2], not at exactly 1.
    assert 0.6 < float(values.min()) and float(values.max()) < 1.25
    assert float((fast.float() - exact).norm() / exact.norm()) < 0.06


def test_the_optimizers_built_for_cuda_train_the_model(seed):
    """build_optimizers(..., "cuda"): AdamW fused and Muon in bf16; the parameters stay float32."""
    model = small_gpt()
    adamw, muon = seed.build_optimizers(model, 64, "cuda")
    assert adamw.defaults["fused"] is True and muon.defaults["ns_dtype"] == torch.bfloat16
    data = torch.randint(0, 256, (8, 65), generator=torch.Generator().manual_seed(1))
    losses = []
    for _ in range(12):
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
            logits = model(data[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, 256), data[:, 1:].reshape(-1))
        loss.backward()
        adamw.step()
        muon.step()
        model.zero_grad(set_to_none=True)
        losses.append(loss.detach().item())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert losses[-1] < 0.5 * losses[0]  # it memorises the 8 rows


def test_the_probe_and_the_evaluation_agree_under_bf16_autocast():
    model = small_gpt(zero_init=False).eval()
    rows = torch.randint(0, 256, (6, 65), generator=torch.Generator().manual_seed(2)).numpy().astype(np.int64)
    token_bytes = np.ones(256, dtype=np.int64)
    full = evaluate_bpb(model, rows, token_bytes, CPU, 4)
    half = evaluate_bpb(model, rows, token_bytes, CPU, 4, torch.bfloat16)
    assert half.tokens == full.tokens
    assert abs(half.bpb - full.bpb) < 0.01 * full.bpb
    probe = probe_causality(model, 256, 64, CPU, autocast_dtype=torch.bfloat16)
    assert probe.passed, probe.reason()


def test_the_probe_still_catches_lookahead_under_bf16_autocast(monkeypatch):
    """bf16 makes logits coarser; the probe's tolerance must not grow enough to hide a leak."""

    def sees_everything(q, k, v):
        return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)

    monkeypatch.setattr(gpt, "causal_attention", sees_everything)
    model = small_gpt(zero_init=False)
    assert probe_causality(model, 256, 64, CPU).passed is False  # full precision catches it
    probe = probe_causality(model, 256, 64, CPU, autocast_dtype=torch.bfloat16)
    assert not probe.passed and "looks ahead" in probe.reason()


@pytest.mark.parametrize("torch_has_the_agnostic_name", [True, False])
def test_cuda_out_of_memory_is_oom_also_on_torch_2_4(monkeypatch, torch_has_the_agnostic_name):
    """torch.OutOfMemoryError arrived in torch 2.5; the project admits 2.4, which raises only
    torch.cuda.OutOfMemoryError. Either way the trial ends `oom`, and any other error is not one."""
    from eval.trial import out_of_memory

    if not torch_has_the_agnostic_name:
        monkeypatch.delattr(torch, "OutOfMemoryError")
    exc = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")
    assert out_of_memory(exc, None) == "out of GPU memory: CUDA out of memory. Tried to allocate 2.00 GiB"
    assert out_of_memory(RuntimeError("shape mismatch"), None) is None
