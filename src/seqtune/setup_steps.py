"""Everything a training run needs before its first step, in named steps that return objects.

`setup(cfg)` runs them in order and returns a `RunContext`: the config, the world of processes, the run folder,
the task and its tokenized data, the model, optimizer and scheduler, and where progress is reported. The loop in
`seqtune.training` only reads it.
"""

from __future__ import annotations

import logging
import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from datasets import DatasetDict, concatenate_datasets
from transformers import AutoConfig, PreTrainedModel, PreTrainedTokenizerBase, get_linear_schedule_with_warmup, set_seed

from seqtune import checkpoint as ckpt
from seqtune import runfolder
from seqtune.averaging import WeightAverage
from seqtune.batching import Collator, column
from seqtune.config import RunConfig
from seqtune.data import hold_out, load_custom, load_glue, select_samples, shard_rows
from seqtune.distributed import World, launch_world
from seqtune.embedding_grad import DenseEmbeddingGrad, reuse_embedding_grad
from seqtune.encoding import length_profile, tokenize
from seqtune.errors import SeqtuneError
from seqtune.frozen import FeatureCache, build_cache, freeze_bottom
from seqtune.long_inputs import LongInputs
from seqtune.long_inputs import summary as windows_summary
from seqtune.lora import add_lora
from seqtune.losses import class_weights
from seqtune.modeling import (
    is_classifier,
    load_model,
    load_tokenizer,
    model_max_length,
    output_layer,
    resolve_model,
    target_scale,
)
from seqtune.pair_order import SWAPPED, swap_pairs, with_swapped
from seqtune.param_groups import param_groups, reinit_top_layers
from seqtune.precision import resolve_precision
from seqtune.progress import Reporter
from seqtune.recipe import auto_epochs, auto_lr, dropout, prior_init, reinit_layers
from seqtune.state import LoopState
from seqtune.tasks import TaskSpec, get_task
from seqtune.tracking import Tracker


@dataclass
class RunContext:
    """What the loop works with; built once by `setup`, never changed by the loop."""

    cfg: RunConfig
    world: World
    run_dir: Path
    resume_from: Path | None
    reporter: Reporter
    task: TaskSpec
    encoded: DatasetDict
    tokenizer: PreTrainedTokenizerBase
    max_length: int
    model: torch.nn.Module  # as `accelerate` prepared it (DDP-wrapped in a distributed run)
    optimizer: torch.optim.Optimizer
    scheduler: Any
    collator: Collator
    loss_weights: torch.Tensor | None  # class weights, when asked for
    features: FeatureCache | None  # --train-layers: the frozen bottom's output per training example
    average: WeightAverage | None  # --ema: the moving average of the weights, which is evaluated and kept
    embedding_grad: DenseEmbeddingGrad | None  # the word embeddings' reused gradient buffer (single-process CPU)
    precision: str
    lr: float  # train.lr, or its automatic value for the task
    tune_threshold: bool  # train.tune_threshold, or its automatic value (on for multi-label)
    step_size: int  # examples per optimizer step, over all processes
    steps_per_epoch: int
    total_steps: int
    tracker: Tracker

    @property
    def device(self) -> torch.device:
        return self.world.accelerator.device

    @property
    def unwrapped(self) -> PreTrainedModel:
        return self.world.accelerator.unwrap_model(self.model)

    def distributed(self) -> dict[str, Any]:
        """The world the run trains in, for metrics.json: processes, per-device and global batch, learning rate."""
        return {**self.world.describe(self.cfg.train.batch_size, self.cfg.train.grad_accum), "lr": self.lr}


def setup_data(cfg: RunConfig) -> tuple[TaskSpec, DatasetDict]:
    """The task spec and its raw splits (GLUE by name, or the user's files), trimmed as configured."""
    if cfg.task is not None:
        task = get_task(cfg.task)
        raw = load_glue(task, cfg.data.data_dir)
        if cfg.data.validation_from_train:
            train, held_out = hold_out(raw["train"], cfg.data, task.problem_type, cfg.seed)
            raw = DatasetDict({"train": train, "validation": held_out})
            task = replace(task, eval_splits=("validation",))
    else:
        raw, task = load_custom(cfg.data, cfg.seed)
    task = task.selecting(cfg.train.metric)
    missing = [s for s in ("train", *task.eval_splits) if s not in raw]
    if missing:
        raise SeqtuneError(
            f"{task.name}: the data has no {' / '.join(missing)} split (found {', '.join(raw) or 'none'}); "
            "training needs labeled train and validation data"
        )
    if cfg.train.tune_threshold and not task.has_threshold:
        kind = "regression" if task.is_regression else f"{task.num_labels}-class single-label"
        raise SeqtuneError(
            f"--tune-threshold: {task.name} is {kind}, and a decision threshold applies to binary and multi-label "
            "tasks only; drop --tune-threshold"
        )
    if cfg.train.label_smoothing and task.is_regression:
        raise SeqtuneError(f"--label-smoothing: {task.name} is regression, and smoothing applies to class labels "
                           "only; drop --label-smoothing")  # fmt: skip
    if cfg.data.train_shard is not None and cfg.data.train_shard < 1:
        raw["train"] = raw["train"].select(shard_rows(len(raw["train"]), cfg.data.train_shard))
    raw = select_samples(raw, task, cfg.data.max_train_samples, cfg.data.max_eval_samples)
    if swap_pairs(cfg, task):
        if not task.is_pair:
            raise SeqtuneError(f"--swap-pairs: {task.name} has one text per example, and swapping needs a pair "
                               "(--text-pair-column); drop --swap-pairs")  # fmt: skip
        raw = with_swapped(raw, task)
    return task, raw


