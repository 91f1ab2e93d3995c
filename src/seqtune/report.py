"""Training reports people can look at: ``report.html`` + PNGs for one run, and a table comparing runs.

`write_report(run_dir)` reads what a run folder holds (``metrics.json``, ``train_log.jsonl``, ``task.json``,
``eval_predictions.npz``, ``config.yaml``), builds plain data series from it (`build_series`), draws them with
`seqtune.plots` into ``report/*.png`` and writes a self-contained ``report.html`` (images inline as base64, no
network, no JavaScript). A missing optional file skips its figure with a note on the page.

`compare_runs(run_dirs)` lines runs up: config keys that differ (flattened, dotted) and best metrics.
"""

from __future__ import annotations

import base64
import html
import json
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from seqtune import runfolder
from seqtune.errors import SeqtuneError
from seqtune.metrics import expected_calibration_error, reliability_bins
from seqtune.plots import calibration_series, length_series, loss_series, metric_series, prediction_series
from seqtune.run_metrics import RunMetrics, SeedsMetrics, read_metrics, read_run_metrics
from seqtune.tasks import TaskSpec

__all__ = [
    "build_series",
    "compare_runs",
    "compare_html",
    "compare_table",
    "expected_calibration_error",
    "reliability_bins",
    "write_compare_html",
    "write_report",
    "flatten",
]

REPORT_HTML, REPORT_DIR = runfolder.REPORT_HTML, runfolder.REPORT_DIR
# Run bookkeeping, not hyperparameters: never listed as a difference between runs.
COMPARE_IGNORED = frozenset({"output", "overwrite", "resume", "resume_from", "quiet"})


def _load(run_dir: Path, task: TaskSpec | None = None) -> dict[str, Any]:
    if not run_dir.is_dir():
        raise SeqtuneError(f"{run_dir}: run folder not found; pass the --output folder of a seqtune train run")
    if not (run_dir / runfolder.METRICS_FILE).is_file() and not (run_dir / runfolder.TRAIN_LOG).is_file():
        raise SeqtuneError(f"{run_dir}: no metrics.json or train_log.jsonl; is this a seqtune run folder?")
    metrics_file = run_dir / runfolder.METRICS_FILE
    metrics = read_metrics(run_dir) if metrics_file.is_file() else RunMetrics()
    try:
        log_file = run_dir / runfolder.TRAIN_LOG
        log = [json.loads(x) for x in log_file.read_text().splitlines() if x.strip()] if log_file.is_file() else []
    except json.JSONDecodeError as exc:
        raise SeqtuneError(f"{run_dir}: unreadable train_log.jsonl ({exc})") from exc
    if task is None and (run_dir / runfolder.TASK_FILE).is_file():
        task = runfolder.load_task(run_dir)
    npz = run_dir / runfolder.EVAL_PREDICTIONS
    preds = None
    if npz.is_file():
        with np.load(npz) as data:
            preds = {k: data[k] for k in data.files}
    return {"metrics": metrics, "log": log, "task": task, "preds": preds}


def build_series(run_dir: str | Path) -> dict[str, Any]:
    """The data behind every figure of a run's report, as plain lists (what `write_report` plots).

    Keys: ``loss``, ``metrics``, ``predictions``, ``lengths``, ``calibration`` (each present only when the run
    folder has the data) and ``notes`` (figure -> why it is missing).
    """
    return _build(_load(Path(run_dir)))


def _build(run: dict[str, Any]) -> dict[str, Any]:
    task, preds = run["task"], run["preds"]
    metrics = run["metrics"] if isinstance(run["metrics"], RunMetrics) else RunMetrics()  # a --seeds folder: none
    series: dict[str, Any] = {"notes": {}}
    notes = series["notes"]
    if run["log"]:
        series["loss"] = loss_series(run["log"])
    else:
        notes["loss"] = "no train_log.jsonl in this run folder"
    if metrics.history:
        series["metrics"] = metric_series(metrics)
    else:
        notes["metrics"] = "no evaluation history in metrics.json"
    if metrics.train_length_counts:
        series["lengths"] = length_series(metrics)
    else:
        notes["lengths"] = "metrics.json has no train_length_counts (run from an older seqtune)"
    if preds is None or task is None:
        missing = runfolder.EVAL_PREDICTIONS if preds is None else runfolder.TASK_FILE
        notes["predictions"] = notes["calibration"] = f"no {missing} in this run folder (older or unfinished run)"
    else:
        series["predictions"] = prediction_series(task, preds)
        if task.is_regression:
            notes["calibration"] = "regression run: no class confidences to calibrate"
        else:
            series["calibration"] = calibration_series(task, preds)
    return series


