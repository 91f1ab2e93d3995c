"""``metrics.json``, typed: `RunMetrics` for a trained run, `SeedsMetrics` for a ``--seeds`` folder (and a seed
ensemble). Each field is written by one place (`seqtune.outcome` and `seqtune.seeds`) and read back here; the card,
report, plots, ``seqtune glue`` and resumed results read attributes, not string keys.

``from_json`` takes what older seqtune versions wrote: a missing key gets the field's default.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqtune.errors import SeqtuneError
from seqtune.runfolder import METRICS_FILE, write_metrics


class _JSONRecord:
    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls, data: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})

    def write(self, run_dir: Path) -> None:
        write_metrics(run_dir, self.to_json())


@dataclass
class RunMetrics(_JSONRecord):
    """What a finished run measured, as written by `seqtune.outcome.finish`."""

    task: str | None = None
    selection_metric: str | None = None
    best: dict[str, Any] | None = None
    """The kept evaluation: ``step``, ``epoch``, ``score``, ``metrics`` (split -> name -> value), ``threshold``;
    ``None`` when no evaluation gave a finite score."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Every evaluation, in order: ``step``, ``epoch``, ``metrics``."""
    train_seconds: float = 0.0
    tokens_per_second: float = 0.0
    padding_share: float | None = None
    device: str | None = None
    precision: str | None = None
    distributed: dict[str, Any] = field(default_factory=dict)
    train_length_counts: list[int] = field(default_factory=list)
    """Training examples per token length (index = length), for the report's histogram."""
    max_length: int | None = None
    long_inputs: str | None = None
    """How texts longer than ``max_length`` were read, in one line (`seqtune.long_inputs.describe`)."""
    environment: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    threshold: dict[str, Any] | None = None
    """The tuned decision threshold: ``value``, ``split``, ``metric``, ``score_at_0.5``, ``score``."""

    def best_scores(self, split: str) -> dict[str, float]:
        """The kept evaluation's metrics on ``split`` (empty when there is none)."""
        return dict((self.best or {}).get("metrics", {}).get(split, {}))


@dataclass
class SeedsMetrics(_JSONRecord):
    """A ``--seeds N`` folder, as written by `seqtune.seeds.train_seeds`."""

    seeds: int = 0
    runs: list[str] = field(default_factory=list)
    summary: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per metric of the first evaluation split: ``mean``, ``std``, ``ci95``, ``values``."""
    ensemble: dict[str, Any] | None = None
    """With ``--ensemble``: ``members``, ``combine``, ``metrics``, ``gain_over_seed_mean``, ``threshold``."""


def read_metrics(run_dir: Path) -> RunMetrics | SeedsMetrics:
    """The folder's ``metrics.json``: `SeedsMetrics` for a ``--seeds`` folder, else `RunMetrics`."""
    path = run_dir / METRICS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SeqtuneError(f"{path}: unreadable ({exc}); is this a finished seqtune run?") from None
    if not isinstance(data, dict):
        raise SeqtuneError(f"{path}: expected a JSON object")
    return SeedsMetrics.from_json(data) if "seeds" in data else RunMetrics.from_json(data)


def read_run_metrics(run_dir: Path) -> RunMetrics:
    """The ``metrics.json`` of one trained run."""
    metrics = read_metrics(run_dir)
    if not isinstance(metrics, RunMetrics):
        raise SeqtuneError(f"{run_dir}: a --seeds folder, not one run; pass one of its seed-N folders")
    return metrics