def setup_encoded(
    cfg: RunConfig, task: TaskSpec, raw: DatasetDict, model_path: str, reporter: Reporter
) -> tuple[PreTrainedTokenizerBase, DatasetDict, int]:
    """Tokenizer, tokenized splits and the max length used."""
    tokenizer = load_tokenizer(model_path, cfg.model.trust_remote_code)
    limit = model_max_length(tokenizer, AutoConfig.from_pretrained(model_path))
    max_length = min(cfg.model.max_length or limit, limit)
    if cfg.model.max_length and cfg.model.max_length > limit:
        reporter.warn(f"model.max_length={cfg.model.max_length} is more than {cfg.model.name} takes ({limit} tokens: "
                      f"its position embeddings); inputs are cut at {limit}")  # fmt: skip
    long = LongInputs.of(cfg.data)
    encoded = tokenize(
        raw,
        task,
        tokenizer,
        max_length,
        cfg.data.cache_dir,
        show_progress=not reporter.quiet,
        long=long,
        num_proc=cfg.data.num_proc,
    )
    train = encoded["train"]
    if "doc" in train.column_names:
        reporter.info(f"train: {windows_summary(column(train, 'doc'), max_length)}")
    else:
        reporter.info(f"train: {length_profile(column(train, 'length'), max_length)}")
    return tokenizer, encoded, max_length


def setup_optimizer(
    model: torch.nn.Module,
    cfg: RunConfig,
    device: torch.device,
    lr: float | None = None,
    scaled: dict[int, float] | None = None,
) -> torch.optim.Optimizer:
    """AdamW over `seqtune.param_groups` (no decay for biases and norms; per-layer rates with ``train.layer_decay``;
    ``scaled``: parameters in other units, such as a regression head in the target's).

    The fused implementation updates all parameters in one kernel: 1.11x the training throughput of the
    default (foreach) one with MiniLM on a 2-core CPU (benchmarks/step_levers.py).
    """
    lr = lr if lr is not None else auto_lr(cfg.train.lr, multi_label=False)
    groups = param_groups(model, lr, cfg.train.weight_decay, cfg.train.layer_decay, scaled)
    return torch.optim.AdamW(groups, lr=lr, fused=device.type in ("cpu", "cuda"))


class AlreadyFinished(Exception):
    """``--resume`` on a run folder whose run has finished: nothing to do."""

    def __init__(self, run_dir: Path):
        super().__init__(str(run_dir))
        self.run_dir = run_dir


def setup_run_dir(cfg: RunConfig, world: World) -> tuple[RunConfig, Path, Path | None]:
    """The run folder and the checkpoint to resume from; a resumed run continues with the config it started with.

    With ``resume`` one command starts or continues a run, so a scheduler can simply run it again after a
    preemption: a finished run raises `AlreadyFinished`; the newest checkpoint is resumed; a folder without one (a
    run killed before its first checkpoint) is started afresh. A folder holding another configuration is refused.
    """
    if not cfg.output and cfg.resume_from is None and world.size > 1:  # one timestamped folder: the main one's
        cfg.output = str(world.gather(str(runfolder.default_output(cfg)))[0])
    if cfg.resume_from is not None:
        resume_from: Path | None = Path(cfg.resume_from)
        if not (resume_from / runfolder.CKPT_STATE).is_file():
            raise SeqtuneError(
                f"{resume_from}: not a seqtune checkpoint (no state.json); pass a checkpoints/step-N folder"
            )
        run_dir = Path(cfg.output) if cfg.output else resume_from.parent.parent
    elif cfg.resume:
        run_dir = Path(cfg.output) if cfg.output else runfolder.default_output(cfg)
        resume_from = _resume_point(cfg, run_dir)
        if resume_from is None:
            cfg.overwrite = True  # what a start killed before its first checkpoint left is cleared
    else:
        run_dir = Path(cfg.output) if cfg.output else runfolder.default_output(cfg)
        resume_from = None
        runfolder.check_run_dir(run_dir, overwrite=cfg.overwrite, resume=False)
    world.barrier()  # every process has checked the folder before the main one writes into it
    if resume_from is not None and (run_dir / runfolder.CONFIG_FILE).is_file():
        given = cfg
        cfg = runfolder.load_run_config(run_dir)
        cfg.quiet, cfg.train.num_threads = given.quiet, given.train.num_threads
        if given.task is not None or given.data.train_file is not None:  # a full config: its cadence applies
            for key in ("save_every_minutes", "save_every_steps", "keep_checkpoints"):
                setattr(cfg.train, key, getattr(given.train, key))
    return cfg, run_dir, resume_from


