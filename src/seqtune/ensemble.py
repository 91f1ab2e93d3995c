"""Seed ensembles: one run folder whose model is several trained runs, predicting the mean of their probabilities.

``seqtune train ... --seeds N --ensemble`` trains the members into ``<output>/seed-K`` (`seqtune.seeds`), then
`write_ensemble` makes ``<output>`` itself a run folder: ``ensemble.json`` names the members, and the tokenizer,
config.json, task.json and config.yaml are the first member's (task.json with the ensemble's own decision threshold
when the task tunes one). `load_members` gives an `EnsembleClassifier`, an ``nn.Module`` that answers like a
Hugging Face model (``model(**batch).logits``), so predict, eval, serve, export and report need nothing else.

The "logits" it returns are the log of the mean probabilities (single-label: softmax; multi-label: the log-odds of
the mean sigmoid; regression: the mean prediction), so every consumer's softmax / sigmoid / threshold turns them
back into exactly the mean of the members' probabilities.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from seqtune.errors import SeqtuneError
from seqtune.progress import hf_progress
from seqtune.runfolder import ENSEMBLE_FILE, EVAL_PREDICTIONS, TASK_FILE, WEIGHTS_FILE
from seqtune.tasks import TaskSpec

COMBINE = "mean of the members' probabilities"
_EPS = 1e-7


def combine(task: TaskSpec, logits: torch.Tensor) -> torch.Tensor:
    """Members' logits ``[members, batch, labels]`` -> the ensemble's logits ``[batch, labels]`` (see module doc).

    Example:
        >>> from seqtune.tasks import GLUE_TASKS
        >>> two = torch.tensor([[[0.0, 2.0]], [[0.0, -2.0]]])  # one member sure of 1, the other of 0
        >>> combine(GLUE_TASKS["rte"], two).softmax(-1)
        tensor([[0.5000, 0.5000]])
    """
    logits = logits.float()
    if task.is_regression:
        return logits.mean(0)
    if task.is_multi_label:
        p = torch.sigmoid(logits).mean(0).clamp(_EPS, 1 - _EPS)
        return torch.log(p) - torch.log1p(-p)
    return torch.log(torch.softmax(logits, -1).mean(0).clamp_min(_EPS))


class EnsembleClassifier(torch.nn.Module):
    """Members run on the same batch; their predictions are combined by `combine`."""

    def __init__(self, members: list[PreTrainedModel], task: TaskSpec):
        super().__init__()
        self.members = torch.nn.ModuleList(members)
        self.task = task
        self.config = members[0].config  # labels, max positions: the same for every member

    def forward(self, **inputs: torch.Tensor) -> SequenceClassifierOutput:
        stacked = torch.stack([member(**inputs).logits for member in self.members])
        return SequenceClassifierOutput(logits=combine(self.task, stacked))


def is_ensemble(path: Path) -> bool:
    return (path / ENSEMBLE_FILE).is_file()


def member_dirs(path: Path) -> list[Path]:
    """The member run folders ``ensemble.json`` names, checked to be finished runs."""
    try:
        names = json.loads((path / ENSEMBLE_FILE).read_text())["members"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SeqtuneError(f"{path / ENSEMBLE_FILE}: unreadable ({exc}); rebuild with --seeds N --ensemble") from None
    dirs = [path / str(name) for name in names]
    for d in dirs:
        if not (d / TASK_FILE).is_file() or not (d / WEIGHTS_FILE).is_file():
            raise SeqtuneError(
                f"{path}: ensemble member {d.name} is missing or unfinished; keep the seed-N folders next to "
                f"{ENSEMBLE_FILE}, or rerun the same command with --resume"
            )
    return dirs


def load_members(path: Path, task: TaskSpec, loading: dict[str, Any]) -> EnsembleClassifier:
    """The ensemble of the run folders in ``path``'s ``ensemble.json`` (weights loaded with ``loading``)."""
    with hf_progress(False):
        members = [AutoModelForSequenceClassification.from_pretrained(d, **loading) for d in member_dirs(path)]
    return EnsembleClassifier(members, task)


def ensemble_predictions(runs: list[Path], task: TaskSpec) -> dict[str, np.ndarray]:
    """The ensemble's evaluation predictions, combined from what each member saved for its kept checkpoint (the same
    rows for every member: the official dev split, or the held-out rows of one ``data.split_seed``)."""
    saved = []
    for run in runs:
        with np.load(run / EVAL_PREDICTIONS) as data:
            saved.append({k: data[k] for k in data.files})
    out: dict[str, np.ndarray] = {}
    for key in saved[0]:
        if key.endswith("/labels"):
            if any(not np.array_equal(s[key], saved[0][key]) for s in saved):
                raise SeqtuneError(f"{runs[0].parent}: the members were scored on different {key} rows")
            out[key] = saved[0][key]
        elif key.endswith("/logits"):
            stacked = torch.from_numpy(np.stack([s[key] for s in saved]))
            out[key] = combine(task, stacked).numpy()
    return out
