"""Offline GLUE metrics, computed with scikit-learn and scipy.

The values match the Hugging Face ``evaluate`` "glue" metric and ``run_glue.py``, so scores are comparable with
published numbers, but nothing is fetched from the hub (``evaluate.load`` needs the network).

Which metrics a task reports is decided by `seqtune.tasks.TaskSpec.metrics`; this module only knows how to compute
each name. ``f1_macro`` means macro F1 for both single-label and multi-label tasks; the task's problem type decides
which inputs it receives.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import special, stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from seqtune.tasks import TaskSpec

if TYPE_CHECKING:
    from transformers import EvalPrediction

# Metrics that are not averaged into combined_score: an error (lower is better) cannot be averaged with
# scores where higher is better, and combined_score must not include itself.
_NOT_COMBINED = frozenset({"mse", "combined_score"})


def logits_to_predictions(task: TaskSpec, logits: np.ndarray) -> np.ndarray:
    """Turn raw model outputs into predictions of the task's label type.

    Args:
        task: the task being evaluated.
        logits: ``[n, num_labels]`` for classification; ``[n, 1]`` or ``[n]`` for regression.

    Returns:
        Class ids ``[n]`` (single-label), an int multi-hot array ``[n, k]`` (multi-label), or floats ``[n]``
        (regression). A task's ``threshold`` (binary or multi-label) replaces 0.5 as the decision probability.

    Raises:
        ValueError: if the logits do not have the shape the problem type needs.
    """
    logits = np.asarray(logits)
    if task.is_regression:
        if logits.ndim == 2 and logits.shape[1] == 1:
            logits = logits[:, 0]
        if logits.ndim != 1:
            raise ValueError(f"regression expects logits of shape [n] or [n, 1], got {logits.shape}")
        return logits.astype(np.float64)
    if logits.ndim != 2:
        raise ValueError(f"{task.problem_type} expects logits of shape [n, num_labels], got {logits.shape}")
    # sigmoid(x) > t exactly when x > logit(t); comparing logits avoids overflow in exp for large values.
    cut = 0.0 if task.threshold is None else float(special.logit(task.threshold))
    if task.is_multi_label:
        return (logits > cut).astype(np.int64)
    if task.threshold is not None and task.has_threshold:  # binary: p(class 1) > t, p from a 2-way softmax
        return (logits[:, 1] - logits[:, 0] > cut).astype(np.int64)
    return np.argmax(logits, axis=-1)


def probabilities(task: TaskSpec, logits: np.ndarray) -> np.ndarray:
    """Class probabilities from logits: softmax over labels (single-label), a sigmoid per label (multi-label);
    regression outputs are returned as they are. Computed without overflow for any logit size.

    Example:
        >>> from seqtune.tasks import GLUE_TASKS
        >>> probabilities(GLUE_TASKS["mrpc"], np.array([[0.0, 0.0], [1000.0, -1000.0]])).tolist()
        [[0.5, 0.5], [1.0, 0.0]]
    """
    logits = np.asarray(logits, dtype=np.float64)
    if task.is_regression:
        return logits
    if task.is_multi_label:
        return special.expit(logits)
    return special.softmax(logits, axis=-1)


def reliability_bins(confidences: Any, correct: Any, n_bins: int = 10) -> dict[str, Any]:
    """Bin predictions by confidence into ``n_bins`` equal-width bins ``(lo, hi]`` (0 goes to the first bin).

    Returns ``bin_edges``, and per bin ``count``, mean ``confidence`` and ``accuracy`` (``None`` for empty bins),
    plus ``ece`` (see `expected_calibration_error`).
    """
    conf = np.asarray(confidences, dtype=np.float64).reshape(-1)
    hit = np.asarray(correct, dtype=np.float64).reshape(-1)
    if conf.shape != hit.shape:
        raise ValueError(f"confidences {conf.shape} and correct {hit.shape} differ in length")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    hit_sum = np.bincount(idx, weights=hit, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf, acc = conf_sum / count, hit_sum / count
    ece = float(np.sum(count / max(len(conf), 1) * np.abs(np.nan_to_num(acc - mean_conf)))) if len(conf) else 0.0
    return {
        "bin_edges": edges.tolist(),
        "count": count.tolist(),
        "confidence": [None if n == 0 else float(c) for n, c in zip(count, mean_conf, strict=True)],
        "accuracy": [None if n == 0 else float(a) for n, a in zip(count, acc, strict=True)],
        "ece": ece,
    }


def expected_calibration_error(confidences: Any, correct: Any, n_bins: int = 10) -> float:
    """ECE = sum over bins of (bin size / N) * |accuracy(bin) - mean confidence(bin)|.

    Example:
        >>> round(expected_calibration_error([0.95, 0.85, 0.65, 0.62, 0.55], [1, 0, 1, 0, 1]), 6)
        0.324
    """
    return reliability_bins(confidences, correct, n_bins)["ece"]


def _pearson(preds: np.ndarray, labels: np.ndarray) -> float:
    # pearsonr raises for n < 2 and warns (returning NaN) for constant input; both are "undefined" here.
    if len(preds) < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.pearsonr(preds, labels)[0])


def _spearman(preds: np.ndarray, labels: np.ndarray) -> float:
    if len(preds) < 2:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.spearmanr(preds, labels)[0])


def _f1(labels: np.ndarray, preds: np.ndarray, average: str) -> float:
    # zero_division=0.0 gives the same value as sklearn's default ("warn") without the UndefinedMetricWarning.
    return float(f1_score(labels, preds, average=average, zero_division=0.0))


def _mcc(labels: np.ndarray, preds: np.ndarray) -> float:
    # sklearn returns 0.0 when MCC is undefined (a constant column); keep its value, silence its warning.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(matthews_corrcoef(labels, preds))


_SINGLE_LABEL: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "accuracy": lambda y, p: float(np.mean(y == p)),
    "f1": lambda y, p: _f1(y, p, "binary"),
    "f1_macro": lambda y, p: _f1(y, p, "macro"),
    "matthews_correlation": _mcc,
}

_MULTI_LABEL: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "f1_micro": lambda y, p: _f1(y, p, "micro"),
    "f1_macro": lambda y, p: _f1(y, p, "macro"),
    # accuracy_score on multi-hot arrays is subset accuracy: a row counts only if every label is right.
    "exact_match": lambda y, p: float(accuracy_score(y, p)),
}

_REGRESSION: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "pearson": lambda y, p: _pearson(p, y),
    "spearmanr": lambda y, p: _spearman(p, y),
    "mse": lambda y, p: float(np.mean((p - y) ** 2)),
}


def _check_labels(task: TaskSpec, preds: np.ndarray, labels: np.ndarray) -> np.ndarray:
    if len(preds) == 0 or len(labels) == 0:
        raise ValueError(f"cannot compute metrics on empty input (got {len(preds)} predictions, {len(labels)} labels)")
    if len(preds) != len(labels):
        raise ValueError(f"got {len(preds)} predictions but {len(labels)} labels; they must have the same length")
    if task.is_regression:
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1:
            raise ValueError(f"regression expects labels of shape [n], got {labels.shape}")
        return labels.astype(np.float64)
    if task.is_multi_label:
        if labels.shape != preds.shape:
            raise ValueError(f"multi-label expects labels of shape {preds.shape} (multi-hot), got {labels.shape}")
    elif labels.ndim != 1:
        raise ValueError(f"single-label expects class ids of shape [n], got {labels.shape}")
    # Trainer gathers label_ids as whatever dtype the batch had (float for BCE targets); metrics need ints.
    return labels.astype(np.int64)


def compute_metrics(task: TaskSpec, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Compute the task's metrics from raw logits.

    Args:
        task: the task; ``task.metrics`` names what is computed, in that order.
        logits: raw model outputs (see `logits_to_predictions`).
        labels: class ids ``[n]``, multi-hot ``[n, k]``, or float targets ``[n]``, by problem type.

    Returns:
        ``{metric name: value}`` with plain Python floats, keys in ``task.metrics`` order. Undefined values (e.g.
        Pearson of constant predictions) are ``nan``.

    Raises:
        ValueError: on empty input, mismatched lengths or shapes, or a metric name the problem type lacks.

    Example:
        >>> from seqtune.tasks import GLUE_TASKS
        >>> logits = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
        >>> compute_metrics(GLUE_TASKS["mrpc"], logits, np.array([1, 0, 0, 1]))
        {'accuracy': 0.75, 'f1': 0.8, 'combined_score': 0.775}
    """
    preds = logits_to_predictions(task, logits)
    labels = _check_labels(task, preds, np.asarray(labels))
    if task.is_regression:
        table = _REGRESSION
    elif task.is_multi_label:
        table = _MULTI_LABEL
    else:
        table = _SINGLE_LABEL

    results: dict[str, float] = {}
    for name in task.metrics:
        if name == "combined_score":
            continue
        if name not in table:
            raise ValueError(f"metric '{name}' is not defined for {task.problem_type}; expected one of {list(table)}")
        results[name] = table[name](labels, preds)

    if "combined_score" in task.metrics:
        # run_glue.py: combined_score = mean of the other reported scores (accuracy+f1, or pearson+spearmanr).
        headline = [v for k, v in results.items() if k not in _NOT_COMBINED]
        if not headline:
            raise ValueError(f"combined_score needs at least one other score metric in {task.metrics}")
        results["combined_score"] = float(np.mean(headline))
    return {name: results[name] for name in task.metrics}


