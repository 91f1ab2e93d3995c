"""When a run must stop: SIGINT/SIGTERM (after the current step, with a checkpoint) and a non-finite loss (before
it reaches the weights)."""

from __future__ import annotations

import math
import signal
import threading
from pathlib import Path
from typing import Any

from seqtune.checkpoint import latest_checkpoint
from seqtune.errors import SeqtuneError


class StopSignals:
    """SIGINT/SIGTERM ask the loop to stop after the current step (it then saves a checkpoint); a second
    Ctrl-C stops at once. Only installed in the main thread, where Python delivers signals."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def check_loss(loss: float, step: int, run_dir: Path) -> None:
    """Stop before a non-finite loss reaches the weights (the optimizer step would spread NaN everywhere)."""
    if math.isfinite(loss):
        return
    latest = latest_checkpoint(run_dir)
    kept = f"the last good checkpoint is kept in {latest}" if latest else "no checkpoint was saved before it"
    raise SeqtuneError(
        f"step {step}: loss is {loss}; {kept}; likely causes: learning rate too high (try --lr smaller), "
        "bf16 overflow (try --precision fp32), or bad inputs (regression targets far out of range)"
    )
