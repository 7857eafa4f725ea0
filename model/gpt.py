"""A small modern GPT: the architecture of the seed variant.

Pure nn.Modules and a config dataclass; no I/O, no device choice, no logging. The model maps
token ids to float32 logits and never sees targets: `train/train.py` computes the training loss
and the harness computes the evaluation metric from the logits.

Ingredients (each a known win for small GPTs trained briefly):
- rotary position embeddings (https://arxiv.org/abs/2104.09864), no learned positions;
- RMSNorm without weights (https://arxiv.org/abs/1910.07467), pre-norm residual blocks;
- QK-norm, which keeps attention logits bounded at high learning rates
  (https://arxiv.org/abs/2302.05442);
- ReLU^2 MLP (https://arxiv.org/abs/2109.08668);
- untied embedding and lm_head, logit soft-capping as in Gemma 2 (https://arxiv.org/abs/2408.00118).
"""

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

# A faster attention kernel where one is installed (FlashAttention 3 on Hopper, else 2); both take
# (B, T, H, D) tensors in bf16/fp16. Without them SDPA is used, which is correct everywhere.
try:
    from flash_attn_interface import flash_attn_func as _flash_attn_func
except Exception:
    try:
        from flash_attn import flash_attn_func as _flash_attn_func
    except Exception:
        _flash_attn_func = None


@dataclass
class GPTConfig:
    vocab_size: int  # number of token ids, special tokens included
    n_layer: int  # transformer blocks
    n_head: int  # attention heads per block
    n_embd: int  # width of the residual stream
    seq_len: int  # longest sequence the rotary tables cover
    head_dim: int = 0  # channels per head; 0 means n_embd // n_head
    softcap: float = 15.0  # logits are squashed into (-softcap, softcap); 0 disables it
    rope_base: float = 10000.0  # rotary base frequency

    def __post_init__(self):
        if self.head_dim == 0:
            if self.n_embd % self.n_head:
                raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}")
            self.head_dim = self.n_embd // self.n_head
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for rotary embeddings")


def norm(x: torch.Tensor) -> torch.Tensor:
    """RMSNorm over the last dimension, without a learnable gain."""
    return F.rms_norm(x, (x.size(-1),))


def rotary_tables(seq_len: int, head_dim: int, base: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (seq_len, head_dim // 2), float32."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32, device=device), inv_freq)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (i, i + D/2) of x (B, T, H, D) by position-dependent angles."""
    x1, x2 = x.float().chunk(2, dim=-1)
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    return torch.cat((x1 * cos + x2 * sin, x2 * cos - x1 * sin), dim=-1).type_as(x)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal self-attention on (B, T, H, D) tensors; returns (B, T, H, D)."""
    if _flash_attn_func is not None and q.is_cuda and q.dtype in (torch.bfloat16, torch.float16):
        out = _flash_attn_func(q, k, v, causal=True)
        # Some FlashAttention 3 releases return (out, softmax_lse).
        return out[0] if isinstance(out, tuple) else out
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
    return out.transpose(1, 2)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.head_dim = config.n_head, config.head_dim
        inner = config.n_head * config.head_dim
        self.c_q = nn.Linear(config.n_embd, inner, bias=False)
        self.c_k = nn.Linear(config.n_embd, inner, bias=False)
        self.c_v = nn.Linear(config.n_embd, inner, bias=False)
        self.c_proj = nn.Linear(inner, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)
        k = self.c_k(x).view(B, T, self.n_head, self.head_dim)
        v = self.c_v(x).view(B, T, self.n_head, self.head_dim)
        q, k = norm(q), norm(k)
        # Cast back to v's dtype: under autocast the norm may have produced float32, and the
        # attention kernels want q, k, v in one (low-precision on GPU) dtype.
        q, k = apply_rotary(q, cos, sin).type_as(v), apply_rotary(k, cos, sin).type_as(v)
        y = causal_attention(q, k, v)
        return self.c_proj(y.reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.attn = CausalSelfAttention(config)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(norm(x), cos, sin)
        return x + self.mlp(norm(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Derived from the config, so not saved in state_dict; rebuilt by init_weights().
        cos, sin = rotary_tables(config.seq_len, config.head_dim, config.rope_base)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """Initialise every parameter in place (and rebuild the rotary tables on their device).

        Embeddings are N(0, 1) (they are normalised right after lookup); input projections are
        uniform with std 1/sqrt(fan_in); output projections start at zero so every block begins as
        the identity; the lm_head starts near zero so the first logits are near uniform.
        """
        cfg = self.config
        cos, sin = rotary_tables(cfg.seq_len, cfg.head_dim, cfg.rope_base, self.cos.device)
        self.cos.copy_(cos)
        self.sin.copy_(sin)
        nn.init.normal_(self.wte.weight, mean=0.0, std=1.0)
        nn.init.normal_(self.lm_head.weight, mean=0.0, std=0.001)
        bound = (3.0 / cfg.n_embd) ** 0.5  # uniform(-b, b) has std b / sqrt(3)
        for block in self.blocks:
            for linear in (block.attn.c_q, block.attn.c_k, block.attn.c_v, block.mlp.c_fc):
                nn.init.uniform_(linear.weight, -bound, bound)
            nn.init.zeros_(block.attn.c_proj.weight)
            nn.init.zeros_(block.mlp.c_proj.weight)

    def num_params(self) -> int:
        """Number of parameters (embedding and lm_head included)."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Token ids (B, T) -> float32 logits (B, T, vocab_size); position t sees tokens <= t."""
        T = idx.size(1)
        if T > self.config.seq_len:
            raise ValueError(f"sequence length {T} exceeds the model's seq_len {self.config.seq_len}")
        cos, sin = self.cos[:T], self.sin[:T]
        x = norm(self.wte(idx))
        for block in self.blocks:
            x = block(x, cos, sin)
        logits = self.lm_head(norm(x)).float()
        if self.config.softcap > 0:
            logits = self.config.softcap * torch.tanh(logits / self.config.softcap)
        return logits
