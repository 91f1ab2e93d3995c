"""Training losses: summed per example (so gradient accumulation is exact) and class weights."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from seqtune.tasks import TaskSpec


def class_weights(task: TaskSpec, labels: list[int]) -> torch.Tensor:
    """Inverse class frequency, normalised so a balanced set gets all ones."""
    counts = np.bincount(np.asarray(labels), minlength=task.num_labels).astype(np.float64)
    weights = len(labels) / (task.num_labels * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32)


def loss_sum(
    task: TaskSpec,
    logits: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None,
    smoothing: float = 0.0,
) -> torch.Tensor:
    """Summed per-example loss; the caller divides by the examples in the whole optimizer step, so k
    accumulated micro-batches give exactly the gradient of one batch of the same examples.

    ``weights``: class weights (single-label), or for regression one number, the targets' scale: the error is
    measured in units of their spread (`seqtune.modeling.target_scale`), divided before it is squared so that
    targets of any magnitude stay in float32's range. ``smoothing``: label smoothing (``train.label_smoothing``;
    classification only)."""
    logits = logits.float()
    if task.is_regression:
        scale = weights[0] if weights is not None else 1.0
        return F.mse_loss(logits.squeeze(-1) / scale, labels.float() / scale, reduction="sum")
    if task.is_multi_label:
        targets = labels.float() * (1 - smoothing) + smoothing / 2
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none").mean(-1).sum()
    return F.cross_entropy(logits, labels, weight=weights, reduction="sum", label_smoothing=smoothing)