def _resume_point(cfg: RunConfig, run_dir: Path) -> Path | None:
    """For ``--resume``: the checkpoint to continue from, or None to start afresh (see `setup_run_dir`).

    A run with a checkpoint continues with the settings it started with (given ones that differ are named in a
    note); starting afresh over a folder that holds another configuration is refused.
    """
    if (run_dir / runfolder.TASK_FILE).is_file():
        raise AlreadyFinished(run_dir)
    given = cfg.task is not None or cfg.data.train_file is not None  # a full config, not just "resume RUN"
    saved = runfolder.load_run_config(run_dir) if (run_dir / runfolder.CONFIG_FILE).is_file() else None
    differing = saved.differences(cfg) if saved is not None and given else {}
    shown = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in sorted(differing.items())[:5])
    latest = ckpt.latest_checkpoint(run_dir)
    if latest is None and differing:
        raise SeqtuneError(
            f"{run_dir}: holds a run with another configuration ({shown}); resume it with the same settings, "
            "choose another --output, or pass --overwrite instead of --resume to replace it"
        )
    if latest is None and not given:
        raise SeqtuneError(f"{run_dir}: no checkpoint to resume from; start the run without --resume")
    if latest is None and saved is None and run_dir.is_dir() and any(run_dir.iterdir()):
        raise SeqtuneError(
            f"{run_dir}: not empty and not a seqtune run folder (no config.yaml); choose another --output, or pass "
            "--overwrite instead of --resume to replace its contents"
        )
    if latest is not None and differing:
        logging.getLogger("seqtune").warning("%s: resuming with the run's own settings, not the ones given (%s)",
                                             run_dir, shown)  # fmt: skip
    return latest


def start_folder(run_dir: Path, cfg: RunConfig) -> None:
    """A new run's folder, with the config it runs (``overwrite`` clears an old one first)."""
    if cfg.overwrite and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg.output = str(run_dir)
    cfg.save(run_dir / runfolder.CONFIG_FILE)


def setup_state(
    cfg: RunConfig,
    world: World,
    run_dir: Path,
    resume_from: Path | None,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    reporter: Reporter,
    average: WeightAverage | None = None,
) -> LoopState:
    """A fresh start (a new folder with its config.yaml), or the state, weights, optimizer, scheduler and RNG states
    of the checkpoint being resumed (and its weight average, with ``--ema``). ``model``: the unwrapped model."""
    if resume_from is None:
        world.on_main(lambda: start_folder(run_dir, cfg))
        return LoopState(world_size=world.size)
    world.check_resume(ckpt.saved_world_size(resume_from), resume_from)
    state = LoopState.from_dict(
        ckpt.load_checkpoint(
            resume_from, model, optimizer, scheduler, world.rank, average.averaged if average else None
        )
    )
    world.on_main(lambda: runfolder.trim_log(run_dir, state.step))  # drop lines logged after the checkpoint
    reporter.info(f"resumed from {resume_from} at step {state.step}")
    return state


