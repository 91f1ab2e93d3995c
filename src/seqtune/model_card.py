"""The run folder's ``README.md``: a model card that says what the model is, how it was trained, how well it does
and how to use it (written by `seqtune.outcome` for a run, `seqtune.seeds` for a seed ensemble)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from seqtune.config import RunConfig
from seqtune.run_metrics import RunMetrics, SeedsMetrics
from seqtune.runfolder import CONFIG_FILE, MODEL_CARD, load_run_config
from seqtune.tasks import TaskSpec


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write_model_card(run_dir: Path, cfg: RunConfig, task: TaskSpec, metrics: RunMetrics | SeedsMetrics) -> None:
    """A README.md that says what the model is, how it was trained and how well it does."""
    (run_dir / MODEL_CARD).write_text(render_model_card(run_dir, cfg, task, metrics))


def render_model_card(
    run_dir: Path, cfg: RunConfig, task: TaskSpec, metrics: RunMetrics | SeedsMetrics, repo_id: str | None = None
) -> str:
    """The card's text. ``repo_id``: where the model is shared (`seqtune.push`): its name, and what the usage
    snippets load; else the run folder."""
    labels = ", ".join(task.label_names) if task.label_names else "regression score"
    data = f"GLUE {cfg.task.upper()}" if cfg.task else f"`{cfg.data.train_file}`"
    if isinstance(metrics, SeedsMetrics):
        ensemble = metrics.ensemble or {}
        scores, tuned, warnings_list, training = ensemble.get("metrics", {}), ensemble.get("threshold"), [], ""
        members = ", ".join(ensemble.get("members", []))
        kept = f"Ensemble of {len(ensemble.get('members', []))} runs ({members}): the {ensemble.get('combine')}"
        kept += "".join(f"; {k} {v:+.4f} over the seeds' mean" for k, v in ensemble["gain_over_seed_mean"].items())
    else:
        best = metrics.best or {}  # empty when no evaluation produced a finite score
        scores, tuned, warnings_list = best.get("metrics", {}), metrics.threshold, metrics.warnings
        training = f"\n- Training time: {_fmt(metrics.train_seconds)} s on {metrics.device} ({metrics.precision})"
        if best:
            kept = f"Best checkpoint: step {best['step']} (epoch {_fmt(best['epoch'])}), chosen by "
            kept += f"`{task.selection_metric}`"
        else:
            kept = f"Kept weights: the last evaluation's (no evaluation produced a usable `{task.selection_metric}`)"
    rows = [
        f"| {split} | {name} | {_fmt(value)} |" for split, values in scores.items() for name, value in values.items()
    ]
    warnings = "".join(f"\n> **Warning:** {w}.\n" for w in warnings_list)
    if tuned:
        kept += (
            f"\n- Decision threshold: {tuned['value']:.2f} (tuned on {tuned['split']}: {tuned['metric']} "
            f"{_fmt(tuned['score_at_0.5'])} at 0.5, {_fmt(tuned['score'])} at the threshold); `seqtune predict`, "
            "`eval`, `serve` and `export` apply it, a plain `transformers` pipeline does not"
        )
    code = _custom_code(run_dir)
    head = f"\n- Head: {code} (its code is in the folder, so `transformers` loads it with `trust_remote_code=True`)"
    name = repo_id or run_dir.name
    meta = yaml.safe_dump(card_metadata(name, cfg, task, scores), sort_keys=False, allow_unicode=True)
    seeds = _seeds_rows(metrics) if isinstance(metrics, SeedsMetrics) else ""
    return f"""---
{meta.strip()}
---
# {name}

