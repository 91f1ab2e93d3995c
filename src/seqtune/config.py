"""Typed run configuration: the YAML schema, the CLI's defaults and the record written into every run folder.

Precedence: dataclass defaults < YAML file < ``key=value`` overrides (dotted, e.g. ``train.batch_size=32``).
Unknown keys are errors, and `validate` reports every problem at once.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from seqtune.config_values import (
    apply_values,
    choice_problems,
    flat,
    nest,
    parse_overrides,
    read_yaml,
)
from seqtune.errors import ConfigError, SeqtuneError


def _flag(name: str, default: Any, shortcuts: dict[str, Any] | None = None) -> Any:
    """A field with a command-line flag (``seqtune train --lr 3e-5``; a bool field's flag is a switch that sets the
    opposite of its default). ``shortcuts``: switches that set the field to a value (``--multi-label``)."""
    return field(default=default, metadata={"flag": name, "shortcuts": shortcuts or {}})


@dataclass
class ModelConfig:
    name: str = _flag("--model", "minilm")
    """Model alias (``minilm`` = the packaged all-MiniLM-L6-v2), a local folder, or a hub id."""
    from_scratch: bool = _flag("--from-scratch", False)
    """Build the architecture from its config with random weights instead of loading pretrained ones."""
    max_length: int | None = _flag("--max-length", None)
    """Truncate inputs to this many tokens; ``None`` = the model's own limit."""
    dropout: float | None = _flag("--dropout", None)
    """Set every dropout probability of the model (hidden, attention, head) to this; ``0`` turns dropout off.
    ``None`` (auto): 0 when every weight of a pretrained encoder trains (measured: CoLA +2.6 Matthews on carved
    validation, other tasks within noise; `seqtune.recipe.dropout`), else the model's own (0.1 for BERT-style
    models). ``--dropout 0.1`` brings BERT's back."""
    prior_init: bool | None = None
    """Start a new classification head's output bias at the training labels' distribution (log class frequencies;
    per-label log-odds for multi-label; the mean target for regression, where the head then also trains in units of
    the targets' spread), so training does not spend its first steps learning it. ``None`` (auto): on for
    multi-label and regression tasks; off: the bias starts at 0 as in transformers."""
    pooling: Literal["auto", "cls", "mean"] = _flag("--pooling", "auto")
    """How the head reads the encoder: ``cls`` (the architecture's own head; BERT: its pooler over [CLS]) or ``mean``
    (masked mean of the last hidden states). ``auto``: the checkpoint's own pooling (``mean`` for sentence-transformers
    models trained with it, such as the packaged MiniLM; else ``cls``)."""
    reinit_layers: int | None = _flag("--reinit-layers", None)
    """Re-initialise the top N encoder layers before fine-tuning (Zhang et al. 2021): their pretrained weights are
    specialised to the pretraining objective. 0 keeps them all. ``None`` (auto): 1 when every weight of a pretrained
    encoder trains, 0 with ``--lora``, ``--train-layers``, ``--from-scratch`` or a checkpoint that is already a
    sequence classifier (`seqtune.recipe.reinit_layers`)."""
    lora_rank: int | None = _flag("--lora", None)
    """Train low-rank adapters (LoRA, via peft) of this rank on the encoder's linear layers instead of its weights; the
    head trains in full, and the run folder holds the merged model (`seqtune.lora`). ``None``: train every weight."""
    trust_remote_code: bool = False
    """Allow model repos to run their own Python code. Off unless you trust the source."""
    allow_pickle: bool = _flag("--allow-pickle", False)
    """Also load ``pytorch_model.bin`` weights (pickle) when a model has no ``model.safetensors``. Off by default:
    unpickling can run code. When on, the file is still read with ``torch.load(weights_only=True)``."""

    def problems(self) -> list[str]:
        out = _at_least_one({"model.max_length": self.max_length, "model.lora_rank": self.lora_rank}, null_ok=True)
        if isinstance(self.reinit_layers, int) and self.reinit_layers < 0:
            out.append(f"model.reinit_layers: expected 0 or more, found {self.reinit_layers}")
        if isinstance(self.dropout, float) and not 0 <= self.dropout < 1:
            out.append(f"model.dropout: expected a probability in [0, 1) or null, found {self.dropout}")
        return out


