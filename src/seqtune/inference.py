"""Forward passes without gradients: logits for a tokenized split in its original row order, and evaluation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict

from seqtune.batching import Collator, column, sorted_order, take_rows
from seqtune.distributed import World
from seqtune.long_inputs import per_document
from seqtune.metrics import compute_metrics
from seqtune.precision import autocast
from seqtune.tasks import TaskSpec


def infer_logits(
    model: torch.nn.Module,
    ds: Dataset,
    collator: Collator,
    batch_size: int,
    device: torch.device,
    precision: str = "fp32",
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Logits (float32, shape [n, num_labels]) for every row of a tokenized split.

    Rows are run longest-first so each batch carries little padding, then put back in the split's order.
    """
    model.eval()
    order = sorted_order(column(ds, "length"), batch_size)
    out: np.ndarray | None = None
    with torch.inference_mode(), autocast(device, precision):
        for idxs in order:
            batch = collator(take_rows(ds, idxs))
            batch.pop("labels", None)
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu().numpy()
            if out is None:
                out = np.empty((len(ds), logits.shape[-1]), dtype=np.float32)
            out[idxs] = logits
            if on_batch is not None:
                on_batch(len(idxs))
    assert out is not None, "infer_logits needs a non-empty dataset"  # callers check; internal invariant
    return out


def evaluate(
    model: torch.nn.Module,
    encoded: DatasetDict,
    task: TaskSpec,
    collator: Collator,
    batch_size: int,
    device: torch.device,
    precision: str,
    bar: Any = None,
    world: World | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """The task's metrics on each of its evaluation splits, and the logits behind them.

    ``bar``: a rich Progress to show evaluation in. ``world``: in a distributed run each process scores its
    share of the rows and every process gets all the logits back, each row exactly once.
    """
    results, all_logits = {}, {}
    for split in task.eval_splits:
        ds = encoded[split]
        task_id = bar.add_task(f"eval {split}", total=len(ds), status="") if bar is not None else None
        on_batch = (lambda n, tid=task_id: bar.update(tid, advance=n)) if bar is not None else None
        if world is None or world.size == 1:
            logits = infer_logits(model, ds, collator, batch_size, device, precision, on_batch)
        else:
            rows = world.split_rows(len(ds))
            local = (
                infer_logits(model, ds.select(rows), collator, batch_size, device, precision, on_batch)
                if len(rows)
                else np.empty((0, task.num_labels), dtype=np.float32)
            )
            logits = world.join_rows(len(ds), rows, local)
        if bar is not None:
            bar.remove_task(task_id)
        logits, labels = per_document(ds, logits, task.is_multi_label)  # windows of a document -> one prediction
        results[split] = compute_metrics(task, logits, labels)
        all_logits[split] = logits
    return results, all_logits
