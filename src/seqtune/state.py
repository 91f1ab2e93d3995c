"""The training loop's progress as one typed object: saved into every checkpoint, restored on resume."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoopState:
    """Where a run is. Everything here goes into a checkpoint's ``state.json``, so a resumed run continues exactly.

    Attributes:
        step: optimizer steps done.
        epoch: the epoch in progress (0-based).
        batch_in_epoch: optimizer steps done within that epoch (the position in its batch order).
        best: the best evaluation so far (``step``, ``epoch``, ``train_seconds``, ``metrics``, ``score``), or ``None``
            while no evaluation produced a finite selection score.
        history: every evaluation, in order.
        bad_evals: evaluations in a row without improvement (early stopping).
        tokens: real (non-padding) tokens trained on; ``padded_tokens``: token slots including padding.
        train_seconds: time spent in training steps (evaluation and saving excluded).
        world_size: processes the run trains with (a resume must use the same number).
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    bad_evals: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    train_seconds: float = 0.0
    world_size: int = 1

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.train_seconds if self.train_seconds else 0.0

    @property
    def padding_share(self) -> float:
        return 1 - self.tokens / self.padded_tokens if self.padded_tokens else 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoopState:
        """The state a checkpoint saved; keys this version does not know are ignored, missing ones default."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})
