"""seqtune: fine-tune pretrained transformer encoders on text classification, offline-first.

Example:
    >>> import seqtune
    >>> cfg = seqtune.load_config(None, ["task=mrpc", "data.data_dir=../shared/glue"])
    >>> result = seqtune.train(cfg)  # doctest: +SKIP
"""

from seqtune.config import DataConfig, ModelConfig, RunConfig, TrainConfig, load_config
from seqtune.errors import ConfigError, SeqtuneError
from seqtune.tasks import GLUE_TASKS, TaskSpec, get_task

__version__ = "0.1.0"

__all__ = [
    "GLUE_TASKS",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "RunConfig",
    "SeqtuneError",
    "TaskSpec",
    "TrainConfig",
    "get_task",
    "load_config",
    "train",
    "predict",
    "evaluate_run",
    "evaluate_file",
    "load_glue",
    "load_custom",
    "tokenize",
    "Collator",
    "compute_metrics",
    "make_compute_metrics",
    "create_app",
    "ServeSettings",
    "MicroBatcher",
    "export_run",
    "OnnxClassifier",
    "load_run",
    "push_to_hub",
]


def __getattr__(name: str):
    """Heavy pieces (torch, transformers) import on first use, so `import seqtune` and the CLI's --help stay fast."""
    lazy = {
        "train": "seqtune.training",
        "predict": "seqtune.predict",
        "evaluate_run": "seqtune.predict",
        "evaluate_file": "seqtune.predict",
        "load_glue": "seqtune.data",
        "load_custom": "seqtune.data",
        "tokenize": "seqtune.encoding",
        "Collator": "seqtune.batching",
        "compute_metrics": "seqtune.metrics",
        "make_compute_metrics": "seqtune.metrics",
        "create_app": "seqtune.serve",
        "ServeSettings": "seqtune.serve",
        "MicroBatcher": "seqtune.microbatch",
        "export_run": "seqtune.export",
        "OnnxClassifier": "seqtune.runtime",
        "load_run": "seqtune.runtime",
        "push_to_hub": "seqtune.push",
    }
    if name in lazy:
        import importlib

        return getattr(importlib.import_module(lazy[name]), name)
    raise AttributeError(f"module 'seqtune' has no attribute {name!r}")
