"""The run folder: what a finished run leaves behind, and how eval/predict find their way back into it.

Layout: the best model (``save_pretrained``, safetensors) + tokenizer, ``config.yaml`` (resolved),
``task.json`` (the task spec), ``metrics.json`` (eval history and best), ``train_log.jsonl``,
``eval_predictions.npz`` (the best checkpoint's dev logits and labels) and ``README.md`` (a model card).
``checkpoints/`` holds resumable state while training runs.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from seqtune.config import RunConfig, load_config
from seqtune.errors import SeqtuneError
from seqtune.tasks import TaskSpec

# Every file name of a run folder, owned here.
TASK_FILE = "task.json"  # the task spec; written last, so its presence marks a finished run
CONFIG_FILE = "config.yaml"  # the resolved seqtune config
METRICS_FILE = "metrics.json"  # every evaluation, the best, speed, environment, warnings
TRAIN_LOG = "train_log.jsonl"  # loss, lr, tokens/s every log_every steps
MODEL_CARD = "README.md"
EVAL_PREDICTIONS = "eval_predictions.npz"  # best checkpoint's dev logits and labels, per split
WEIGHTS_FILE = "model.safetensors"  # with config.json and the tokenizer's files, written by save_pretrained
REPORT_HTML = "report.html"
REPORT_DIR = "report"  # PNGs and series.json (the exact numbers plotted)
TENSORBOARD_DIR = "tensorboard"  # event files, with --report-to tensorboard
WANDB_DIR = "wandb"  # Weights & Biases' own files, with --report-to wandb
TRACKING_FILE = "tracking.json"  # the MLflow / W&B run ids of this run, so a resumed run logs to the same ones
ENSEMBLE_FILE = "ensemble.json"  # a seed ensemble: {"members": [folder names], "combine": ...}
ONNX_FILE = "model.onnx"  # an export folder's model
EXPORT_INFO = "export.json"  # how an export was made and validated; "rejected" when it failed
SEARCH_FILE = "search.json"  # a search's trials and best parameters (in the search folder and its best run)
CHECKPOINTS = "checkpoints"  # step-N/ folders (.tmp-step-N/ while one is written) and best/
BEST_CHECKPOINT = "best"  # the kept (best) evaluation's weights and predictions, inside CHECKPOINTS
FEATURE_CACHE = "features"  # --train-layers: the frozen bottom's cached output, inside CHECKPOINTS
# inside a checkpoint folder (WEIGHTS_FILE too)
CKPT_STATE = "state.json"  # the loop's progress (seqtune.state.LoopState)
CKPT_OPTIMIZER = "optimizer.pt"
CKPT_SCHEDULER = "scheduler.pt"
CKPT_AVERAGE = "average.safetensors"  # --ema: the moving average of the weights (and how many steps it holds)
CKPT_RNG = "rng.pt"  # rank 0; rng-rank<N>.pt for the other processes of a distributed run (`rank_rng_file`)


def rank_rng_file(rank: int) -> str:
    """The checkpoint file holding process ``rank``'s random number generator states."""
    return CKPT_RNG if rank == 0 else f"rng-rank{rank}.pt"


def default_output(cfg: RunConfig) -> Path:
    name = cfg.task or Path(cfg.data.train_file or "custom").stem
    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_run_dir(path: Path, *, overwrite: bool, resume: bool) -> None:
    """Refuse to write into a non-empty folder unless asked; nothing is created here."""
    if path.exists() and not path.is_dir():
        raise SeqtuneError(f"{path}: exists and is a file; choose another --output")
    if resume or overwrite or not path.exists() or not any(path.iterdir()):
        return
    raise SeqtuneError(
        f"{path}: run folder exists and is not empty; pass --overwrite to replace it, --resume to continue it, "
        "or choose another --output"
    )


def save_task(path: Path, task: TaskSpec) -> None:
    keep = ("name", "text_columns", "label_names", "problem_type", "metrics", "selection_metric", "eval_splits",
            "threshold")  # fmt: skip
    data = {k: v for k, v in asdict(task).items() if k in keep}
    (path / TASK_FILE).write_text(json.dumps(data, indent=1))


def load_task(run_dir: Path) -> TaskSpec:
    from seqtune.tasks import GLUE_TASKS

    data = json.loads((run_dir / TASK_FILE).read_text())
    if data["name"] in GLUE_TASKS:  # the registry's spec, with the run's own decision threshold
        return replace(GLUE_TASKS[data["name"]], threshold=data.get("threshold"))
    data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return TaskSpec(**data)


def check_is_run(run_dir: str | Path) -> Path:
    path = Path(run_dir)
    if not path.is_dir():
        raise SeqtuneError(f"{path}: run folder not found; pass the --output folder of a seqtune train run")
    if not (path / TASK_FILE).is_file() or not (path / "config.json").is_file():
        raise SeqtuneError(
            f"{path}: not a finished seqtune run (no {TASK_FILE} / config.json); pass the folder a completed "
            f"`seqtune train` wrote, or resume it with `seqtune train --resume --output {path}`"
        )
    return path


def load_run_config(run_dir: Path) -> RunConfig:
    return load_config(run_dir / CONFIG_FILE) if (run_dir / CONFIG_FILE).is_file() else RunConfig()


def append_log(run_dir: Path, record: dict[str, Any]) -> None:
    with (run_dir / TRAIN_LOG).open("a") as f:
        f.write(json.dumps(record) + "\n")


def trim_log(run_dir: Path, step: int) -> None:
    """Keep only log lines up to ``step`` (a resumed run re-does the steps after its checkpoint).

    A process killed mid-write leaves a torn last line: it is dropped. A damaged line before the last one is not
    something a kill does, so it is an error rather than silently lost history.
    """
    log = run_dir / TRAIN_LOG
    if not log.is_file():
        return
    lines = [(n, line) for n, line in enumerate(log.read_bytes().split(b"\n"), start=1) if line.strip()]
    kept = []
    for n, line in lines:
        try:
            record_step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):  # bad JSON or UTF-8, not an object, no step
            if n == lines[-1][0]:
                break  # the torn last line of a killed write
            raise SeqtuneError(
                f"{log} line {n}: not a log record (expected a JSON object with a 'step'); the log is damaged "
                "before its last line: delete that line, then resume again"
            ) from None
        if record_step <= step:
            kept.append(line + b"\n")
    tmp = log.with_name(log.name + ".tmp")
    tmp.write_bytes(b"".join(kept))
    tmp.replace(log)  # a kill during the trim leaves the old log, never a half-written one


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    (run_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=1))


def environment() -> dict[str, str]:
    """Versions and hardware a run used, for reproducibility."""
    import platform

    import torch
    import transformers

    from seqtune.precision import CPU_FLAGS, cpu_flags

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cpu_flags": " ".join(cpu_flags()) or "none of " + ", ".join(CPU_FLAGS),
        "threads": str(torch.get_num_threads()),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
    }
