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


class DenseEmbeddingGrad:
    """A post-accumulate-grad hook: a sparse ``.grad`` becomes a dense one written into a reused buffer.

    Between steps only the rows the last step wrote are zeroed (the rest of the buffer is zero already), and `rows`
    names the rows a step's gradient can have non-zero, so its norm need not read the whole matrix
    (`seqtune.clipping`). A forward pre-hook on the embedding records the token ids of every forward pass that
    builds a graph: the rows of later micro-batches, which autograd adds into the dense buffer in place."""

    def __init__(self, weight: nn.Parameter):
        self.buffer = torch.zeros_like(weight, memory_format=torch.contiguous_format)
        self.written: list[torch.Tensor] = []  # token ids whose rows of the buffer may be non-zero

    def record(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        """Forward pre-hook: note the ids of a forward pass whose backward will write their rows."""
        if torch.is_grad_enabled():
            ids = args[0] if args else kwargs["input"]
            self.written.append(ids.detach().reshape(-1))

    def __call__(self, weight: torch.Tensor) -> None:
        grad = weight.grad
        if grad is None or not grad.is_sparse:
            return  # a later micro-batch: autograd already added its sparse rows to the dense buffer in place
        rows = grad._indices()[0]
        if self.written:  # the last step's rows (and this micro-batch's, about to be rewritten)
            self.buffer.index_fill_(0, torch.cat(self.written).to(self.buffer.device), 0)
        self.written = [rows]
        self.buffer.index_add_(0, rows, grad._values().to(self.buffer.dtype))  # duplicates add up
        weight.grad = self.buffer

    def rows(self) -> torch.Tensor:
        """The rows this step's gradient can have non-zero (every other row of the buffer is exactly zero)."""
        return torch.unique(torch.cat(self.written).to(self.buffer.device))


def reuse_embedding_grad(model: nn.Module) -> DenseEmbeddingGrad | None:
    """Give ``model``'s trainable word embeddings a sparse backward densified into one reused buffer (see the module
    docstring); returns the hook, or None, changing nothing, where the input embeddings are not a plain
    `nn.Embedding` that trains. Callers use it only in a single-process run (DDP reduces dense gradients)."""
    embedding = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if type(embedding) is not nn.Embedding or not embedding.weight.requires_grad or embedding.sparse:
        return None
    embedding.sparse = True
    hook = DenseEmbeddingGrad(embedding.weight)
    embedding.register_forward_pre_hook(hook.record, with_kwargs=True)
    embedding.weight.register_post_accumulate_grad_hook(hook)
    return hook
