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
        self.decay = decay

    def update(self, model: torch.nn.Module) -> None:
        """Fold the live weights in, after an optimizer step. After the first step (a copy of every weight) only the
        weights that train are folded in: a frozen one (``--train-layers``, ``--lora``) equals its average already,
        and the frozen word embeddings alone are half of MiniLM."""
        if self.averaged.n_averaged.item() == 0:
            self.averaged.update_parameters(model)
            return
        both = zip(self.averaged.module.parameters(), model.parameters(), strict=True)
        pairs = [(a, w) for a, w in both if w.requires_grad]
        if pairs:
            with torch.no_grad():
                torch._foreach_lerp_([a for a, _ in pairs], [w.detach() for _, w in pairs], 1 - self.decay)
        self.averaged.n_averaged += 1

    @property
    def model(self) -> torch.nn.Module:
        """The averaged model: evaluate, save or load it like the live one."""
        return self.averaged.module