def make_compute_metrics(task: TaskSpec) -> Callable[[EvalPrediction], dict[str, float]]:
    """Build the ``compute_metrics`` callback for a Hugging Face ``Trainer``.

    Args:
        task: the task being trained.

    Returns:
        A function of an ``EvalPrediction`` returning `compute_metrics` for it.
    """

    def _compute(eval_pred: EvalPrediction) -> dict[str, float]:
        logits = eval_pred.predictions
        # Models that also return hidden states or attentions give a tuple; the logits come first.
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        return compute_metrics(task, logits, eval_pred.label_ids)

    return _compute


def is_better(task: TaskSpec, new: float, best: float | None) -> bool:
    """Whether ``new`` beats ``best`` for the task's selection metric.

    Args:
        task: its ``greater_is_better`` gives the direction (``mse``/``loss`` are lower-is-better).
        new: the candidate's selection-metric value.
        best: the best value so far, or ``None`` when nothing has been evaluated yet.

    Returns:
        ``False`` if ``new`` is NaN; ``True`` if ``best`` is ``None`` or NaN; otherwise a strict comparison.

    Example:
        >>> from seqtune.tasks import GLUE_TASKS
        >>> is_better(GLUE_TASKS["sst2"], 0.91, 0.90)
        True
    """
    if math.isnan(new):
        return False
    # A NaN best (e.g. a first eval with constant predictions) must not block every later real score.
    if best is None or math.isnan(best):
        return True
    return new > best if task.greater_is_better else new < best


