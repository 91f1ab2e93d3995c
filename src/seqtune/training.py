"""The training loop, top to bottom: `seqtune.setup_steps.setup` builds what a run needs, `train` loops over
optimizer steps, evaluates every epoch (or every N steps), keeps the best checkpoint by the task's metric, and
`seqtune.outcome.finish` writes the run folder.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from seqtune import checkpoint as ckpt
from seqtune import runfolder
from seqtune.batching import column, length_grouped_order, random_order
from seqtune.clipping import clip_gradients
from seqtune.config import RunConfig
from seqtune.distributed import step_share
from seqtune.fast_dropout import FastDropout
from seqtune.inference import evaluate
from seqtune.long_inputs import per_document
from seqtune.losses import loss_sum
from seqtune.metrics import compute_metrics, is_better, tune_threshold
from seqtune.outcome import TrainResult, finish, finished_result, result
from seqtune.pair_order import SWAPPED, draw_orders, rows_of
from seqtune.precision import autocast
from seqtune.progress import Reporter
from seqtune.setup_steps import AlreadyFinished, RunContext, setup, setup_data, setup_optimizer
from seqtune.state import LoopState
from seqtune.stopping import StopSignals, check_loss

__all__ = ["train", "train_step", "setup_data", "setup_optimizer"]


@dataclass
class Session:
    """What this process's call of `train` tracks besides the saved `LoopState` (not checkpointed)."""

    steps: int = 0  # optimizer steps taken in this call (``stop_after_steps`` counts these)
    last_saved: int = -1  # the step of the last checkpoint written: at most one per step
    window_loss: float = 0.0  # summed step losses since the last log line
    window_steps: int = 0
    last_saved_at: float = field(default_factory=time.monotonic)  # when the last checkpoint was written (or start)


