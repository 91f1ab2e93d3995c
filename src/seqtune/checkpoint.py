"""Resumable checkpoints: model, optimizer, scheduler, RNG states and the loop's position, written atomically.

A checkpoint is written into ``.tmp-step-N`` and renamed to ``step-N`` only when complete, so a crash mid-write
leaves the previous checkpoint as the latest. Everything loads with ``weights_only=True`` (no pickle code).
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

from seqtune.errors import SeqtuneError
from seqtune.runfolder import (
    CHECKPOINTS,
    CKPT_AVERAGE,
    CKPT_OPTIMIZER,
    CKPT_RNG,
    CKPT_SCHEDULER,
    CKPT_STATE,
    EVAL_PREDICTIONS,
    WEIGHTS_FILE,
    rank_rng_file,
)

_STEP = re.compile(r"^step-(\d+)$")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    loop_state: dict[str, Any],
    keep: int,
    rank_rngs: list[dict[str, Any]] | None = None,
    average: torch.nn.Module | None = None,
) -> Path:
    """Write ``run_dir/checkpoints/step-<step>`` atomically and prune all but the newest ``keep``.

    ``rank_rngs``: in a distributed run, every process's RNG state in rank order (``rng-rank<N>.pt`` each).
    ``average``: with ``--ema``, the `torch.optim.swa_utils.AveragedModel` of the weights.

    A failed write (disk full, ...) removes its half-written folder and raises `SeqtuneError`; the checkpoints
    written before stay as they were.
    """
    root = run_dir / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".*-step-*"):  # left by a process killed mid-write or mid-delete
        shutil.rmtree(stale, ignore_errors=True)
    final = root / f"step-{step}"
    tmp = root / f".tmp-step-{step}"
    try:
        tmp.mkdir()
        save_model(model, str(tmp / WEIGHTS_FILE))
        if average is not None:
            save_model(average, str(tmp / CKPT_AVERAGE))
        for name, obj in ((CKPT_OPTIMIZER, optimizer.state_dict()), (CKPT_SCHEDULER, scheduler.state_dict())):
            _torch_save(obj, tmp / name)
        _torch_save(rng_state(), tmp / CKPT_RNG)
        for rank, state in enumerate(rank_rngs or []):
            if rank:  # rank 0's is rng.pt, as in a single-process run
                _torch_save(state, tmp / rank_rng_file(rank))
        (tmp / CKPT_STATE).write_text(json.dumps(loop_state, indent=1))
        for f in tmp.iterdir():
            with f.open("rb") as fh:
                os.fsync(fh.fileno())
    except WRITE_ERRORS as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(final, exc, run_dir) from None
    if final.exists():  # a re-run of the same step after a resume: replace it (never leave a half-deleted step-N)
        _remove(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    for old in list_checkpoints(run_dir)[:-keep]:
        _remove(old)
    return final


def _remove(path: Path) -> None:
    """Rename out of the ``step-N`` namespace first, so a kill mid-delete never leaves a partial checkpoint."""
    doomed = path.with_name(f".del-{path.name}")
    os.replace(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


# What a failed write raises: Python's OSError; safetensors' own error and torch.save's RuntimeError wrap the OS one.
WRITE_ERRORS = (OSError, SafetensorError, RuntimeError)


def _torch_save(obj: Any, path: Path) -> None:
    with path.open("wb") as f:  # through a Python file, so an OS write error stays visible (as __context__)
        torch.save(obj, f)


def os_error(exc: BaseException) -> tuple[int | None, str]:
    """The errno and OS message behind a write error, however safetensors or torch wrapped it."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen.errno, seen.strerror or str(seen)
        seen = seen.__cause__ or seen.__context__
    found = re.search(r"(?:I/O error: )?([^:]*?) \(os error (\d+)\)", str(exc))  # safetensors (Rust io::Error)
    if found:
        return int(found.group(2)), found.group(1)
    return None, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def write_error(path: Path, exc: BaseException, run_dir: Path) -> SeqtuneError:
    """A failed checkpoint write as one line: what failed, what is still safe, the fix."""
    latest = latest_checkpoint(run_dir)
    kept = f"the last complete checkpoint {latest} is intact" if latest else "no earlier checkpoint exists"
    code, reason = os_error(exc)
    if code == errno.ENOSPC:
        return SeqtuneError(
            f"{path}: cannot save the checkpoint: no space left on device; {kept}. Free some disk space (or start "
            f"the run with --output on a disk with room), then continue with: seqtune train --resume --output {run_dir}"
        )
    return SeqtuneError(f"{path}: cannot save the checkpoint ({reason}); {kept}")


def save_best(best_dir: Path, model: torch.nn.Module, arrays: dict[str, np.ndarray], run_dir: Path) -> None:
    """The best model's weights and its dev predictions, each file replaced atomically."""
    try:
        best_dir.mkdir(parents=True, exist_ok=True)
        save_model(model, str(best_dir / "model.tmp"))
        (best_dir / "model.tmp").replace(best_dir / WEIGHTS_FILE)
        with (best_dir / "eval_predictions.tmp").open("wb") as f:
            np.savez(f, **arrays)
        (best_dir / "eval_predictions.tmp").replace(best_dir / EVAL_PREDICTIONS)
    except WRITE_ERRORS as exc:
        for name in ("model.tmp", "eval_predictions.tmp"):
            (best_dir / name).unlink(missing_ok=True)
        raise write_error(best_dir, exc, run_dir) from None


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (half-written ``.tmp-*`` folders are never listed)."""
    root = run_dir / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def saved_world_size(path: Path) -> int:
    """How many processes trained the run that wrote this checkpoint."""
    return int(json.loads((path / CKPT_STATE).read_text()).get("world_size", 1))


def load_checkpoint(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    rank: int = 0,
    average: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """Restore everything saved by `save_checkpoint`; returns the loop state. ``rank``: whose RNG state to load.

    Tensors and plain containers only (``weights_only=True``): a file holding any other pickled object is
    refused, never executed.
    """
    load_model(model, str(path / WEIGHTS_FILE))
    if average is not None:
        load_model(average, str(path / CKPT_AVERAGE))
    optimizer.load_state_dict(_load(path / CKPT_OPTIMIZER))
    scheduler.load_state_dict(_load(path / CKPT_SCHEDULER))
    set_rng_state(_load(path / rank_rng_file(rank)))
    return json.loads((path / CKPT_STATE).read_text())


def _load(path: Path) -> Any:
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = [line.strip() for line in str(exc).splitlines() if "Unsupported global" in line]
        detail = f" ({found[0]})" if found else ""
        raise SeqtuneError(
            f"{path}: refused to load: it holds more than tensors and plain data{detail}, which a seqtune checkpoint "
            "never does; delete this checkpoint folder and resume from an earlier one (or start again)"
        ) from None
