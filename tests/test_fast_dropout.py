"""CPU dropout with masks from 16-bit random words: PyTorch's dropout in distribution, in expectation and in its
gradient, replayable from the generator's state, and SDPA's attention dropout computed on SDPA's own math."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seqtune.fast_dropout import FastDropout, _sdpa, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_masks_keep_each_element_with_probability_one_minus_p(p):
    torch.manual_seed(0)
    n = 1_000_000
    mask = keep_mask(torch.Size([n]), p)
    assert mask.dtype == torch.bool
    sigma = (p * (1 - p) / n) ** 0.5
    assert abs(mask.float().mean().item() - (1 - p)) < 5 * sigma
    # neighbours (the four 16-bit lanes of one random word) are independent: P(both kept) = (1-p)^2
    pairs = mask[0::2] & mask[1::2]
    assert abs(pairs.float().mean().item() - (1 - p) ** 2) < 5 * (1 / (n / 2)) ** 0.5


def test_masks_replay_from_the_generator_state_and_differ_between_calls():
    torch.manual_seed(3)
    state = torch.get_rng_state()
    a, b = keep_mask(torch.Size([4, 1000]), 0.1), keep_mask(torch.Size([4, 1000]), 0.1)
    torch.set_rng_state(state)
    assert torch.equal(keep_mask(torch.Size([4, 1000]), 0.1), a)
    assert not torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_inside_the_mode_is_inverted_dropout_with_its_gradient(dtype):
    torch.manual_seed(0)
    x = torch.full((512, 384), 2.0, dtype=dtype, requires_grad=True)
    with FastDropout():
        y = torch.nn.Dropout(0.1).train()(x)
        unchanged = F.dropout(x, 0.1, training=False)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.01
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 2.0 / 0.9), atol=0.02, rtol=0)
    assert unchanged is x or torch.equal(unchanged, x)  # eval mode: no dropout
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.to(dtype) / 0.9, atol=0.01, rtol=0)


def test_attention_without_dropout_matches_pytorch_sdpa():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8) for _ in range(3))
    keep = torch.rand(2, 1, 7, 7) > 0.3
    keep[..., 0] = True
    additive = torch.randn(2, 1, 7, 7)
    for kwargs in ({}, {"attn_mask": keep}, {"attn_mask": additive}, {"is_causal": True}, {"scale": 0.5}):
        torch.testing.assert_close(_sdpa(q, k, v, **kwargs), F.scaled_dot_product_attention(q, k, v, **kwargs))


def test_attention_dropout_inside_the_mode_keeps_the_expected_output():
    """Averaged over many draws, attention with dropout gives attention without it; one draw does not."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 6, 4) for _ in range(3))
    exact = F.scaled_dot_product_attention(q, k, v)
    with FastDropout():
        draws = torch.stack([F.scaled_dot_product_attention(q, k, v, dropout_p=0.2) for _ in range(4000)])
    assert not torch.allclose(draws[0], exact, atol=1e-3)
    torch.testing.assert_close(draws.mean(0), exact, atol=0.03, rtol=0)


def test_keyword_calls_and_inplace_dropout_are_handled():
    torch.manual_seed(0)
    x = torch.ones(200, 200)
    with FastDropout():
        y = F.dropout(input=x, p=0.2, training=True)
        z = F.dropout(x.clone(), 0.2, True, True)  # in place: PyTorch's own
        q, k, v = (torch.randn(1, 1, 4, 4) for _ in range(3))
        a = F.scaled_dot_product_attention(query=q, key=k, value=v, dropout_p=0.5)
    assert abs((y != 0).float().mean().item() - 0.8) < 0.02
    assert abs((z != 0).float().mean().item() - 0.8) < 0.02
    assert a.shape == (1, 1, 4, 4)
