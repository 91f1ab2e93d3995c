"""What the report's figures show: the plain data series and the drawings of them.

The ``*_series`` functions turn run-folder data into plain lists (what `seqtune.report.build_series` collects);
the ``*_figure`` functions draw one series each. Figures render on matplotlib's Agg canvas directly (no pyplot,
no display, no change to the global backend) and are saved as PNG without the ``Software`` metadata chunk, so a
report carries no URLs at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from seqtune.metrics import logits_to_predictions, probabilities, reliability_bins
from seqtune.run_metrics import RunMetrics
from seqtune.tasks import TaskSpec

BEST_COLOR = "#d62728"


# ------------------------------------------------------------------------------------------------ series


def loss_series(log: list[dict[str, Any]]) -> dict[str, list]:
    """Train loss and learning rate per logged step (``train_log.jsonl``)."""
    return {"step": [r["step"] for r in log], "loss": [r["loss"] for r in log], "lr": [r["lr"] for r in log]}


def metric_series(metrics: RunMetrics) -> dict[str, Any]:
    """Dev metrics per evaluation, ``splits -> name -> values`` aligned with ``step``; ``best`` as in metrics.json."""
    history = metrics.history
    splits: dict[str, dict[str, list]] = {}
    for i, entry in enumerate(history):
        for split, values in entry["metrics"].items():
            for name, value in values.items():
                column = splits.setdefault(split, {}).setdefault(name, [float("nan")] * len(history))
                column[i] = value
    best = metrics.best
    return {
        "step": [h["step"] for h in history],
        "epoch": [h.get("epoch") for h in history],
        "splits": splits,
        "best": {k: best[k] for k in ("step", "epoch", "metrics") if k in best} if best else None,
        "selection_metric": metrics.selection_metric,
    }


def _pick_split(task: TaskSpec, preds: dict[str, np.ndarray]) -> str:
    splits = [k.split("/")[0] for k in preds if k.endswith("/logits")]
    return next((s for s in task.eval_splits if s in splits), splits[0])


def prediction_series(task: TaskSpec, preds: dict[str, np.ndarray]) -> dict[str, Any]:
    """Confusion matrix (single-label), per-label F1 (multi-label) or predicted/true pairs (regression)."""
    split = _pick_split(task, preds)
    logits, labels = np.asarray(preds[f"{split}/logits"]), np.asarray(preds[f"{split}/labels"])
    if task.is_regression:
        return {
            "kind": "scatter",
            "split": split,
            "true": labels.reshape(-1).tolist(),
            "pred": logits.reshape(-1).tolist(),
        }
    names = list(task.label_names or [str(i) for i in range(logits.shape[1])])
    predicted = logits_to_predictions(task, logits)  # the run's decision threshold included
    if task.is_multi_label:
        pred, true = predicted.astype(bool), labels.astype(bool)
        tp, fp, fn = (pred & true).sum(0), (pred & ~true).sum(0), (~pred & true).sum(0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
        return {"kind": "label_f1", "split": split, "labels": names, "f1": f1.tolist(), "support": true.sum(0).tolist()}
    k = len(names)
    matrix = np.bincount(labels.astype(np.int64) * k + predicted, minlength=k * k).reshape(k, k)
    return {"kind": "confusion", "split": split, "labels": names, "matrix": matrix.tolist()}


def calibration_series(task: TaskSpec, preds: dict[str, np.ndarray], n_bins: int = 10) -> dict[str, Any]:
    """Reliability bins and ECE: top-class softmax confidence vs accuracy (single-label); for multi-label each
    (example, label) decision counts, with confidence max(p, 1 - p) of its sigmoid."""
    split = _pick_split(task, preds)
    logits = np.asarray(preds[f"{split}/logits"], dtype=np.float64)
    labels = np.asarray(preds[f"{split}/labels"])
    probs = probabilities(task, logits)
    if task.is_multi_label:
        conf, correct, what = np.maximum(probs, 1 - probs), (probs > 0.5) == labels.astype(bool), "per-label decisions"
    else:
        conf, correct, what = probs.max(-1), probs.argmax(-1) == labels, "top-class confidence"
    return {**reliability_bins(conf, correct, n_bins), "split": split, "what": f"{what}, {split}"}


def length_series(metrics: RunMetrics) -> dict[str, Any]:
    return {"counts": metrics.train_length_counts, "max_length": metrics.max_length,
            "padding_share": metrics.padding_share}  # fmt: skip


# ------------------------------------------------------------------------------------------------ figures


def _subplots(*grid: int, figsize: tuple[float, float], **kwargs: Any):
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(*grid, **kwargs)


def save_png(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG (100 dpi, tight bounding box)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    return path


def loss_figure(series: dict[str, Any]) -> Figure:
    """Train loss (top) and learning rate (bottom) per optimizer step."""
    fig, (ax_loss, ax_lr) = _subplots(2, 1, figsize=(8, 5.5), sharex=True, height_ratios=(2, 1))
    ax_loss.plot(series["step"], series["loss"], marker="." if len(series["step"]) < 60 else None, color="#1f77b4")
    ax_loss.set_ylabel("train loss")
    ax_loss.set_title("Training loss and learning rate")
    ax_loss.grid(alpha=0.3)
    ax_lr.plot(series["step"], series["lr"], color="#ff7f0e")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("optimizer step")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    ax_lr.grid(alpha=0.3)
    return fig


def metrics_figure(series: dict[str, Any]) -> Figure:
    """One panel per metric, a line per evaluation split; the best checkpoint's step is marked in red."""
    names = list(dict.fromkeys(name for split in series["splits"].values() for name in split))
    cols = min(len(names), 3)
    rows = -(-len(names) // cols)
    fig, axes = _subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    best = series.get("best") or {}
    for ax, name in zip(axes.flat, names, strict=False):
        for split, values in series["splits"].items():
            if name in values:
                ax.plot(series["step"], values[name], marker="o", markersize=3, label=split)
        if best:
            ax.axvline(best["step"], color=BEST_COLOR, linestyle="--", linewidth=1)
            for values in (best.get("metrics") or {}).values():
                if name in values:
                    ax.plot([best["step"]], [values[name]], marker="*", markersize=13, color=BEST_COLOR, zorder=5)
                    ax.annotate(
                        f"{values[name]:.3f}",
                        (best["step"], values[name]),
                        textcoords="offset points",
                        xytext=(6, 6),
                        color=BEST_COLOR,
                        fontsize=8,
                    )
        ax.set_title(name + (" (selects best)" if name == series.get("selection_metric") else ""), fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if len(series["splits"]) > 1:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    title = "Dev metrics per evaluation"
    fig.suptitle(title + (f" (best: step {best['step']}, red star)" if best else ""))
    fig.tight_layout()
    return fig


def confusion_figure(series: dict[str, Any]) -> Figure:
    """Counts with the row (true class) share; label names on both axes."""
    matrix = np.asarray(series["matrix"])
    labels = series["labels"]
    k = len(labels)
    size = max(4.5, min(0.6 * k + 2.5, 14))
    fig, ax = _subplots(figsize=(size, size * 0.9))
    row_share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(row_share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(range(k), labels, rotation=45 if k > 3 else 0, ha="right" if k > 3 else "center")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                color = "white" if row_share[i, j] > 0.6 else "black"
                ax.text(
                    j, i, f"{matrix[i, j]}\n{row_share[i, j]:.0%}", ha="center", va="center", color=color, fontsize=8
                )
    ax.set_title(f"Confusion matrix ({series['split']}, {int(matrix.sum())} examples)")
    fig.tight_layout()
    return fig


def scatter_figure(series: dict[str, Any]) -> Figure:
    """Regression: predicted against true values with the identity line."""
    true, pred = np.asarray(series["true"]), np.asarray(series["pred"])
    fig, ax = _subplots(figsize=(5.5, 5))
    ax.scatter(true, pred, s=14, alpha=0.6)
    lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], color="grey", linestyle="--", linewidth=1, label="predicted = true")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(f"Predicted vs true ({series['split']}, {len(true)} examples)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def label_f1_figure(series: dict[str, Any]) -> Figure:
    """Multi-label: F1 per label (at the run's decision threshold), with each label's dev support."""
    labels, f1, support = series["labels"], series["f1"], series["support"]
    fig, ax = _subplots(figsize=(max(5, 0.5 * len(labels) + 2), 4))
    bars = ax.bar(range(len(labels)), f1, color="#2ca02c")
    for bar, value, n in zip(bars, f1, support, strict=True):
        ax.text(bar.get_x() + bar.get_width() / 2, value + 0.02, f"{value:.2f}\n(n={n})", ha="center", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 4 else 0, ha="right")
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("F1")
    ax.set_title(f"Per-label F1 ({series['split']})")
    fig.tight_layout()
    return fig


def lengths_figure(series: dict[str, Any]) -> Figure:
    """Train examples per token length, the max length line and the padding share the batches carried."""
    counts = np.asarray(series["counts"])
    fig, ax = _subplots(figsize=(8, 3.8))
    ax.bar(np.arange(len(counts)), counts, width=1.0, color="#9467bd")
    if series.get("max_length") is not None:
        ax.axvline(series["max_length"], color=BEST_COLOR, linestyle="--", label=f"max_length {series['max_length']}")
        ax.legend(loc="upper right")
    ax.set_xlabel("tokens per example (after truncation)")
    ax.set_ylabel("train examples")
    share = series.get("padding_share")
    title = "Token lengths"
    if share is not None:
        title += f" — padding share of the training batches: {share:.1%}"
    ax.set_title(title)
    fig.tight_layout()
    return fig


def reliability_figure(series: dict[str, Any]) -> Figure:
    """Accuracy per confidence bin against the diagonal; the bar gap is the calibration error."""
    edges = np.asarray(series["bin_edges"])
    centers, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    counts = np.asarray(series["count"])
    acc = np.asarray([np.nan if a is None else a for a in series["accuracy"]], dtype=float)
    conf = np.asarray([np.nan if c is None else c for c in series["confidence"]], dtype=float)
    fig, (ax, ax_n) = _subplots(2, 1, figsize=(5.5, 6), sharex=True, height_ratios=(3, 1))
    filled = counts > 0
    ax.bar(centers[filled], acc[filled], width=width[filled], edgecolor="black", color="#1f77b4", label="accuracy")
    ax.bar(
        centers[filled],
        conf[filled] - acc[filled],
        bottom=acc[filled],
        width=width[filled],
        color=BEST_COLOR,
        alpha=0.3,
        edgecolor=BEST_COLOR,
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(f"Reliability ({series['what']}) — ECE {series['ece']:.3f}")
    ax_n.bar(centers, counts, width=width, color="grey", edgecolor="black")
    ax_n.set_xlabel("confidence")
    ax_n.set_ylabel("examples")
    fig.tight_layout()
    return fig