Fine-tuned from `{cfg.model.name}` with [seqtune](https://pypi.org/project/seqtune/) on {data}.

- Task: {task.name} ({task.problem_type}); inputs: {", ".join(task.text_columns)}
- Labels: {labels}{head if code else ""}
- {kept}{training}

## Results
{warnings}
| split | metric | value |
|---|---|---|
{chr(10).join(rows)}
{seeds}
## Use

{_usage(repo_id or str(run_dir), code, isinstance(metrics, SeedsMetrics))}

## Training procedure

{_hyperparameters(cfg, metrics)}

## Limitations

{_limitations(cfg, task, metrics)}

## Training configuration

```yaml
{yaml.safe_dump(cfg.to_dict(), sort_keys=False).strip()}
```
"""


def _seeds_rows(metrics: SeedsMetrics) -> str:
    """A ``--seeds N`` folder: each metric's mean, std and 95% CI over the seeds."""
    if not metrics.summary:
        return ""
    rows = [f"| {name} | {_fmt(s['mean'])} | {_fmt(s['std'])} | {_fmt(s['ci95'][0])}-{_fmt(s['ci95'][1])} |"
            for name, s in metrics.summary.items()]  # fmt: skip
    return (f"\nOver {metrics.seeds} seeds (each run on its own):\n\n| metric | mean | std | 95% CI |\n"
            f"|---|---|---|---|\n" + "\n".join(rows) + "\n")  # fmt: skip


def _hyperparameters(cfg: RunConfig, metrics: RunMetrics | SeedsMetrics) -> str:
    """The settings that made the model, as a table (the full config follows the card)."""
    t = cfg.train
    rows = [
        ("base model", cfg.model.name), ("max length (tokens)", cfg.model.max_length or "the model's limit"),
        ("long inputs", cfg.data.long_inputs), ("pooling", cfg.model.pooling),
        ("learning rate", t.lr if t.lr is not None else "auto (seqtune.recipe)"),
        ("epochs", t.epochs if t.epochs is not None else "auto (seqtune.recipe)"), ("batch size", t.batch_size),
        ("gradient accumulation", t.grad_accum), ("warmup ratio", t.warmup_ratio), ("weight decay", t.weight_decay),
        ("layer-wise lr decay", t.layer_decay), ("precision", getattr(metrics, "precision", None) or t.precision),
        ("seed", cfg.seed),
    ]  # fmt: skip
    return "| setting | value |\n|---|---|\n" + "\n".join(f"| {k} | {_fmt(v)} |" for k, v in rows)


def _limitations(cfg: RunConfig, task: TaskSpec, metrics: RunMetrics | SeedsMetrics) -> str:
    """What the card's reader should not assume."""
    data = f"GLUE {cfg.task.upper()}" if cfg.task else f"`{Path(cfg.data.train_file or 'own data').name}`"
    lines = [
        f"- Trained and scored on {data} only: expect lower scores on text that differs from it (domain, style, "
        "language).",
        "- The scores above are on the validation split that chose the kept checkpoint, so they are slightly "
        "optimistic; score it once on a test set of your own (`seqtune eval RUN --input FILE`).",
    ]
    if not task.is_regression:
        lines.append(f"- It can only answer with the labels it was trained on ({len(task.label_names)}).")
    long = getattr(metrics, "long_inputs", None)
    if long:
        lines.append(f"- Long texts: {long}.")
    return "\n".join(lines)


def _custom_code(run_dir: Path) -> str | None:
    """What the model's own code file in the folder is (``auto_map`` in config.json), or None for a built-in one."""
    try:
        auto_map = json.loads((run_dir / "config.json").read_text()).get("auto_map") or {}
    except (OSError, ValueError, AttributeError):
        return None
    if not auto_map:
        return None
    module = str(next(iter(auto_map.values()))).split(".")[0]
    return f"mean pooling over the last hidden states (`{module}.py`)" if module == "mean_pooling" else f"`{module}.py`"


# The packaged checkpoint, as the Hub knows it (its licence is the upstream model's).
PACKAGED = {"minilm": ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0"),
            "all-minilm-l6-v2": ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0")}  # fmt: skip


def _pretrained_root(cfg: RunConfig) -> RunConfig:
    """The config of the run that started from a pretrained model: a run that started from another seqtune run's
    folder (``seqtune glue --transfer``, or ``--model runs/...``) inherits that run's base model and licence."""
    for _ in range(8):  # a chain of runs, never a loop
        folder = Path(cfg.model.name).expanduser()
        if not (folder / CONFIG_FILE).is_file():
            break
        cfg = load_run_config(folder)
    return cfg


def card_metadata(name: str, cfg: RunConfig, task: TaskSpec, scores: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The card's YAML header, as the Hub reads it: library, pipeline, tags, the base model and its licence when
    known, the GLUE dataset and language for GLUE tasks, and a ``model-index`` holding every dev metric (so the
    Hub shows the evaluation results). Nothing is guessed: own data leaves ``datasets`` and ``language`` out."""
    tags = ["seqtune", "text-classification", task.problem_type.replace("_", "-")]
    meta: dict[str, Any] = {"library_name": "transformers", "pipeline_tag": "text-classification", "tags": tags}
    root = _pretrained_root(cfg)
    base, licence = PACKAGED.get(root.model.name.lower(), (None, None))
    local = root.model.name.startswith((".", "/", "~")) or Path(root.model.name).expanduser().exists()
    if base is None and not local and not root.model.from_scratch:
        base = root.model.name  # a hub id
    if base:
        meta["base_model"] = base
    if licence:
        meta["license"] = licence
    dataset = {"name": f"GLUE {cfg.task.upper()}", "type": "nyu-mll/glue", "config": cfg.task} if cfg.task else {
        "name": Path(cfg.data.train_file or "own data").name, "type": "custom"}  # fmt: skip
    if cfg.task:
        meta["datasets"] = ["nyu-mll/glue"]
        meta["language"] = ["en"]
    results = [
        {"task": {"type": "text-classification", "name": "Text Classification"},
         "dataset": {**dataset, "split": split},
         "metrics": [{"type": metric, "value": round(float(value), 6), "name": f"{split} {metric}"}
                     for metric, value in values.items()]}
        for split, values in scores.items() if values
    ]  # fmt: skip
    if results:
        meta["model-index"] = [{"name": name, "results": results}]
    return meta


def _usage(run_dir: str, code: str | None, ensemble: bool) -> str:
    """The card's "Use" snippet: seqtune for an ensemble (transformers loads one model), else transformers."""
    if ensemble:
        return f"""```python
from seqtune import predict
predict("{run_dir}", "...")
```

or `seqtune predict {run_dir} --text "..."` (also `eval`, `serve`, `export`). A plain `transformers` pipeline loads
one member, e.g. `{run_dir}/seed-N`."""
    trust = ", trust_remote_code=True" if code else ""
    return f"""```python
from transformers import pipeline
clf = pipeline("text-classification", model="{run_dir}"{trust})
```

or `seqtune predict {run_dir} --text "..."`."""