def train(
    cfg: RunConfig,
    *,
    stop_after_steps: int | None = None,
    on_evaluate: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Fine-tune as configured and write the run folder.

    Runs unchanged under ``torchrun`` / ``accelerate launch``: ``train.batch_size`` is then per process, each
    process trains on its share of every step, and only the main process writes (see `seqtune.distributed`).

    Args:
        cfg: the run configuration (see `seqtune.config`); it is not changed.
        stop_after_steps: save a checkpoint and return after this many optimizer steps in this call, as a
            preempted job would; continue later with ``cfg.resume = True``.
        on_evaluate: called as ``on_evaluate(evaluation_index, selection_score)`` after every evaluation; it may
            raise to abort the run (hyperparameter search prunes trials this way).

    Example:
        >>> from seqtune import load_config, train
        >>> result = train(load_config(None, ["task=mrpc", "data.data_dir=../shared/glue"]))  # doctest: +SKIP
        >>> result.best["metrics"]["validation"]["accuracy"]  # doctest: +SKIP
    """
    try:
        ctx, state = setup(cfg)
    except AlreadyFinished as done:
        Reporter(cfg.quiet).summary(f"{done.run_dir}: already finished; nothing to do")
        return finished_result(done.run_dir)
    session = Session()
    ctx.model.train()
    with (
        ctx.reporter.bar("training", ctx.total_steps, state.step) as bar,
        StopSignals() as signals,
        contextlib.closing(ctx.tracker),  # closed on any exit: a pruned search trial raises out of on_evaluate
    ):
        while state.step < ctx.total_steps:
            order = epoch_order(ctx, state.epoch)
            while state.batch_in_epoch < len(order) and state.step < ctx.total_steps:
                stop, clock_due = optimizer_step(ctx, state, session, order[state.batch_in_epoch], signals)
                log_step(ctx, state, session, bar)
                epoch_done = state.batch_in_epoch == len(order)
                every = ctx.cfg.train.eval_every
                if (every and state.step % every == 0) or (not every and epoch_done) or state.step == ctx.total_steps:
                    if evaluate_and_checkpoint(ctx, state, session, bar, on_evaluate):
                        patience = ctx.cfg.train.early_stopping_patience
                        ctx.reporter.info(f"early stopping: no improvement in {patience} evaluations")
                        return finish(ctx, state)
                if checkpoint_due(ctx, state, clock_due):
                    save_checkpoint(ctx, state, session)
                asked = stop_after_steps is not None and session.steps >= stop_after_steps
                if (stop or asked) and state.step < ctx.total_steps:
                    save_checkpoint(ctx, state, session)
                    if stop:
                        ctx.reporter.summary(
                            f"stopped at step {state.step} ({signals.received or 'signal'}); checkpoint saved. "
                            f"Continue with: seqtune train --resume --output {ctx.run_dir}"
                        )
                    return result(ctx.run_dir, ctx.task, state, completed=False)
            if state.batch_in_epoch >= len(order):
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
        return finish(ctx, state)  # inside: the trackers see the finished run folder when they close


def epoch_order(ctx: RunContext, epoch: int) -> list[list[int]]:
    """The epoch's optimizer steps as lists of example indices: a pure function of (seed, epoch), so a resumed run
    sees exactly the batches an uninterrupted one would."""
    train_ds, seed = ctx.encoded["train"], ctx.cfg.seed
    if ctx.cfg.train.group_by_length:
        order = length_grouped_order(column(train_ds, "length"), ctx.step_size, seed, epoch)
    else:
        order = random_order(len(train_ds), ctx.step_size, seed, epoch)
    if SWAPPED in ctx.encoded:  # --swap-pairs: each example in one of its two orders (seqtune.pair_order)
        order = draw_orders(order, len(train_ds), seed, epoch)
    return order


def optimizer_step(
    ctx: RunContext, state: LoopState, session: Session, step_idxs: list[int], signals: StopSignals
) -> tuple[bool, bool]:
    """One optimizer step over ``step_idxs`` (this process's share of them). Returns whether any process was asked
    to stop (a signal) and whether the main process's clock says a checkpoint is due, so that every process acts
    at the same step."""
    started = time.perf_counter()
    idxs, weight = step_share(ctx.world, step_idxs)
    local = train_step(ctx, idxs, weight)
    minutes = ctx.cfg.train.save_every_minutes
    clock = bool(minutes and ctx.world.is_main and time.monotonic() - session.last_saved_at >= 60 * minutes)
    # one all-reduce per step (none alone): global loss and token counts, whether any process must stop, and the
    # main process's checkpoint clock
    step_loss, tokens, padded, stop, due = ctx.world.sum([*local, 1.0 if signals.received else 0.0, float(clock)])
    step_loss /= ctx.world.size
    check_loss(step_loss, state.step + 1, ctx.run_dir)  # NaN/inf: stop before it reaches the weights
    ctx.optimizer.step()
    if ctx.average is not None:
        ctx.average.update(ctx.unwrapped)
    ctx.scheduler.step()
    ctx.optimizer.zero_grad(set_to_none=True)
    state.step += 1
    state.batch_in_epoch += 1
    state.tokens += int(tokens)
    state.padded_tokens += int(padded)
    state.train_seconds += time.perf_counter() - started  # evaluation and saving not included
    session.steps += 1
    session.window_loss += step_loss
    session.window_steps += 1
    return stop > 0, due > 0


def train_step(ctx: RunContext, idxs: list[int], weight: float) -> list[float]:
    """Forward and backward over this process's examples of one optimizer step, in micro-batches of
    ``train.batch_size``; each example's loss counts ``weight`` (see `step_share`).

    Returns the step's weighted loss, the real tokens and the padded token slots it processed. The optimizer step
    itself is the caller's, so gradient accumulation stays visible in the loop.
    """
    accelerator, t = ctx.world.accelerator, ctx.cfg.train
    loss_total, tokens, padded = 0.0, 0, 0
    starts = range(0, len(idxs), t.batch_size)
    for start in starts:
        rows = idxs[start : start + t.batch_size]
        batch = ctx.collator(rows_of(ctx.encoded["train"], ctx.encoded.get(SWAPPED), rows))
        if weight:  # counted on the host copy: no extra device sync
            tokens += int(batch["attention_mask"].sum())
            padded += batch["attention_mask"].numel()
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        labels = batch.pop("labels")
        # DDP all-reduces gradients on the last micro-batch only; accumulating ones skip the communication
        sync = contextlib.nullcontext() if start == starts[-1] else accelerator.no_sync(ctx.model)
        # On a CPU, dropout's masks come from 16-bit random words: the same distribution, a fraction of the time (the
        # backward pass inside too, so any recomputed forward draws its masks the same way)
        masks = FastDropout() if accelerator.device.type == "cpu" else contextlib.nullcontext()
        with sync, masks:
            with autocast(accelerator.device, ctx.precision):
                if ctx.features is None:
                    logits = ctx.model(**batch).logits
                else:  # --train-layers: the top layers on the frozen bottom's cached output
                    logits = ctx.features.logits(ctx.model, ctx.unwrapped, rows, batch)
            loss = loss_sum(ctx.task, logits, labels, ctx.loss_weights, t.label_smoothing) * weight
            accelerator.backward(loss)
        loss_total += loss.item()  # a sync point, once per micro-batch: cheap next to the backward pass
    if t.max_grad_norm:  # the scaling itself happens in the optimizer's step where it can (seqtune.clipping)
        clip_gradients(ctx.model.parameters(), t.max_grad_norm, ctx.optimizer, ctx.embedding_grad)
    return [loss_total, tokens, padded]


def evaluate_and_checkpoint(
    ctx: RunContext,
    state: LoopState,
    session: Session,
    bar: Any,
    on_evaluate: Callable[[int, float], None] | None,
) -> bool:
    """Evaluate, track the best, save a resumable checkpoint. Returns True when early stopping says stop.

    With ``--ema`` the weight average is what is scored and kept; the live weights' metrics go beside it."""
    t, task = ctx.cfg.train, ctx.task
    kept = ctx.average.model if ctx.average is not None else ctx.unwrapped
    metrics, logits, threshold = score_weights(ctx, kept, bar)
    entry = {
        "step": state.step,
        "epoch": round(state.step / ctx.steps_per_epoch, 4),
        "train_seconds": round(state.train_seconds, 3),  # training time so far, evaluation excluded
        "metrics": metrics,
    }
    if threshold is not None:  # each evaluation is scored, and so selected, at its own best decision threshold
        entry["threshold"] = threshold
    if ctx.average is not None:
        live_metrics, _, live_threshold = score_weights(ctx, ctx.unwrapped, bar)
        entry["live"] = {"metrics": live_metrics}
        if live_threshold is not None:
            entry["live"]["threshold"] = live_threshold
    score = metrics[task.eval_splits[0]][task.selection_metric]
    state.history.append(entry)
    ctx.tracker.log_eval(state.step, metrics)
    improved = is_better(task, score, state.best["score"] if state.best else None)
    if improved:
        state.best = {**entry, "score": score}
        state.bad_evals = 0
    else:  # NaN (e.g. Pearson of constant predictions) is never better: no improvement for early stopping
        state.bad_evals += 1
    if improved or state.best is None:  # until a score is finite, the latest weights stand in for the best
        ctx.world.on_main(lambda: save_best(ctx, kept, logits))
    if on_evaluate is not None:
        on_evaluate(len(state.history) - 1, score)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics[task.eval_splits[0]].items())
    if "live" in entry:
        split, name = task.eval_splits[0], task.selection_metric
        shown += f" (weight average; live weights: {name} {entry['live']['metrics'][split][name]:.4f})"
    ctx.reporter.info(f"step {state.step} eval: {shown}{'  (best)' if improved else ''}")
    stop_early = bool(t.early_stopping_patience and state.bad_evals >= t.early_stopping_patience)
    if state.step < ctx.total_steps and not stop_early:  # a finished run's checkpoints are deleted right away
        save_checkpoint(ctx, state, session)
    return stop_early


def score_weights(
    ctx: RunContext, model: torch.nn.Module, bar: Any
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray], float | None]:
    """One model's metrics on every evaluation split, its logits, and its tuned threshold (``None`` untuned)."""
    t = ctx.cfg.train
    metrics, logits = evaluate(
        model, ctx.encoded, ctx.task, ctx.collator, t.eval_batch_size, ctx.device, ctx.precision, bar, ctx.world
    )
    ctx.model.train()
    if not ctx.tune_threshold:
        return metrics, logits, None
    threshold, tuned = tuned_metrics(ctx, logits)
    return tuned, logits, threshold


