"""The word-embedding gradient through a reused buffer equals PyTorch's dense one, micro-batches included."""

from __future__ import annotations

import torch
from transformers import AutoModelForSequenceClassification

from seqtune.embedding_grad import reuse_embedding_grad


def _batch(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 90, (4, 9), generator=g)
    ids[0, :3] = ids[1, :3]  # the same tokens in several rows: their gradients must add up
    mask = torch.ones_like(ids)
    ids[3, 6:], mask[3, 6:] = 0, 0  # padding (BERT's padding_idx 0 gets no gradient)
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 1, 0])}


def _grads(model, batches: list[dict]) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    for batch in batches:  # several backward passes into one gradient: gradient accumulation
        model(**batch).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_reused_buffer_gives_pytorchs_dense_gradient(tiny_model_dir):
    plain = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    reused = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    hook = reuse_embedding_grad(reused)
    assert hook is not None
    weight = reused.get_input_embeddings().weight
    for batches in ([_batch(0)], [_batch(1), _batch(2)]):
        want, got = _grads(plain, batches), _grads(reused, batches)
        assert want.keys() == got.keys()
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-7, msg=name)
        assert not weight.grad.is_sparse
        written = torch.zeros(weight.shape[0], dtype=torch.bool)
        written[hook.rows()] = True
        assert written.any() and not weight.grad[~written].any()  # rows() holds every non-zero row
    first = weight.grad.data_ptr()
    _grads(reused, [_batch(3)])
    assert weight.grad.data_ptr() == first  # the same buffer every step, not a fresh matrix


def test_frozen_or_already_sparse_embeddings_are_left_alone(tiny_model_dir):
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    model.get_input_embeddings().weight.requires_grad_(False)
    assert not reuse_embedding_grad(model)
    assert not model.get_input_embeddings().sparse
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    assert reuse_embedding_grad(model)
    assert not reuse_embedding_grad(model)  # a second call adds no second hook
