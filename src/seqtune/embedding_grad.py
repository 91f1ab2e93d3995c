"""The word-embedding gradient without a fresh 47 MB matrix every step.

PyTorch's embedding backward builds the gradient of the whole vocabulary matrix (MiniLM: 30522 x 384 floats) as a new
tensor of zeros, then adds the rows of the batch's tokens. On a CPU the new tensor comes from fresh pages, so zeroing
it costs their page faults: 35-58 ms a step on a 2-core VM, an eighth of a bf16 MiniLM step, where zeroing a reused
matrix takes about 1.3 ms (benchmarks/results/step_profile-bf16.md). `reuse_embedding_grad` lets the embedding
produce a sparse gradient (the batch's rows only) and turns it into the dense gradient the optimizer and clipping
expect inside one buffer kept for the whole run. The sum is the same: every token's row is added once.
"""

from __future__ import annotations

import torch
from torch import nn


class _DenseInto:
    """A post-accumulate-grad hook: a sparse ``.grad`` becomes a dense one written into a reused buffer."""

    def __init__(self, weight: nn.Parameter):
        self.buffer = torch.zeros_like(weight, memory_format=torch.contiguous_format)

    def __call__(self, weight: torch.Tensor) -> None:
        grad = weight.grad
        if grad is None or not grad.is_sparse:
            return  # a later micro-batch: autograd already added its sparse rows to the dense buffer in place
        self.buffer.zero_()
        self.buffer.index_add_(0, grad._indices()[0], grad._values().to(self.buffer.dtype))  # duplicates add up
        weight.grad = self.buffer


def reuse_embedding_grad(model: nn.Module) -> bool:
    """Give ``model``'s trainable word embeddings a sparse backward densified into one reused buffer (see the module
    docstring). Returns False, changing nothing, where the input embeddings are not a plain `nn.Embedding` that
    trains; callers use it only in a single-process run (DDP reduces dense gradients)."""
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if type(embedding) is not nn.Embedding or not embedding.weight.requires_grad or embedding.sparse:
        return False
    embedding.sparse = True
    embedding.weight.register_post_accumulate_grad_hook(_DenseInto(embedding.weight))
    return True