# ------------------------------------------------------------------------------------------------ the page

_CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222}h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
img{max-width:100%;height:auto;border:1px solid #eee}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.3em .7em;text-align:left}th{background:#f5f5f5}
pre{background:#f7f7f7;padding:1em;overflow-x:auto;font-size:.85em}.note{color:#8a6d3b;background:#fcf8e3;
padding:.6em 1em;border-left:4px solid #f0ad4e}.muted{color:#777;font-size:.9em}"""

_FIGURES = {  # series key -> (section title, explanation)
    "loss": ("Training loss and learning rate", "Mean train loss over each logging window, and the scheduler's lr."),
    "metrics": ("Dev metrics", "Every evaluation; the red star and dashed line mark the kept (best) checkpoint."),
    "predictions": ("Predictions of the best checkpoint", "On the first evaluation split."),
    "calibration": ("Calibration", "Reliability diagram, 10 equal-width confidence bins; ECE = weighted mean gap."),
    "lengths": ("Token lengths", "Training examples per token length; padding share = padded slots / all slots."),
}


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != value or abs(value) < 1e-3 or abs(value) >= 1e6:  # nan, tiny (lr) or huge
            return f"{value:.4g}"
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.4f}".rstrip("0").rstrip(".")
    return "—" if value is None else str(value)


def _table(rows: list[tuple[Any, ...]], header: tuple[str, ...] | None = None) -> str:
    head = "<tr>" + "".join(f"<th>{_esc(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{_esc(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class="figure" src="data:image/png;base64,{data}" alt="{_esc(alt)}">'


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
        f"<body>\n{body}\n</body></html>\n"
    )


def _environment(metrics: RunMetrics) -> tuple[list[tuple[Any, ...]], str]:
    recorded = metrics.environment
    if isinstance(recorded, dict) and recorded:
        rows, origin = list(recorded.items()), "recorded by the run"
    else:
        rows = [("python", platform.python_version())]
        for pkg in ("torch", "transformers", "seqtune"):
            try:
                rows.append((pkg, metadata.version(pkg)))
            except metadata.PackageNotFoundError:
                rows.append((pkg, "not installed"))
        origin = "versions installed where this report was written"
    rows += [("device", metrics.device), ("precision", metrics.precision)]
    return rows, origin


def _timing(run_dir: Path, metrics: RunMetrics, series: dict[str, Any]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = [
        ("training time, excluding evaluation (s)", metrics.train_seconds),
        ("throughput (real tokens/s)", metrics.tokens_per_second),
        ("optimizer steps", (series.get("loss") or {}).get("step", [None])[-1]),
        ("evaluations", len((series.get("metrics") or {}).get("step", []))),
    ]
    start, end = run_dir / runfolder.CONFIG_FILE, run_dir / runfolder.METRICS_FILE
    if start.is_file() and end.is_file():
        wall = end.stat().st_mtime - start.stat().st_mtime
        rows.append(("wall time, config.yaml to metrics.json written (s)", round(wall, 1)))
    return rows


def write_report(run_dir: str | Path, task: TaskSpec | None = None) -> Path:
    """Write ``report.html`` and ``report/*.png`` (+ ``report/series.json``) into a run folder; return the HTML path.

    Robust to older or partial runs: a figure whose data is missing is replaced by a note on the page. ``task``:
    the run's task spec, when the folder has no ``task.json`` yet (a run being finished writes it last).

    Example:
        >>> from seqtune.report import write_report
        >>> page = write_report("runs/mrpc")  # doctest: +SKIP
        >>> page  # doctest: +SKIP
        PosixPath('runs/mrpc/report.html')
    """
    from seqtune import plots

    run_dir = Path(run_dir)
    run = _load(run_dir, task)
    series, recorded = _build(run), run["metrics"]
    metrics = recorded if isinstance(recorded, RunMetrics) else RunMetrics()  # a seed ensemble's: its own section
    out = run_dir / REPORT_DIR
    out.mkdir(exist_ok=True)
    for stale in ("loss", "metrics", "confusion", "scatter", "label_f1", "lengths", "calibration"):
        (out / f"{stale}.png").unlink(missing_ok=True)  # a figure whose data is gone must not linger
    draw = {
        "loss": plots.loss_figure,
        "metrics": plots.metrics_figure,
        "lengths": plots.lengths_figure,
        "calibration": plots.reliability_figure,
    }
    kinds = {"confusion": plots.confusion_figure, "scatter": plots.scatter_figure, "label_f1": plots.label_f1_figure}
    files: dict[str, Path] = {}
    for key in _FIGURES:
        if key in series:
            name = series[key]["kind"] if key == "predictions" else key
            figure = (kinds[name] if key == "predictions" else draw[key])(series[key])
            files[key] = plots.save_png(figure, out / f"{name}.png")
    series["files"] = {key: str(path.relative_to(run_dir)) for key, path in files.items()}
    (out / "series.json").write_text(json.dumps(series, indent=1))

    best = (series.get("metrics") or {}).get("best") or {}
    task_name = metrics.task or (run["task"].name if run["task"] else "?")
    parts = [f"<h1>Training report: {_esc(run_dir.name)}</h1>"]
    parts.append(f'<p class="muted">task {_esc(task_name)}, written {_esc(time.strftime("%Y-%m-%d %H:%M:%S"))}</p>')
    for warning in metrics.warnings:
        parts.append(f'<p class="note warning">Warning: {_esc(warning)}.</p>')
    if best:
        rows = [(split, name, value) for split, vals in best["metrics"].items() for name, value in vals.items()]
        parts.append(f"<h2>Best checkpoint: step {_esc(best['step'])} (epoch {_esc(_fmt(best.get('epoch')))})</h2>")
        parts.append(_table(rows, ("split", "metric", "value")))
        tuned = metrics.threshold
        if tuned:
            parts.append(
                f"<p>Decision threshold {_esc(tuned['value'])}, tuned on {_esc(tuned['split'])}: "
                f"{_esc(tuned['metric'])} {_esc(_fmt(tuned['score_at_0.5']))} at 0.5, "
                f"{_esc(_fmt(tuned['score']))} at the threshold. The predictions below use it.</p>"
            )
    parts += _ensemble_section(recorded) if isinstance(recorded, SeedsMetrics) else []
    for key, (title, caption) in _FIGURES.items():
        parts.append(f'<h2 id="{key}">{_esc(title)}</h2>')
        if key in files:
            if key == "calibration":
                caption += f" ECE = {series[key]['ece']:.4f}."
            if key == "lengths" and metrics.long_inputs:
                caption += f" Long texts, {metrics.long_inputs}."
            parts.append(f"<p>{_esc(caption)}</p>{_img(files[key], title)}")
        else:
            parts.append(f'<p class="note">Not shown: {_esc(series["notes"].get(key, "no data"))}.</p>')
    parts.append("<h2>Timing</h2>" + _table(_timing(run_dir, metrics, series)))
    env_rows, origin = _environment(metrics)
    parts.append(f'<h2>Environment</h2><p class="muted">{_esc(origin)}</p>' + _table(env_rows))
    config = run_dir / runfolder.CONFIG_FILE
    parts.append("<h2>Configuration (config.yaml)</h2>")
    parts.append(
        f"<pre>{_esc(config.read_text())}</pre>" if config.is_file() else '<p class="note">No config.yaml.</p>'
    )
    page = run_dir / REPORT_HTML
    page.write_text(_page(f"seqtune report: {run_dir.name}", "\n".join(parts)), encoding="utf-8")
    return page


def _ensemble_section(metrics: SeedsMetrics) -> list[str]:
    """A seed ensemble (``--seeds N --ensemble``): its scores beside the seeds' mean and std, and its threshold."""
    ensemble = metrics.ensemble
    if not ensemble:
        return []
    summary = metrics.summary
    rows = [
        (split, name, value, *((f"{summary[name]['mean']:.4f} +- {summary[name]['std']:.4f}",) if name in summary
                              and split == next(iter(ensemble["metrics"])) else ("",)))
        for split, values in ensemble["metrics"].items()
        for name, value in values.items()
    ]  # fmt: skip
    members = ", ".join(ensemble["members"])
    parts = [f"<h2>Ensemble of {len(ensemble['members'])} runs</h2><p>{_esc(members)}: the {_esc(ensemble['combine'])}."
             " The predictions below are the ensemble's.</p>",
             _table(rows, ("split", "metric", "ensemble", "seeds: mean +- std"))]  # fmt: skip
    tuned = ensemble.get("threshold")
    if tuned:
        where = _esc(tuned["split"])
        parts.append(f"<p>Decision threshold {_esc(tuned['value'])}, tuned for the ensemble on {where}.</p>")
    return parts


# ------------------------------------------------------------------------------------------------ comparing runs


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1e-4}}`` -> ``{"train.lr": 1e-4}``."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def compare_runs(run_dirs: list[str | Path]) -> dict[str, Any]:
    """Line up runs: config keys whose values differ, and each run's best metrics.

    Returns ``{"runs": names, "paths": [...], "config": {dotted key: [value per run]}, "metrics":
    {"split/metric": [value per run]}, "summary": {"best step" | "train seconds" | "tokens/s": [...]}}``.
    A key missing from a run is ``None`` there. Bookkeeping keys (`COMPARE_IGNORED`) are never listed.

    Example:
        >>> compare_runs(["runs/lr-1e-4", "runs/lr-3e-4"])["config"]  # doctest: +SKIP
        {'train.lr': [0.0001, 0.0003]}
    """
    paths = [Path(p) for p in run_dirs]
    if not paths:
        raise SeqtuneError("compare needs at least one run folder")
    configs, bests, metrics_all = [], [], []
    for path in paths:
        if not (path / runfolder.CONFIG_FILE).is_file() or not (path / runfolder.METRICS_FILE).is_file():
            raise SeqtuneError(f"{path}: not a finished seqtune run (no config.yaml / metrics.json)")
        configs.append(flatten(yaml.safe_load((path / runfolder.CONFIG_FILE).read_text()) or {}))
        metrics = read_run_metrics(path)
        metrics_all.append(metrics)
        bests.append(metrics.best or {})
    keys = list(dict.fromkeys(k for c in configs for k in c))
    differ = {}
    for key in keys:
        values = [c.get(key) for c in configs]
        if key not in COMPARE_IGNORED and len({json.dumps(v, sort_keys=True) for v in values}) > 1:
            differ[key] = values
    names = [f"{split}/{name}" for b in bests for split, vals in (b.get("metrics") or {}).items() for name in vals]
    table = {
        n: [(b.get("metrics") or {}).get(n.split("/")[0], {}).get(n.split("/", 1)[1]) for b in bests]
        for n in dict.fromkeys(names)
    }
    labels = [p.name for p in paths]
    if len(set(labels)) < len(labels):
        labels = [str(p) for p in paths]
    return {
        "runs": labels,
        "paths": [str(p) for p in paths],
        "config": differ,
        "metrics": table,
        "summary": {
            "best step": [b.get("step") for b in bests],
            "train seconds": [m.train_seconds for m in metrics_all],
            "tokens/s": [m.tokens_per_second for m in metrics_all],
        },
    }


