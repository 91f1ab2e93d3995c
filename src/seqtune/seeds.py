"""One config over several seeds: error bars (mean, std, bootstrap CI) and, on request, a seed ensemble.

``seqtune train ... --seeds N`` trains ``<output>/seed-K`` for K = seed, seed+1, ...; every seed holds out the same
validation rows (``data.split_seed`` = the first seed), so the spread is the training's, and an ensemble is scored
on rows none of its members trained on. ``<output>/metrics.json`` (written here) holds the summary; with
``--ensemble`` ``<output>`` is also a run folder of its own (`seqtune.ensemble`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from seqtune import runfolder
from seqtune.config import RunConfig
from seqtune.ensemble import COMBINE, ensemble_predictions
from seqtune.metrics import compute_metrics, tune_threshold
from seqtune.run_metrics import SeedsMetrics
from seqtune.tasks import TaskSpec


def bootstrap_ci(values: list[float], n_resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean of ``values``."""
    arr = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, len(arr), size=(n_resamples, len(arr)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def seed_summary(per_seed: list[dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Mean, sample std and bootstrap 95% CI of every metric across seeds."""
    summary = {}
    for name in per_seed[0] if per_seed else {}:
        values = [m[name] for m in per_seed]
        low, high = bootstrap_ci(values)
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        summary[name] = {"mean": float(np.mean(values)), "std": std, "ci95": [low, high], "values": values}
    return summary


def train_seeds(cfg: RunConfig, n_seeds: int, ensemble: bool = False) -> tuple[Path, dict[str, dict[str, Any]]]:
    """The same config over seeds ``cfg.seed, cfg.seed+1, ...``: runs in ``<output>/seed-N``, summary in
    ``<output>/metrics.json``; ``ensemble``: ``<output>`` becomes a run folder predicting with all of them.
    Returns the folder and the summary of the first evaluation split."""
    from seqtune.runfolder import check_run_dir, default_output
    from seqtune.training import train

    out = Path(cfg.output) if cfg.output else default_output(cfg)
    check_run_dir(out, overwrite=cfg.overwrite, resume=cfg.resume)
    split_seed = cfg.data.split_seed if cfg.data.split_seed is not None else cfg.seed
    per_seed, runs = [], []
    for i in range(n_seeds):
        seed = cfg.seed + i
        # --resume: finished seeds are skipped, an interrupted one continues, the rest start
        where = {"seed": seed, "output": str(out / f"seed-{seed}"), "overwrite": not cfg.resume,
                 "data.split_seed": split_seed}  # fmt: skip
        result = train(cfg.with_overrides(where))
        if not result.completed:  # a signal stopped this seed (its resume hint is printed): no summary of a part
            raise KeyboardInterrupt
        split = result.task.eval_splits[0]
        if result.best is not None:  # a seed whose evaluations were all undefined has no score to summarise
            per_seed.append(result.best["metrics"][split])
        runs.append(result.run_dir)
    summary = seed_summary(per_seed)
    if not ensemble:
        SeedsMetrics(seeds=n_seeds, runs=[str(r) for r in runs], summary=summary).write(out)
        return out, summary
    make_ensemble(out, runs, cfg.with_overrides({"data.split_seed": split_seed}), summary)
    return out, summary


def make_ensemble(out: Path, runs: list[Path], cfg: RunConfig, summary: dict[str, dict[str, Any]]) -> SeedsMetrics:
    """Make ``out`` a run folder that predicts with the mean of the finished ``runs`` (its members, folders inside
    it), scored on their evaluation rows; ``cfg`` is recorded as its config and ``summary`` (`seed_summary` of the
    members' scores) as the seeds' spread the gain is measured against."""
    record = SeedsMetrics(seeds=len(runs), runs=[str(r) for r in runs], summary=summary)
    task = _write_ensemble_files(out, runs)
    cfg.save(out / runfolder.CONFIG_FILE)
    task, record.ensemble = _score_ensemble(out, runs, task, summary)
    record.write(out)
    _finish_ensemble(out, task, record)
    return record


def _write_ensemble_files(out: Path, runs: list[Path]) -> TaskSpec:
    """Everything but the scores: the member list, and the first member's tokenizer and config.json."""
    (out / runfolder.TASK_FILE).unlink(missing_ok=True)  # a rebuilt ensemble is unfinished until task.json is back
    first = runs[0]
    (out / runfolder.ENSEMBLE_FILE).write_text(
        json.dumps({"members": [r.name for r in runs], "combine": COMBINE}, indent=1)
    )
    for path in first.iterdir():
        if path.is_file() and (path.name.startswith(("tokenizer", "special_tokens", "vocab", "merges", "spm"))
                               or path.name in ("config.json", "sentencepiece.bpe.model")):  # fmt: skip
            shutil.copy2(path, out / path.name)
    return replace(runfolder.load_task(first), threshold=None)


def _score_ensemble(
    out: Path, runs: list[Path], task: TaskSpec, summary: dict[str, dict[str, Any]]
) -> tuple[TaskSpec, dict[str, Any]]:
    """The ensemble's metrics on the members' evaluation rows, with its own decision threshold when the members
    tuned one; the gain over the members' mean."""
    predictions = ensemble_predictions(runs, task)
    np.savez(out / runfolder.EVAL_PREDICTIONS, **predictions)
    split = task.eval_splits[0]
    logits, labels = predictions[f"{split}/logits"], predictions[f"{split}/labels"]
    threshold = None
    if any(runfolder.load_task(r).threshold is not None for r in runs):
        at_half = compute_metrics(task, logits, labels)[task.selection_metric]
        value, score = tune_threshold(task, logits, labels)
        task = replace(task, threshold=value)
        threshold = {"value": value, "split": split, "metric": task.selection_metric, "score_at_0.5": at_half,
                     "score": score}  # fmt: skip
    scores = {
        s: compute_metrics(task, predictions[f"{s}/logits"], predictions[f"{s}/labels"])
        for s in task.eval_splits
        if f"{s}/logits" in predictions
    }
    gain = {name: value - summary[name]["mean"] for name, value in scores[split].items() if name in summary}
    return task, {"members": [r.name for r in runs], "combine": COMBINE, "metrics": scores, "gain_over_seed_mean": gain,
                  "threshold": threshold}  # fmt: skip


def _finish_ensemble(out: Path, task: TaskSpec, record: SeedsMetrics) -> None:
    from seqtune.model_card import write_model_card
    from seqtune.report import write_report

    cfg = runfolder.load_run_config(out)
    write_model_card(out, cfg, task, record)
    write_report(out, task)
    runfolder.save_task(out, task)  # last: its presence marks a finished run
