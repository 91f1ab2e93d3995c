"""Forward passes without gradients: logits for a tokenized split in its original row order, and evaluation."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict

from seqtune.batching import Collator, column, sorted_order, take_rows
from seqtune.distributed import World
from seqtune.errors import SeqtuneError
from seqtune.long_inputs import per_document
from seqtune.metrics import compute_metrics
from seqtune.tasks import TaskSpec

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CPU_FLAGS = (*CPU_BF16_FLAGS, "avx512_vnni")  # what decides bf16 and int8 speed: recorded with runs and benchmarks
# What ``precision: auto`` resolves to when set (``bf16`` or ``fp32``), whatever the hardware: lets a developer on an
# AVX2 machine see what a bf16 machine computes (``pytest --auto-precision bf16`` sets it), and the reverse.
AUTO_PRECISION_ENV = "SEQTUNE_AUTO_PRECISION"


def cpu_flags() -> list[str]:
    """The speed-relevant flags (`CPU_FLAGS`) this CPU has, from /proc/cpuinfo (empty elsewhere, or AVX2-only)."""
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.is_file() else ""
    return [flag for flag in CPU_FLAGS if flag in text]


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs fast here (not merely runs): native bf16 matmuls on the GPU or CPU.

    CPUs without AVX512-BF16/AMX emulate bf16 matmuls many times slower than fp32, so they get fp32.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return any(flag in CPU_BF16_FLAGS for flag in cpu_flags())
    return False


def resolve_precision(requested: str, device: torch.device) -> str:
    """``auto`` -> ``bf16`` where it is native, else ``fp32`` (or what ``SEQTUNE_AUTO_PRECISION`` says); explicit
    choices are kept."""
    if requested != "auto":
        return requested
    forced = os.environ.get(AUTO_PRECISION_ENV, "").strip().lower()
    if forced in ("bf16", "fp32"):
        return forced
    if forced:
        raise SeqtuneError(f"{AUTO_PRECISION_ENV}={forced!r}: expected bf16 or fp32 (or unset it to pick by hardware)")
    return "bf16" if bf16_supported(device) else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


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
