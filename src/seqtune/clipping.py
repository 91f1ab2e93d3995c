"""Gradient-norm clipping (``train.max_grad_norm``) without two passes over every gradient.

The total norm is `torch.nn.utils.get_total_norm` of the gradients, as `torch.nn.utils.clip_grad_norm_` computes it,
and the factor is the same, ``min(1, max_norm / (norm + 1e-6))``. Two shortcuts skip only work:

- the word-embedding gradient kept in a reused buffer (`seqtune.embedding_grad`) is exactly zero outside the rows of
  the step's tokens, so its norm is taken over those rows (MiniLM on MRPC: 323 of 30,522 in a batch of 16, on
  average);
- with a fused Adam or AdamW, the gradients are not multiplied in a pass of their own: the optimizer divides each
  gradient by ``grad_scale`` as it reads it, the hook `torch.amp.GradScaler` uses to unscale gradients.

Measured (`benchmarks/step_levers.py --precision bf16`, MiniLM, MRPC batches of 16, Intel Xeon with AMX): 1.05x the
tokens/s of seqtune's bf16 step with `torch.nn.utils.clip_grad_norm_` (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from seqtune.embedding_grad import DenseEmbeddingGrad


def folds_scaling(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer`` applies a ``grad_scale`` inside its step (fused Adam and AdamW do)."""
    return bool(getattr(optimizer, "_step_supports_amp_scaling", False))


def clip_gradients(
    params: Iterable[torch.nn.Parameter],
    max_norm: float,
    optimizer: torch.optim.Optimizer,
    embedding: DenseEmbeddingGrad | None = None,
) -> torch.Tensor:
    """Clip the gradients of ``params`` to a total norm of ``max_norm`` for ``optimizer``'s next step; returns the
    norm before clipping. ``embedding``: the word embeddings' reused-gradient hook, when there is one.

    Example:
        >>> w = torch.nn.Parameter(torch.zeros(2))
        >>> opt = torch.optim.AdamW([w], fused=True)
        >>> w.grad = torch.tensor([3.0, 4.0])
        >>> round(clip_gradients([w], 1.0, opt).item(), 4), round(opt.grad_scale.item(), 4)  # scaled in the step
        (5.0, 5.0)
    """
    params = [p for p in params if p.grad is not None]
    grads = [
        p.grad.index_select(0, embedding.rows()) if embedding is not None and p.grad is embedding.buffer else p.grad
        for p in params
    ]
    total = torch.nn.utils.get_total_norm(grads)
    if folds_scaling(optimizer):
        optimizer.grad_scale = torch.clamp((total + 1e-6) / max_norm, min=1.0)  # the step divides by it
    else:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total
