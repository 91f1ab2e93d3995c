"""The settings that follow the data when left at ``null`` (auto): how long to train and how fast.

Chosen by `benchmarks/recipe_study.py` on validation rows carved from training data; the numbers behind them are
in docs/training.md ("Length of training and learning rate") and benchmarks/results/recipe_study.md.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seqtune.config import RunConfig
    from seqtune.tasks import TaskSpec

DEFAULT_LR = 8e-5  # single-label and regression: the hyperparameter search's best on MRPC
MULTI_LABEL_LR = 2e-4  # NLU++ hotels, validation carved from train: micro-F1 0.68 against 0.56 at 8e-5
LORA_LR = 5e-4  # --lora, rank 8, carved validation, one seed: MRPC 0.808 (0.801 at 2e-3), RTE 0.594 (0.514)
TRAIN_LAYERS_LR = 2e-4  # --train-layers: MRPC carved, top 3, seeds 42-43: 0.812 against 0.789 at 8e-5


def auto_lr(lr: float | None, multi_label: bool, lora: bool = False, train_layers: int | None = None) -> float:
    """``train.lr``, or its automatic value when it is ``None``: for the problem type, for LoRA adapters (they start
    at zero and need a larger rate), and for ``--train-layers`` (only the top layers and the head move, on a bottom
    that stays put: a larger rate is safe there and learns more in the same steps).

    Example:
        >>> auto_lr(None, multi_label=True), auto_lr(3e-5, multi_label=True), auto_lr(None, False, lora=True)
        (0.0002, 3e-05, 0.0005)
        >>> auto_lr(None, False, train_layers=3), auto_lr(None, False)
        (0.0002, 8e-05)
    """
    if lr is not None:
        return lr
    if lora:
        return LORA_LR
    if train_layers:
        return max(TRAIN_LAYERS_LR, MULTI_LABEL_LR if multi_label else DEFAULT_LR)
    return MULTI_LABEL_LR if multi_label else DEFAULT_LR


def auto_epochs(steps_per_epoch: int, min_steps: int, max_epochs: float) -> float:
    """``train.epochs: null``: 3 passes, or as many more (whole passes, at most ``max_epochs``) as it takes to reach
    ``min_steps`` optimizer steps.

    Example:
        >>> auto_epochs(steps_per_epoch=230, min_steps=600, max_epochs=20), auto_epochs(29, 600, 20)
        (3, 20)
    """
    return max(3, min(math.ceil(min_steps / steps_per_epoch), max_epochs))


def prior_init(cfg: RunConfig, task: TaskSpec) -> bool:
    """``model.prior_init``, or its automatic value: on for multi-label tasks (NLU++ hotels: micro-F1 0.00 -> 0.56
    at 20 epochs) and regression (the head then trains in units of the targets' spread, whatever their scale), off
    for single-label tasks."""
    if cfg.model.prior_init is not None:
        return cfg.model.prior_init
    return task.is_multi_label or task.is_regression


AUTO_REINIT_LAYERS = 1  # carved validation, seeds 42-44: CoLA +2.6, RTE +1.1, STS-B +0.4, NLU++ +0.6, CLINC150 +0.4


def reinit_layers(cfg: RunConfig, classifier_checkpoint: bool) -> int:
    """``model.reinit_layers``, or its automatic value: the top layer re-initialised when every weight of a
    pretrained encoder trains (measured on carved validation: docs/training.md); none when only part of the model
    trains (``--lora``, ``--train-layers``: a fresh layer must train in full), when the weights are random anyway
    (``--from-scratch``), or when the checkpoint is already a sequence classifier (training on from a fine-tuned
    model keeps what it learnt).

    Example:
        >>> from seqtune.config import RunConfig
        >>> cfg = RunConfig()
        >>> reinit_layers(cfg, classifier_checkpoint=False), reinit_layers(cfg, classifier_checkpoint=True)
        (1, 0)
        >>> cfg.model.lora_rank = 8
        >>> reinit_layers(cfg, classifier_checkpoint=False)
        0
    """
    if cfg.model.reinit_layers is not None:
        return cfg.model.reinit_layers
    partial = cfg.model.lora_rank or cfg.train.train_layers or cfg.model.from_scratch
    return 0 if partial or classifier_checkpoint else AUTO_REINIT_LAYERS


AUTO_DROPOUT = 0.0  # carved validation: CoLA +2.6 (six seeds, each higher), STS-B, RTE, MRPC, NLU++ within noise


def dropout(cfg: RunConfig) -> float | None:
    """``model.dropout``, or its automatic value: every dropout off when every weight of a pretrained encoder trains
    (measured on carved validation: docs/training.md "Dropout"); the checkpoint's own (``None``: BERT's 0.1) when
    only part of the model trains (``--lora``, ``--train-layers``) or the weights start random (``--from-scratch``),
    where nothing was measured against it.

    Example:
        >>> from seqtune.config import RunConfig
        >>> cfg = RunConfig()
        >>> dropout(cfg)
        0.0
        >>> cfg.model.lora_rank = 8
        >>> dropout(cfg) is None
        True
        >>> cfg.model.dropout = 0.1
        >>> dropout(cfg)
        0.1
    """
    if cfg.model.dropout is not None:
        return cfg.model.dropout
    partial = cfg.model.lora_rank or cfg.train.train_layers or cfg.model.from_scratch
    return None if partial else AUTO_DROPOUT
