"""The end of a training run: the result object, and the finished run folder (best weights, metrics, report)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors.torch import load_model as load_weights

from seqtune import runfolder
from seqtune.batching import column
from seqtune.long_inputs import describe, per_document
from seqtune.lora import merged
from seqtune.metrics import compute_metrics, is_better, trivial_baseline, undefined_reason
from seqtune.model_card import write_model_card
from seqtune.progress import hf_progress
from seqtune.report import write_report
from seqtune.run_metrics import RunMetrics, read_run_metrics
from seqtune.state import LoopState
from seqtune.tasks import TaskSpec

if TYPE_CHECKING:
    from seqtune.setup_steps import RunContext


@dataclass
class TrainResult:
    """What a run produced. ``best`` holds the step, epoch and per-split metrics of the kept checkpoint."""

    run_dir: Path
    task: TaskSpec
    best: dict[str, Any] | None
    history: list[dict[str, Any]]
    completed: bool
    train_seconds: float
    tokens_per_second: float
    warnings: list[str] = field(default_factory=list)


def result(
    run_dir: Path, task: TaskSpec, state: LoopState, completed: bool, warnings: list[str] | None = None
) -> TrainResult:
    return TrainResult(
        run_dir, task, state.best, state.history, completed, state.train_seconds, state.tokens_per_second,
        warnings or [],
    )  # fmt: skip


def finished_result(run_dir: Path) -> TrainResult:
    """The result of a run that finished earlier, read back from its folder."""
    m = read_run_metrics(run_dir)
    task = runfolder.load_task(run_dir)
    return TrainResult(run_dir, task, m.best, m.history, True, m.train_seconds, m.tokens_per_second, m.warnings)


def with_tuned_threshold(
    task: TaskSpec, best: dict[str, Any], predictions: dict[str, np.ndarray]
) -> tuple[TaskSpec, dict[str, Any]]:
    """The task with the best evaluation's tuned decision threshold, and what metrics.json records of it: the
    threshold, and the selection metric at 0.5 and at the threshold."""
    split = task.eval_splits[0]
    at_half = compute_metrics(task, predictions[f"{split}/logits"], predictions[f"{split}/labels"])
    record = {
        "value": best["threshold"],
        "split": split,
        "metric": task.selection_metric,
        "score_at_0.5": at_half[task.selection_metric],
        "score": best["score"],
    }
    return replace(task, threshold=best["threshold"]), record


def quality_warnings(
    task: TaskSpec, best: dict[str, Any] | None, predictions: dict[str, np.ndarray] | None, train_labels: np.ndarray
) -> list[str]:
    """What the user must hear about a finished run's result: no evaluation gave a usable score, or the best one is
    no better than a model that learned nothing (`trivial_baseline`)."""
    split = task.eval_splits[0]
    if predictions is None or f"{split}/logits" not in predictions:
        return []
    logits, labels = predictions[f"{split}/logits"], predictions[f"{split}/labels"]
    metric = task.selection_metric
    if best is None:
        reason = undefined_reason(task, logits, labels)
        return [f"no evaluation produced a usable {metric} ({reason}); the last weights are kept"]
    what, baseline = trivial_baseline(task, train_labels, labels)
    score = compute_metrics(task, logits, labels)[metric]  # with the run's decision threshold, if it has one
    if is_better(task, score, baseline):
        return []
    return [
        f"the best {split} {metric} ({score:.4f}) is no better than predicting {what} ({baseline:.4f}): "
        "the model learned nothing usable; try more epochs or another learning rate"
    ]


def finish(ctx: RunContext, state: LoopState) -> TrainResult:
    """Finish a run whose loop is done: on the main process, put the best weights in the run folder root with the
    tokenizer, metrics, model card and report; every process returns the result.

    When no evaluation gave a finite score, the ``best`` checkpoint folder holds the last evaluation's weights.
    """
    finished = ctx.world.on_main(lambda: _write_finished_run(ctx, state))
    return finished if ctx.world.is_main else result(ctx.run_dir, ctx.task, state, completed=True)


def _write_finished_run(ctx: RunContext, state: LoopState) -> TrainResult:
    run_dir, task, model = ctx.run_dir, ctx.task, ctx.unwrapped
    best_dir = run_dir / runfolder.CHECKPOINTS / runfolder.BEST_CHECKPOINT
    predictions = None
    if (best_dir / runfolder.WEIGHTS_FILE).is_file():
        load_weights(model, str(best_dir / runfolder.WEIGHTS_FILE))
        shutil.copyfile(best_dir / runfolder.EVAL_PREDICTIONS, run_dir / runfolder.EVAL_PREDICTIONS)
        with np.load(run_dir / runfolder.EVAL_PREDICTIONS) as saved:
            predictions = {k: saved[k] for k in saved.files}
    train_ds = ctx.encoded["train"]
    threshold = None
    if predictions is not None and state.best is not None and state.best.get("threshold") is not None:
        task, threshold = with_tuned_threshold(task, state.best, predictions)
    warnings = quality_warnings(task, state.best, predictions, per_document(train_ds, None, False)[1])
    with hf_progress(False):
        merged(model).save_pretrained(run_dir)  # LoRA: adapters folded in, so the folder is a plain model
        ctx.tokenizer.save_pretrained(run_dir)
    metrics = RunMetrics(
        task=task.name,
        selection_metric=task.selection_metric,
        best=state.best,
        history=state.history,
        train_seconds=state.train_seconds,
        tokens_per_second=state.tokens_per_second,
        padding_share=state.padding_share,
        device=ctx.device.type,
        precision=ctx.precision,
        distributed=ctx.distributed(),
        train_length_counts=np.bincount(column(train_ds, "length")).tolist(),
        max_length=ctx.max_length,
        long_inputs=describe(train_ds, ctx.cfg.data.long_inputs, ctx.max_length),
        environment=runfolder.environment(),
        warnings=warnings,
        threshold=threshold,
    )
    metrics.write(run_dir)
    write_model_card(run_dir, ctx.cfg, task, metrics)
    write_report(run_dir, task)
    runfolder.save_task(run_dir, task)  # last: its presence marks a finished run
    shutil.rmtree(run_dir / runfolder.CHECKPOINTS, ignore_errors=True)
    done = result(run_dir, task, state, completed=True, warnings=warnings)
    for warning in warnings:
        ctx.reporter.warn(warning)
    best = state.best["metrics"][task.eval_splits[0]] if state.best else {}
    shown = " ".join(f"{k}={v:.4f}" for k, v in best.items())
    ctx.reporter.summary(
        f"{task.name} done in {done.train_seconds:.0f}s ({done.tokens_per_second:,.0f} tok/s): {shown} -> {run_dir}"
    )
    return done
