"""Where training metrics go: ``train_log.jsonl`` always, and TensorBoard when asked (``--report-to tensorboard``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqtune import runfolder
from seqtune.errors import SeqtuneError

TRACKERS = ("tensorboard",)


class Tracker:
    """Writes each log record and evaluation; TensorBoard event files go to ``<run>/tensorboard``.

    ``enabled=False`` (the other processes of a distributed run) writes nothing.
    """

    def __init__(self, run_dir: Path, report_to: str | None = None, enabled: bool = True):
        self.run_dir = run_dir
        self.enabled = enabled
        self.writer = None
        if report_to == "tensorboard" and enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise SeqtuneError(
                    "--report-to tensorboard needs the tensorboard package: pip install 'seqtune[tensorboard]'"
                ) from None
            self.writer = SummaryWriter(log_dir=str(run_dir / runfolder.TENSORBOARD_DIR))

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        runfolder.append_log(self.run_dir, record)
        if self.writer is not None:
            for key in ("loss", "lr", "tokens_per_second"):
                self.writer.add_scalar(f"train/{key}", record[key], record["step"])

    def log_eval(self, step: int, metrics: dict[str, dict[str, float]]) -> None:
        if self.writer is not None:
            for split, values in metrics.items():
                for name, value in values.items():
                    self.writer.add_scalar(f"{split}/{name}", value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
