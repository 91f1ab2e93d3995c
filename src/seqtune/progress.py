"""Progress bars and messages on rich; silent (but for errors and the final summary) in quiet mode."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class Reporter:
    """What the training loop tells the user. ``quiet`` keeps only `summary`."""

    def __init__(self, quiet: bool = False, enabled: bool = True):
        self.quiet = quiet or not enabled
        self.enabled = enabled  # False on non-main processes of a distributed run
        self.console = Console(stderr=True, highlight=False)
        self._progress: Progress | None = None

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message)

    def warn(self, message: str) -> None:
        """One line on stderr, also in quiet mode: something the user must know about the result."""
        if self.enabled:
            print(f"seqtune: warning: {message}", file=sys.stderr, flush=True)

    def summary(self, message: str) -> None:
        if self.enabled:
            print(message, file=sys.stdout, flush=True)

    @contextmanager
    def bar(self, description: str, total: int, completed: int = 0) -> Iterator[Progress | None]:
        """A progress bar with free-form fields (loss, lr, tokens/s) shown after it."""
        if self.quiet:
            yield None
            return
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        with progress:
            progress.add_task(description, total=total, completed=completed, status="")
            yield progress


@contextmanager
def hf_progress(enabled: bool) -> Iterator[None]:
    """Turn the `datasets` / `transformers` progress bars on or off for a block (restored afterwards)."""
    from datasets.utils import logging as ds_logging
    from transformers.utils import logging as tf_logging

    was_ds, was_tf = ds_logging.is_progress_bar_enabled(), tf_logging.is_progress_bar_enabled()
    (ds_logging.enable_progress_bar if enabled else ds_logging.disable_progress_bar)()
    (tf_logging.enable_progress_bar if enabled else tf_logging.disable_progress_bar)()
    try:
        yield
    finally:
        (ds_logging.enable_progress_bar if was_ds else ds_logging.disable_progress_bar)()
        (tf_logging.enable_progress_bar if was_tf else tf_logging.disable_progress_bar)()