@dataclass
class DataConfig:
    data_dir: str | None = _flag("--data-dir", None)
    """Local GLUE folder (``<dir>/<TASK>/{train,dev,test}.tsv``); also read from env ``SEQTUNE_GLUE_DIR``."""
    train_file: str | None = _flag("--train-file", None)
    """Own data: training file (.csv, .tsv, .jsonl/.json, .parquet)."""
    validation_file: str | None = _flag("--validation-file", None)
    """Own data: validation file; when absent, ``validation_fraction`` of the training file is held out."""
    test_file: str | None = _flag("--test-file", None)
    """Own data: file to predict on (labels optional)."""
    text_column: str = _flag("--text-column", "text")
    """Own data: column holding the (first) text."""
    text_pair_column: str | None = _flag("--text-pair-column", None)
    """Own data: column holding the second text of a sentence pair."""
    label_column: str = _flag("--label-column", "label")
    """Own data: column holding the label (a name, a number, or for multi-label a list / delimited string)."""
    problem_type: Literal["auto", "single_label", "multi_label", "regression"] = _flag(
        "--problem-type", "auto", {"--multi-label": "multi_label", "--regression": "regression"}
    )
    """``auto``, ``single_label``, ``multi_label`` or ``regression``. ``auto``: lists -> multi-label,
    non-integer numbers -> regression, anything else -> single-label."""
    label_delimiter: str = _flag("--label-delimiter", ",")
    """Multi-label: separator when labels come as one string (``"billing,urgent"``)."""
    long_inputs: Literal["truncate", "head_tail", "windows"] = _flag("--long-inputs", "truncate")
    """Texts longer than ``max_length`` tokens: ``truncate`` (keep the start), ``head_tail`` (keep the first quarter
    and the last three quarters of the budget) or ``windows`` (overlapping windows, each a training example; their
    logits are combined into one prediction per text). See `seqtune.long_inputs`."""
    stride: int | None = _flag("--stride", None)
    """Windows: tokens shared by consecutive windows; ``None``: a quarter of ``max_length``."""
    max_windows: int = 8
    """Windows: the most windows of one text used for training (evenly spaced); prediction uses them all."""
    validation_fraction: float = 0.1
    """Own data without a validation file: share of the training rows held out (seeded, stratified when possible)."""
    validation_from_train: bool = False
    """GLUE: hold out ``validation_fraction`` of the training rows (seeded, stratified) as the validation split and
    leave the official dev split(s) unused, so recipes can be chosen without looking at dev."""
    split_seed: int | None = None
    """Seed of those held-out splits; ``None``: the run's ``seed``. ``--seeds N`` fixes it to the first seed, so every
    seed (and an ensemble of them) is scored on the same rows and trained on the others."""
    swap_pairs: bool | None = _flag("--swap-pairs", None, {"--no-swap-pairs": False})
    """Train on each sentence pair in both orders (one drawn per example and epoch; no extra steps), for pair tasks
    whose label does not depend on the order. ``None`` (auto): on for MRPC and QQP, off for other tasks and own data
    (`seqtune.pair_order`)."""
    max_train_samples: int | None = _flag("--max-train-samples", None)
    """Use only the first N training rows (quick experiments, tests)."""
    train_shard: float | None = None
    """Train on this share of the training rows (every k-th row, the course's ``shard`` idea): cheap search trials."""
    max_eval_samples: int | None = _flag("--max-eval-samples", None)
    """Use only the first N rows of each evaluation split."""
    cache_dir: str | None = None
    """Where tokenized datasets are cached; default ``~/.cache/seqtune`` (env ``SEQTUNE_CACHE``)."""
    num_proc: int | None = _flag("--num-proc", None)
    """Processes that tokenize (``Dataset.map(num_proc=...)``); ``None``: one."""

    def problems(self) -> list[str]:
        out = _at_least_one({"data.max_train_samples": self.max_train_samples,
                             "data.max_eval_samples": self.max_eval_samples, "data.num_proc": self.num_proc},
                            null_ok=True)  # fmt: skip
        out += _at_least_one({"data.max_windows": self.max_windows}, null_ok=False)
        if isinstance(self.stride, int) and self.stride < 0:
            out.append(f"data.stride: expected 0 or more tokens, found {self.stride}")
        if isinstance(self.train_shard, float) and not 0 < self.train_shard <= 1:
            out.append(f"data.train_shard: expected a share in (0, 1], found {self.train_shard}")
        if isinstance(self.validation_fraction, float) and not 0 < self.validation_fraction < 1:
            out.append(f"data.validation_fraction: expected a number in (0, 1), found {self.validation_fraction}")
        return out