def trivial_baseline(task: TaskSpec, train_labels: np.ndarray, eval_labels: np.ndarray) -> tuple[str, float]:
    """What a model that learned nothing scores on ``eval_labels``: the training set's majority class
    (single-label), the empty label set (multi-label) or the mean training target (regression).

    Returns:
        ``(description, selection score)``. A correlation of constant predictions is undefined; it counts as 0.

    Example:
        >>> from seqtune.tasks import GLUE_TASKS
        >>> trivial_baseline(GLUE_TASKS["rte"], np.array([0, 0, 1]), np.array([0, 1, 1, 1]))
        ("the training set's majority class 'entailment' for every input", 0.25)
    """
    train_labels, eval_labels = np.asarray(train_labels), np.asarray(eval_labels)
    n = len(eval_labels)
    if task.is_regression:
        mean = float(np.mean(train_labels))
        logits, what = np.full((n, 1), mean), f"the mean training target {mean:.4g} for every input"
    elif task.is_multi_label:
        logits, what = np.full((n, task.num_labels), -1.0), "the empty label set for every input"
    else:
        majority = int(np.bincount(train_labels.astype(np.int64), minlength=task.num_labels).argmax())
        logits = np.zeros((n, task.num_labels))
        logits[:, majority] = 1.0
        what = f"the training set's majority class '{task.label_names[majority]}' for every input"
    score = compute_metrics(task, logits, eval_labels)[task.selection_metric]
    return what, 0.0 if math.isnan(score) else score


def undefined_reason(task: TaskSpec, logits: np.ndarray, labels: np.ndarray) -> str:
    """Why the selection metric came out NaN for these predictions (constant predictions or labels, usually)."""
    preds = logits_to_predictions(task, logits)
    labels = np.asarray(labels)
    metric = task.selection_metric
    if len(np.unique(labels, axis=0)) < 2:
        return f"every validation label is the same, so {metric} is undefined"
    if len(np.unique(preds, axis=0)) < 2:
        return (
            f"the model predicts the same value for every validation input (constant predictions), so {metric} "
            "is undefined"
        )
    return f"{metric} came out NaN"


THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.01), 2)


def tune_threshold(task: TaskSpec, logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The decision threshold (0.05 to 0.95 in steps of 0.01) that maximises the task's selection metric on these
    (validation) predictions; among equal scores the one closest to 0.5. Returns ``(threshold, score)``.

    Example:
        >>> from seqtune.tasks import GLUE_TASKS
        >>> tune_threshold(GLUE_TASKS["rte"], np.array([[0.0, -1.0], [0.0, -0.5], [0.0, 1.0]]), np.array([0, 1, 1]))
        (0.37, 1.0)
    """
    from dataclasses import replace

    if not task.has_threshold:
        raise ValueError(f"{task.name}: a decision threshold needs a binary or multi-label task")
    sign = 1 if task.greater_is_better else -1
    scored = [
        (sign * compute_metrics(replace(task, threshold=float(t)), logits, labels)[task.selection_metric], float(t))
        for t in THRESHOLDS
    ]
    best = max(score for score, _ in scored)
    threshold = min((t for score, t in scored if score == best), key=lambda t: (abs(t - 0.5), t))
    return threshold, sign * best