def _compare_rows(result: dict[str, Any]) -> list[tuple[str, str, list[Any]]]:
    rows = [("config", k, v) for k, v in result["config"].items()]
    rows += [("best", k, v) for k, v in result["metrics"].items()]
    return rows + [("run", k, v) for k, v in result["summary"].items()]


def compare_table(result: dict[str, Any]):
    """`compare_runs`'s result as a rich Table (rows: differing config keys, best metrics, timing)."""
    from rich.table import Table

    table = Table(title="seqtune compare", show_lines=False)
    table.add_column("", style="dim")
    table.add_column("key", style="bold")
    for run in result["runs"]:
        table.add_column(run, overflow="fold")
    section = None
    for group, key, values in _compare_rows(result):
        if section is not None and group != section:
            table.add_section()
        table.add_row(group if group != section else "", key, *(_fmt(v) for v in values))
        section = group
    if not result["config"]:
        table.caption = "no config differences (besides the run folder)"
    return table


def compare_html(result: dict[str, Any]) -> str:
    """`compare_runs`'s result as a self-contained HTML page."""
    header = ("", "key", *result["runs"])
    rows = [(group, key, *values) for group, key, values in _compare_rows(result)]
    paths = _table(list(zip(result["runs"], result["paths"], strict=True)), ("run", "folder"))
    note = "" if result["config"] else '<p class="note">No config differences (besides the run folder).</p>'
    return _page("seqtune compare", f"<h1>Comparing {len(result['runs'])} runs</h1>{paths}{note}{_table(rows, header)}")


def write_compare_html(result: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(compare_html(result), encoding="utf-8")
    return path
