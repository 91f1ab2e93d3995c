"""The prediction runtime: a finished run folder (or an ONNX export of one) loaded and ready to predict.

`load_run` reads the task, config, tokenizer and model of a run folder; an exported folder (``model.onnx``) runs
in an onnxruntime session (`OnnxClassifier`) that answers like a Hugging Face model, so `seqtune.predict`,
`seqtune.serve` and `seqtune.export` all predict through the same code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, PreTrainedModel, PreTrainedTokenizerBase

from seqtune import runfolder
from seqtune.config import RunConfig
from seqtune.ensemble import EnsembleClassifier, is_ensemble, load_members
from seqtune.errors import SeqtuneError
from seqtune.extras import require
from seqtune.modeling import PICKLE_LOADING, SAFE_LOADING, check_weights, load_tokenizer, model_max_length
from seqtune.precision import resolve_precision
from seqtune.progress import hf_progress
from seqtune.tasks import TaskSpec

ONNX_FILE, EXPORT_INFO = runfolder.ONNX_FILE, runfolder.EXPORT_INFO


def is_onnx_folder(path: Path) -> bool:
    return (path / ONNX_FILE).is_file()


class OnnxClassifier:
    """An onnxruntime session that answers like a Hugging Face model: ``model(**batch).logits``.

    That is all `seqtune.inference.infer_logits` needs, so prediction, evaluation and serving run an exported
    folder through the same code as a PyTorch run. ``threads``: onnxruntime's intra-op threads (default: as many
    as PyTorch uses).
    """

    def __init__(self, path: Path, threads: int | None = None):
        ort = require("onnxruntime", "export")
        from transformers import AutoConfig

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no warnings about unused initializers on every load
        # The same thread count as PyTorch's (OMP_NUM_THREADS, torch.set_num_threads), so one setting limits both.
        options.intra_op_num_threads = threads or torch.get_num_threads()
        self.session = ort.InferenceSession(str(path / ONNX_FILE), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.config = AutoConfig.from_pretrained(path)

    def eval(self) -> OnnxClassifier:
        return self

    def to(self, device: torch.device) -> OnnxClassifier:
        return self

    def __call__(self, **inputs: torch.Tensor) -> SimpleNamespace:
        feed = {name: inputs[name].cpu().numpy().astype(np.int64, copy=False) for name in self.input_names}
        (logits,) = self.session.run(["logits"], feed)
        return SimpleNamespace(logits=torch.from_numpy(logits))


@dataclass
class LoadedRun:
    """A finished run, ready to predict."""

    run_dir: Path
    cfg: RunConfig
    task: TaskSpec
    model: PreTrainedModel | OnnxClassifier | EnsembleClassifier
    tokenizer: PreTrainedTokenizerBase
    max_length: int
    device: torch.device
    precision: str

    def input_columns(self) -> list[str]:
        """The column names an input file must have: the names the run was trained with."""
        if self.cfg.task is None:
            return [c for c in (self.cfg.data.text_column, self.cfg.data.text_pair_column) if c]
        return list(self.task.text_columns)


def load_run(run_dir: str | Path, precision: str = "auto", allow_pickle: bool = False) -> LoadedRun:
    """Load the model, tokenizer and task of a run folder.

    An exported folder (``seqtune export``, with ``model.onnx``) loads into an onnxruntime session instead.
    Weights load from ``model.safetensors`` only; ``allow_pickle`` also accepts ``pytorch_model.bin`` (read with
    ``weights_only=True``).

    Example:
        >>> run = load_run("runs/mrpc")  # doctest: +SKIP
    """
    path = runfolder.check_is_run(run_dir)
    onnx = is_onnx_folder(path)  # an exported folder: the same files, with model.onnx run by onnxruntime
    ensemble = not onnx and is_ensemble(path)  # a seed ensemble: its members' folders hold the weights
    if not onnx and not ensemble:
        _check_not_rejected(path)
        check_weights(path, allow_pickle)
    cfg = runfolder.load_run_config(path)
    task = runfolder.load_task(path)
    tokenizer = load_tokenizer(str(path))
    loading = PICKLE_LOADING if allow_pickle else SAFE_LOADING
    if onnx:
        model: PreTrainedModel | OnnxClassifier | EnsembleClassifier = OnnxClassifier(path)
    elif ensemble:
        model = load_members(path, task, loading)
    else:
        with hf_progress(False):
            model = AutoModelForSequenceClassification.from_pretrained(path, **loading)
    device = torch.device("cuda" if torch.cuda.is_available() and not onnx else "cpu")
    model.to(device).eval()
    resolved = resolve_precision(precision, device)
    if resolved == "bf16" and not onnx:
        # Weights cast to bf16 once: autocast alone re-casts every weight matrix on every batch (speed and label
        # agreement with fp32: docs/performance.md#inference). Training's evaluations keep autocast over fp32 weights.
        model.to(torch.bfloat16)
    limit = model_max_length(tokenizer, model.config)
    max_length = min(cfg.model.max_length or limit, limit)
    return LoadedRun(path, cfg, task, model, tokenizer, max_length, device, resolved)


def _check_not_rejected(path: Path) -> None:
    """An export that failed its validation has no model; say why instead of "no weights"."""
    try:
        rejected = json.loads((path / EXPORT_INFO).read_text()).get("rejected")
    except (OSError, ValueError, AttributeError):
        return
    if rejected:
        raise SeqtuneError(f"{path}: this export failed its validation and has no model: {rejected}")