def tuned_metrics(ctx: RunContext, logits: dict[str, np.ndarray]) -> tuple[float, dict[str, dict[str, float]]]:
    """The decision threshold that maximises the selection metric on the first evaluation split, and every
    evaluation split's metrics at it."""
    task = ctx.task
    labels = {split: per_document(ctx.encoded[split], None, task.is_multi_label)[1] for split in logits}
    split = task.eval_splits[0]
    threshold, _ = tune_threshold(task, logits[split], labels[split])
    tuned = replace(task, threshold=threshold)
    return threshold, {s: compute_metrics(tuned, logits[s], labels[s]) for s in logits}


def checkpoint_due(ctx: RunContext, state: LoopState, clock_due: bool) -> bool:
    """A checkpoint on the clock (``clock_due``, from `optimizer_step`) or every ``save_every_steps``, between
    evaluations; never at the last step, which `finish` follows."""
    every = ctx.cfg.train.save_every_steps
    return state.step < ctx.total_steps and (clock_due or bool(every and state.step % every == 0))


def save_checkpoint(ctx: RunContext, state: LoopState, session: Session) -> None:
    """Every process's RNG state goes in (exact resume); only the main process writes. Once per step."""
    if session.last_saved == state.step:
        return
    session.last_saved, session.last_saved_at = state.step, time.monotonic()
    world = ctx.world
    rngs = world.gather(ckpt.rng_state()) if world.size > 1 else None
    unwrapped, t = ctx.unwrapped, ctx.cfg.train
    world.on_main(
        lambda: ckpt.save_checkpoint(
            ctx.run_dir,
            state.step,
            unwrapped,
            ctx.optimizer,
            ctx.scheduler,
            state.to_dict(),
            t.keep_checkpoints,
            rngs,
            ctx.average.averaged if ctx.average is not None else None,
        )
    )