def setup(cfg: RunConfig) -> tuple[RunContext, LoopState]:
    """Run every setup step for ``cfg`` (on a validated copy: the caller's config is not changed)."""
    world = launch_world()
    cfg, run_dir, resume_from = setup_run_dir(cfg.with_overrides({}), world)
    reporter = Reporter(cfg.quiet, enabled=world.is_main)
    set_seed(cfg.seed)
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    t, device = cfg.train, world.accelerator.device

    task, raw = setup_data(cfg)
    model_path = resolve_model(
        cfg.model.name, need_weights=not cfg.model.from_scratch, allow_pickle=cfg.model.allow_pickle
    )
    with world.accelerator.main_process_first():  # one process fills the tokenization cache, the others read it
        tokenizer, encoded, max_length = setup_encoded(cfg, task, raw, model_path, reporter)
    train_labels, prior = column(encoded["train"], "labels"), prior_init(cfg, task)
    model = load_model(
        model_path,
        task,
        from_scratch=cfg.model.from_scratch,
        seed=cfg.seed,
        trust_remote_code=cfg.model.trust_remote_code,
        allow_pickle=cfg.model.allow_pickle,
        dropout=dropout(cfg),
        label_prior=train_labels if prior else None,
        pooling=cfg.model.pooling,
    )
    reinit = reinit_layers(cfg, is_classifier(model_path, cfg.model.trust_remote_code))
    if reinit and not resume_from:  # a resumed run's checkpoint holds the trained layers
        fresh = reinit_top_layers(model, reinit)
        logging.getLogger("seqtune").info("re-initialised encoder layer(s) %s (model.reinit_layers)", fresh)
    if t.freeze_embeddings:  # before `prepare`: a distributed model only syncs the parameters that train
        model.get_input_embeddings().weight.requires_grad_(False)
    if cfg.model.lora_rank:  # before `prepare` too: only the adapters and the head train
        model = add_lora(model, cfg.model.lora_rank)
    if t.train_layers:  # before `prepare`: a distributed model only syncs the parameters that train
        freeze_bottom(model, t.train_layers)
    if world.size > 1:
        torch.manual_seed(cfg.seed + world.rank)  # same initial weights everywhere, different dropout per process
    model = world.accelerator.prepare(model)
    lr = auto_lr(t.lr, task.is_multi_label, lora=bool(cfg.model.lora_rank), train_layers=t.train_layers)
    # A regression head trains in units of the targets' spread (model.prior_init): rate, decay and loss scaled by it.
    units = target_scale(train_labels) if task.is_regression and prior else 1.0
    head = output_layer(model, task.num_labels) if units != 1.0 else None
    scaled = {id(p): units for p in head.parameters()} if head is not None else None
    optimizer = setup_optimizer(model, cfg, device, lr, scaled)
    embedding_grad = None
    if world.size == 1 and device.type == "cpu":  # DDP reduces dense gradients; GPUs reuse memory already
        embedding_grad = reuse_embedding_grad(model)
    train_ds = encoded["train"]
    step_size = t.batch_size * world.size * t.grad_accum
    steps_per_epoch = math.ceil(len(train_ds) / step_size)
    epochs = t.epochs if t.epochs is not None else auto_epochs(steps_per_epoch, t.min_steps, t.max_auto_epochs)
    total_steps = t.max_steps or math.ceil(epochs * steps_per_epoch)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(t.warmup_ratio * total_steps), total_steps)
    weighted = t.class_weights and task.num_labels > 1
    weights = class_weights(task, train_labels).to(device) if weighted else None
    if head is not None:  # the squared error in units of the targets' spread
        weights = torch.tensor([units], device=device)
    unwrapped = world.accelerator.unwrap_model(model)
    average = WeightAverage(unwrapped, t.ema) if t.ema is not None else None
    state = setup_state(cfg, world, run_dir, resume_from, unwrapped, optimizer, scheduler, reporter, average)
    collator = Collator(tokenizer, t.pad_to_multiple_of, max_length if t.fixed_length else None)
    precision = resolve_precision(t.precision, device)
    if world.size > 1:  # `auto` measures per process: all compute in bf16 only if every one of them chose it
        precision = "bf16" if world.sum([float(precision == "bf16")])[0] == world.size else "fp32"
    features = None
    if t.train_layers:  # after the resumed weights are in: the cache is computed from the frozen bottom's own
        with world.accelerator.main_process_first():  # one process computes the cache, the others read it
            folder = run_dir / runfolder.CHECKPOINTS / runfolder.FEATURE_CACHE
            cached = train_ds if SWAPPED not in encoded else concatenate_datasets([train_ds, encoded[SWAPPED]])
            features = build_cache(unwrapped, cached, collator, t.train_layers, folder, device, precision)
        state.train_seconds += features.build_seconds
    ctx = RunContext(
        cfg=cfg,
        world=world,
        run_dir=run_dir,
        resume_from=resume_from,
        reporter=reporter,
        task=task,
        encoded=encoded,
        tokenizer=tokenizer,
        max_length=max_length,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        collator=collator,
        loss_weights=weights,
        precision=precision,
        features=features,
        average=average,
        embedding_grad=embedding_grad,
        lr=lr,
        tune_threshold=task.is_multi_label if t.tune_threshold is None else t.tune_threshold,
        step_size=step_size,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        tracker=Tracker(run_dir, t.report_to, enabled=world.is_main, cfg=cfg),
    )
    both = " (each pair in both orders)" if SWAPPED in encoded else ""
    shape = f" ({t.batch_size} per process x {world.size} processes x {t.grad_accum} accumulation)"
    reporter.info(
        f"{task.name}: {len(train_ds)} train examples{both}, {total_steps} steps of {step_size} ({epochs:g} epochs)"
        f"{shape if world.size > 1 else ''}, lr {lr:g}, {device.type} {ctx.precision}, max_length {max_length} "
        f"-> {run_dir}"
    )
    return ctx, state
