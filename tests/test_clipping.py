"""Clipping with the scaling folded into the fused optimizer's step, and the word-embedding norm taken over the
step's rows, trains exactly as `torch.nn.utils.clip_grad_norm_` followed by the same optimizer does."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from seqtune.clipping import clip_gradients
from seqtune.embedding_grad import reuse_embedding_grad


def _batch(seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 90, (4, 9), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.tensor([0, 1, 1, 0])}


@pytest.mark.parametrize("fused", [True, False])
def test_clipped_steps_match_pytorchs_clip_grad_norm(tiny_model_dir, fused):
    plain = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    ours = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    hook = reuse_embedding_grad(ours)
    opt_plain = torch.optim.AdamW(plain.parameters(), lr=1e-2, fused=fused)
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-2, fused=fused)
    norms = []
    for step, micro in enumerate(([0], [1, 2], [3], [4, 5, 6])):  # with gradient accumulation
        for model, opt in ((plain, opt_plain), (ours, opt_ours)):
            for seed in micro:
                model(**_batch(10 * step + seed)).loss.backward()
            if model is plain:
                norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), 0.05).item())
            else:
                norms.append(clip_gradients(model.parameters(), 0.05, opt, hook).item())
            opt.step()
            opt.zero_grad(set_to_none=True)
        assert norms[-1] == pytest.approx(norms[-2], rel=1e-5)
        assert norms[-1] > 0.05  # the clip is active at every step
    for (name, a), b in zip(plain.named_parameters(), ours.parameters(), strict=True):
        if name.endswith("key.bias"):  # its true gradient is 0 (softmax ignores a shift): Adam amplifies rounding
            continue
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
    assert hasattr(opt_ours, "grad_scale") == fused  # a fused step scales; any other optimizer gets scaled grads