def save_best(ctx: RunContext, unwrapped: torch.nn.Module, logits: dict[str, np.ndarray]) -> None:
    """The best model and its dev predictions, for reports without a re-run."""
    arrays = {f"{split}/logits": v for split, v in logits.items()}
    arrays |= {f"{split}/labels": per_document(ctx.encoded[split], None, False)[1] for split in logits}
    ckpt.save_best(ctx.run_dir / runfolder.CHECKPOINTS / runfolder.BEST_CHECKPOINT, unwrapped, arrays, ctx.run_dir)


def log_step(ctx: RunContext, state: LoopState, session: Session, bar: Any) -> None:
    """A train_log.jsonl line (and TensorBoard scalars) every ``log_every`` steps; the progress bar every step."""
    if state.step % ctx.cfg.train.log_every == 0 or state.step == ctx.total_steps:
        record = {
            "step": state.step,
            "epoch": round(state.step / ctx.steps_per_epoch, 4),
            "loss": session.window_loss / session.window_steps,
            "lr": ctx.scheduler.get_last_lr()[0],
            "tokens_per_second": state.tokens_per_second,
            "elapsed": state.train_seconds,
        }
        ctx.tracker.log(record)
        session.window_loss, session.window_steps = 0.0, 0
        if bar is not None:
            speed = f"{record['tokens_per_second']:,.0f} tok/s"
            bar.update(0, status=f"loss {record['loss']:.4f} lr {record['lr']:.2e} {speed}")
    if bar is not None:
        bar.update(0, advance=1)
