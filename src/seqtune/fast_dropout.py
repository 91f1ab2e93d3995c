"""Dropout with cheaper random masks on the CPU.

PyTorch's CPU dropout draws one random number per element (``bernoulli_``), serially: on a bf16 MiniLM step with AMX
its masks take a quarter of the step. `FastDropout` draws 64 random bits per four elements instead (16 bits each,
keep-probability exact to 1/65536) and applies the same inverted-dropout scaling. Inside it, every
``F.dropout(x, p, training=True)`` on a CPU tensor, and the attention-probability dropout of
``F.scaled_dot_product_attention(..., dropout_p=p)`` (computed as SDPA's own math path does), use those masks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


def keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    """A bool tensor of ``shape``, each element True with probability ``1 - p`` (to 1/65536), from the global
    generator (so a saved RNG state replays it exactly).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> round(keep_mask(torch.Size([100_000]), 0.1).float().mean().item(), 2)
        0.9
    """
    n = math.prod(shape)
    words = torch.randint(-(2**63), 2**63 - 1, ((n + 3) // 4,), dtype=torch.int64)
    bits = words.view(torch.int16)[:n]
    return (bits >= -32768 + round(p * 65536)).view(shape)


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout of ``x`` with `keep_mask`'s masks."""
    scale = keep_mask(x.shape, p).to(x.dtype).mul_(1.0 / (1.0 - p))
    return x * scale


def _sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """SDPA's math path with `dropout`: softmax(q k^T * scale + mask) v."""
    q, k, v = query, key, value
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    if enable_gqa and k.size(-3) != q.size(-3):
        k = k.repeat_interleave(q.size(-3) // k.size(-3), -3)
        v = v.repeat_interleave(q.size(-3) // v.size(-3), -3)
    scores = q @ k.transpose(-2, -1) * scale
    if is_causal:
        causal = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        scores = scores.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else scores + attn_mask
    probs = torch.softmax(scores, dim=-1)
    return dropout(probs, dropout_p) @ v


class FastDropout(TorchFunctionMode):
    """A torch function mode: CPU dropout in training draws `keep_mask` masks (see the module docstring)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.dropout:
            x, p, training, inplace = _dropout_args(*args, **kwargs)
            if training and 0.0 < p < 1.0 and x.device.type == "cpu" and not inplace:
                return dropout(x, p)
        elif func is F.scaled_dot_product_attention:
            query, p = _sdpa_args(*args, **kwargs)
            if p > 0.0 and query.device.type == "cpu":
                return _sdpa(*args, **kwargs)
        return func(*args, **kwargs)


def _dropout_args(input, p=0.5, training=True, inplace=False):  # F.dropout's signature
    return input, p, training, inplace


def _sdpa_args(query, key, value, attn_mask=None, dropout_p=0.0, **_):  # F.scaled_dot_product_attention's
    return query, dropout_p