@dataclass
class TrainConfig:
    epochs: float | None = _flag("--epochs", None)
    """Passes over the training data. ``None`` (auto): 3, or more on small data sets so that training runs at least
    ``min_steps`` optimizer steps (at most ``max_auto_epochs``); a number given here is used as it is."""
    min_steps: int = 600
    """Auto epochs: the fewest optimizer steps a run takes (small data sets need more passes to learn)."""
    max_auto_epochs: float = 20.0
    """Auto epochs: the most passes ``min_steps`` may ask for."""
    batch_size: int = _flag("--batch-size", 16)
    """Examples per optimizer step per device (before gradient accumulation)."""
    eval_batch_size: int = 128
    """Examples per evaluation batch."""
    lr: float | None = _flag("--lr", None)
    """Peak learning rate of AdamW (reached after warmup, then linear decay to 0). ``None`` (auto): 8e-5, 2e-4 for
    multi-label tasks, 5e-4 with ``--lora`` (`seqtune.recipe`)."""
    weight_decay: float = 0.01
    """AdamW weight decay; never applied to biases and LayerNorm weights."""
    layer_decay: float = _flag("--layer-decay", 1.0)
    """Layer-wise learning-rate decay: the head trains at ``lr``, each encoder layer below it at this factor of the
    one above, the embeddings last (`seqtune.param_groups`). 1.0 = one rate for all."""
    warmup_ratio: float = 0.1
    """Share of optimizer steps spent warming the learning rate up from 0."""
    grad_accum: int = _flag("--grad-accum", 1)
    """Micro-batches accumulated per optimizer step."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm to this; ``None`` turns clipping off."""
    precision: Literal["auto", "bf16", "fp32"] = _flag("--precision", "auto")
    """``auto`` (bf16 autocast where the CPU/GPU supports it, else fp32), ``bf16`` or ``fp32``."""
    eval_every: int = _flag("--eval-every", 0)
    """Evaluate every N optimizer steps; 0 = at the end of every epoch."""
    early_stopping_patience: int | None = _flag("--early-stopping", None)
    """Stop after this many evaluations without improvement of the task's selection metric."""
    ema: float | None = _flag("--ema", None)
    """Evaluate and keep an exponential moving average of the weights, updated after every optimizer step with this
    decay (0.99 averages about the last 100 steps); the live weights are scored beside it (`seqtune.averaging`)."""
    metric: str | None = _flag("--metric", None)
    """The selection metric: the one of the task's metrics that picks the kept checkpoint, stops early and tunes the
    threshold (e.g. ``f1`` for imbalanced binary data). ``None``: the task's own (GLUE: its official metric; own
    data: ``accuracy``, ``f1_micro`` for multi-label, ``pearson`` for regression)."""
    train_layers: int | None = _flag("--train-layers", None)
    """Freeze-and-cache: train only the top K encoder layers and the head; the frozen bottom's output is computed once
    per training example and cached, so steps run only the top K layers (`seqtune.frozen`). ``None``: all train."""
    freeze_embeddings: bool = _flag("--freeze-embeddings", False)
    """Keep the word-embedding matrix fixed: no gradient or optimizer update for its vocab x hidden weights."""
    label_smoothing: float = _flag("--label-smoothing", 0.0)
    """Classification: train towards targets with this share of the probability spread evenly over the classes
    (single-label: `torch.nn.functional.cross_entropy`'s ``label_smoothing``; multi-label: each label's 0/1 target
    moved this share towards 1/2). ``0``: off."""
    class_weights: bool = _flag("--class-weights", False)
    """Weight the loss by inverse class frequency (single-label classification)."""
    tune_threshold: bool | None = _flag("--tune-threshold", None)
    """Binary and multi-label tasks: at every evaluation, pick the decision threshold (0.05-0.95) that maximises the
    selection metric on the validation split and score (and select checkpoints) at it; the best evaluation's
    threshold is stored in the run folder and every consumer applies it. ``None`` (auto): on for multi-label."""
    group_by_length: bool = _flag("--no-group-by-length", True)
    """Batch examples of similar length together (shuffled groups), so little compute goes to padding."""
    pad_to_multiple_of: int | None = None
    """Round each batch's padded length up to a multiple of this (8 suits tensor cores)."""
    fixed_length: bool = _flag("--fixed-length", False)
    """Pad every batch to ``max_length`` (static shapes for accelerators that want them)."""
    keep_checkpoints: int = 1
    """How many recent checkpoints (for resume) to keep besides the best model."""
    save_every_minutes: float | None = _flag("--save-every-minutes", 5.0)
    """Also save a resumable checkpoint when this many minutes of training passed since the last one (besides the
    one after every evaluation), so a kill loses at most this much work; ``None`` = only at evaluations."""
    save_every_steps: int | None = _flag("--save-every-steps", None)
    """Also save a resumable checkpoint every N optimizer steps (the Trainer's ``save_steps``)."""
    max_steps: int | None = _flag("--max-steps", None)
    """Stop after this many optimizer steps (overrides ``epochs`` for the schedule)."""
    log_every: int = 10
    """Write a line to ``train_log.jsonl`` every N optimizer steps."""
    report_to: str | None = _flag("--report-to", None)
    """Also log to these trackers, comma-separated: ``tensorboard`` (event files in ``<run>/tensorboard``), ``mlflow``
    (``MLFLOW_TRACKING_URI``), ``wandb``; ``train_log.jsonl`` is always written (`seqtune.tracking`)."""
    num_threads: int | None = None
    """Torch intra-op threads on CPU; ``None`` = torch's default (all cores)."""

    def problems(self) -> list[str]:
        out = _at_least_one({f"train.{k}": getattr(self, k) for k in ("batch_size", "eval_batch_size", "grad_accum",
                             "log_every", "keep_checkpoints", "min_steps")}, null_ok=False)  # fmt: skip
        out += _at_least_one({f"train.{k}": getattr(self, k) for k in ("max_steps", "early_stopping_patience",
                              "pad_to_multiple_of", "num_threads", "save_every_steps", "train_layers")},
                             null_ok=True)  # fmt: skip
        checks = {
            "lr": (self.lr, lambda v: v > 0, "a positive number"),
            "epochs": (self.epochs, lambda v: v > 0, "a positive number or null (auto)"),
            "max_auto_epochs": (self.max_auto_epochs, lambda v: v >= 3, "a number >= 3"),
            "save_every_minutes": (self.save_every_minutes, lambda v: v > 0, "a positive number or null"),
            "warmup_ratio": (self.warmup_ratio, lambda v: 0 <= v < 1, "a number in [0, 1)"),
            "layer_decay": (self.layer_decay, lambda v: 0 < v <= 1, "a factor in (0, 1]"),
            "ema": (self.ema, lambda v: 0 <= v < 1, "a decay in [0, 1) or null (off)"),
            "label_smoothing": (self.label_smoothing, lambda v: 0 <= v < 1, "a share in [0, 1)"),
        }
        for key, (value, ok, expected) in checks.items():
            if isinstance(value, float) and not ok(value):
                out.append(f"train.{key}: expected {expected}, found {value}")
        unknown = [n for n in tracker_names(self.report_to) if n not in TRACKERS]
        if unknown:
            out.append(f"train.report_to: expected a comma-separated list of {', '.join(TRACKERS)} (or none), found "
                       f"'{self.report_to}'")  # fmt: skip
        if isinstance(self.eval_every, int) and self.eval_every < 0:
            out.append(f"train.eval_every: expected 0 (every epoch) or a positive step count, found {self.eval_every}")
        return out


