"""``--ema DECAY``: an exponential moving average of the weights, which is what gets evaluated and kept.

After every optimizer step the average moves towards the live weights, ``avg = DECAY * avg + (1 - DECAY) * w``
(`torch.optim.swa_utils.AveragedModel` with `get_ema_multi_avg_fn`; the first step copies the weights). Each
evaluation scores the average, which selects the kept checkpoint, stops early and tunes the threshold; the live
weights are scored too and recorded beside it (``history[i]["live"]``), so a run shows what the average bought. The
average is saved in every checkpoint (`seqtune.runfolder.CKPT_AVERAGE`), so a resumed run continues it exactly.
"""

from __future__ import annotations

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class WeightAverage:
    """The moving average of a model's weights, kept in a copy of the model (same class, so it is evaluated,
    saved and loaded like the model itself).

    Example:
        >>> layer = torch.nn.Linear(1, 1, bias=False)
        >>> average = WeightAverage(layer, decay=0.5)
        >>> for value in (2.0, 4.0):
        ...     _ = layer.weight.data.fill_(value)
        ...     average.update(layer)
        >>> average.model.weight.item()  # 2 (first step: a copy), then 0.5 * 2 + 0.5 * 4
        3.0
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)
        self.averaged.eval()

    def update(self, model: torch.nn.Module) -> None:
        """Fold the live weights in, after an optimizer step."""
        self.averaged.update_parameters(model)

    @property
    def model(self) -> torch.nn.Module:
        """The averaged model: evaluate, save or load it like the live one."""
        return self.averaged.module