@dataclass
class RunConfig:
    task: str | None = None
    """A GLUE task name (cola, sst2, mrpc, stsb, qqp, mnli, qnli, rte, wnli); ``None`` for own data."""
    output: str | None = _flag("--output", None)
    """Run folder; default ``runs/<task>-<timestamp>``."""
    overwrite: bool = _flag("--overwrite", False)
    """Allow writing into a non-empty run folder."""
    seed: int = _flag("--seed", 42)
    """Seed for weights of new heads, data order and dropout."""
    quiet: bool = _flag("--quiet", False)
    """No progress bars; only the final summary line."""
    resume: bool = _flag("--resume", False)
    """Continue the run in ``output`` from its latest checkpoint."""
    resume_from: str | None = _flag("--resume-from", None)
    """Continue from this checkpoint folder."""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def differences(self, other: RunConfig) -> dict[str, tuple[Any, Any]]:
        """Dotted keys whose values differ (``self``'s, ``other``'s), bookkeeping keys left out: two configs with
        no differences train the same run.

        Example:
            >>> RunConfig(task="rte").differences(RunConfig(task="rte", seed=1, quiet=True))
            {'seed': (42, 1)}
        """
        mine, theirs = flat(self.to_dict()), flat(other.to_dict())
        keys = [k for k in {**mine, **theirs} if k not in BOOKKEEPING and mine.get(k) != theirs.get(k)]
        return {k: (mine.get(k), theirs.get(k)) for k in keys}

    def problems(self) -> list[str]:
        """Every problem with this config (each group's own, then the ones between groups), as messages."""
        problems = choice_problems(self) + self.model.problems() + self.data.problems() + self.train.problems()
        if self.task is None and self.data.train_file is None and not self.resume and self.resume_from is None:
            problems.append("nothing to train on: give a GLUE task name (e.g. mrpc) or --train-file")
        if self.task is not None and self.data.train_file is not None:
            problems.append("give either a GLUE task or --train-file, not both")
        if self.model.lora_rank and self.train.train_layers:
            problems.append("--lora and --train-layers are two ways to train part of the model; choose one")
        reinit, trained_top = self.model.reinit_layers, self.train.train_layers
        if isinstance(reinit, int) and reinit > 0 and self.model.lora_rank:
            problems.append("--reinit-layers with --lora would leave fresh layers frozen at random weights "
                            "(LoRA trains adapters only); drop one of them")  # fmt: skip
        if isinstance(reinit, int) and isinstance(trained_top, int) and reinit > trained_top > 0:
            problems.append(f"--reinit-layers {reinit} with --train-layers {trained_top} would leave fresh layers "
                            f"frozen at random weights; use --reinit-layers {trained_top} or fewer")  # fmt: skip
        if self.data.swap_pairs and self.data.long_inputs == "windows":
            problems.append("--swap-pairs with --long-inputs windows: windows follow one order; drop one")
        return problems

    def check(self) -> RunConfig:
        """``self`` when it is usable, else `ConfigError` with every problem (a config built in Python, too)."""
        problems = self.problems()
        if problems:
            raise ConfigError(problems)
        return self

    def save(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    def with_overrides(self, overrides: dict[str, Any] | list[str]) -> RunConfig:
        """A validated copy with overrides applied; ``self`` is left as it is.

        ``overrides`` are ``key=value`` strings as on the command line, or a dict of dotted keys (or nested
        dicts) to values. Unknown keys and bad values raise `ConfigError` with every problem, as `load_config`.

        Example:
            >>> RunConfig(task="mrpc").with_overrides(["train.lr=3e-5", "seed=1"]).train.lr
            3e-05
            >>> RunConfig(task="mrpc").with_overrides({"train.batch_size": 8}).train.batch_size
            8
        """
        if isinstance(overrides, dict):
            nested: dict[str, Any] = {}
            for key, value in overrides.items():
                nest(nested, key, value, f"override '{key}'")
        else:
            nested = parse_overrides(overrides)
        cfg = copy.deepcopy(self)
        problems: list[str] = []
        apply_values(cfg, nested, "", problems)
        problems += validate(cfg)
        if problems:
            raise ConfigError(problems)
        return cfg


# Keys that say how a run is driven, not what it trains: they may differ between a run and its resumption.
BOOKKEEPING = frozenset({"output", "overwrite", "resume", "resume_from", "quiet", "train.num_threads",
                         "train.save_every_minutes", "train.save_every_steps", "train.keep_checkpoints"})  # fmt: skip


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Build a `RunConfig` from defaults, an optional YAML file and ``key=value`` overrides, then validate it.

    Example:
        >>> cfg = load_config(None, ["task=mrpc", "train.batch_size=16"])
        >>> cfg.train.batch_size
        16
    """
    cfg = RunConfig()
    problems: list[str] = []
    if path is not None:
        p = Path(path)
        values = read_yaml(p, f"config file {p} not found: pass the path of a YAML file such as configs/mrpc.yaml")
        if not isinstance(values, dict):
            raise SeqtuneError(f"{p}: expected a mapping of settings at the top level, found {type(values).__name__}")
        apply_values(cfg, values, "", problems)
    if overrides:
        apply_values(cfg, parse_overrides(overrides), "", problems)
    problems += validate(cfg)
    if problems:
        raise ConfigError(problems)
    return cfg


def validate(cfg: RunConfig) -> list[str]:
    """Every problem with a config, as messages; empty when it is usable (`RunConfig.problems`)."""
    return cfg.problems()


def _at_least_one(values: dict[str, Any], null_ok: bool) -> list[str]:
    tail = " or null" if null_ok else ""
    return [
        f"{key}: expected an integer >= 1{tail}, found {v}" for key, v in values.items() if isinstance(v, int) and v < 1
    ]


TRACKERS = ("tensorboard", "mlflow", "wandb")


def tracker_names(report_to: str | None) -> list[str]:
    """``--report-to`` as a list (``None``, ``""`` and ``none``: no tracker).

    Example:
        >>> tracker_names("tensorboard, mlflow")
        ['tensorboard', 'mlflow']
    """
    if not report_to or report_to.strip().lower() == "none":
        return []
    return [name.strip().lower() for name in report_to.split(",") if name.strip()]
