"""`seqtune glue`: every GLUE task that has data, over seeds, then a results table and a leaderboard submission.

Each (task, seed) is an ordinary run folder, ``<output>/<task>/seed-<N>``. A rerun skips finished runs, resumes
interrupted ones from their last checkpoint, and restarts runs killed before their first checkpoint, so the same
command can simply be run again after a preemption. At the end (and after every task) ``results.json`` /
``results.md`` hold, per task, the official metrics as mean +- std over seeds, training time and tokens/s, and
``submission/`` + ``submission.zip`` the test predictions under the file names the GLUE leaderboard expects.

Intermediate-task transfer (``--transfer``, on by default for RTE): a task's seed-N run can start from the kept model
of another task's seed-N run in the same folder instead of from the pretrained checkpoint, as leaderboard entries
start RTE, MRPC and STS-B from an MNLI model. The source task trains first; its head is replaced by the target's.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqtune import runfolder
from seqtune.config import RunConfig
from seqtune.data import GLUE_FOLDERS
from seqtune.errors import SeqtuneError
from seqtune.progress import Reporter
from seqtune.recipe import auto_epochs
from seqtune.run_metrics import read_run_metrics
from seqtune.tasks import GLUE_TASKS, get_task

RESULTS_JSON, RESULTS_MD = "results.json", "results.md"
SUBMISSION = "submission"
DIAGNOSTIC = ("diagnostic", "diagnostic.tsv")  # GLUE's AX set: predicted with the MNLI model
# --transfer's default: target task <- source task. RTE from STS-B: carved validation, seeds 42-44, against the same
# day's defaults: 0.643 against 0.608 (docs/glue.md "Starting RTE from STS-B").
DEFAULT_TRANSFER = {"rte": "stsb"}


@dataclass
class GlueResult:
    """What `run_glue` produced: the folder, per-task summaries, skipped tasks (with why) and the submission zip."""

    output: Path
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    submission: Path | None = None


def available(data_dir: Path, names: list[str]) -> tuple[list[str], dict[str, str]]:
    """The tasks with train and dev files in ``data_dir``, and why each other one is skipped."""
    ready, skipped = [], {}
    for name in names:
        task = get_task(name)
        folder = data_dir / GLUE_FOLDERS[task.name]
        needed = [task.glue_files[s].filename for s in ("train", *task.eval_splits)]
        missing = [f for f in needed if not (folder / f).is_file()]
        if missing:
            skipped[name] = f"no {folder / missing[0]}"
        else:
            ready.append(name)
    return ready, skipped


def parse_transfer(text: str | None) -> dict[str, str]:
    """``--transfer``: ``TARGET=SOURCE`` pairs (``rte=stsb,mrpc=stsb``), ``none`` for none, or ``None`` for
    `DEFAULT_TRANSFER`. One hop: a source task is not itself a target.

    Example:
        >>> parse_transfer("RTE=stsb, mrpc=stsb"), parse_transfer("none"), parse_transfer(None)
        ({'rte': 'stsb', 'mrpc': 'stsb'}, {}, {'rte': 'stsb'})
    """
    if text is None:
        return dict(DEFAULT_TRANSFER)
    if text.strip().lower() == "none":
        return {}
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        target, sep, source = item.partition("=")
        if not sep or not target.strip() or not source.strip():
            raise SeqtuneError(f"--transfer {text}: '{item}' is not TARGET=SOURCE; e.g. --transfer rte=stsb (or none)")
        target, source = get_task(target.strip()).name, get_task(source.strip()).name
        if target == source:
            raise SeqtuneError(f"--transfer {text}: {target} cannot start from itself")
        pairs[target] = source
    for target, source in pairs.items():
        if source in pairs:
            raise SeqtuneError(
                f"--transfer {text}: {source} is the source of {target} and a target itself; give one hop only"
            )
    return pairs


def _ordered(ready: list[str], transfer: dict[str, str]) -> list[str]:
    """``ready`` in GLUE order, except that a source task moves just before the first task that starts from it."""
    order: list[str] = []
    for name in ready:
        source = transfer.get(name)
        if source in ready and source not in order:
            order.append(source)
        if name not in order:
            order.append(name)
    return order


def _source_run(run_dir: Path, transfer: dict[str, str]) -> Path | None:
    """The run ``run_dir`` (``<out>/<task>/seed-<N>``) starts from under `--transfer`: ``<out>/<source>/seed-<N>``."""
    task = run_dir.parent.name
    return run_dir.parent.parent / transfer[task] / run_dir.name if task in transfer else None


def _start_model(base: RunConfig, run_dir: Path, transfer: dict[str, str]) -> str:
    """What a task's seed run starts from: the model its folder already started from (a resumed run keeps its
    settings), else the same seed's finished run of its `--transfer` source, else the base model."""
    if (run_dir / runfolder.CONFIG_FILE).is_file():
        return runfolder.load_run_config(run_dir).model.name
    source = _source_run(run_dir, transfer)
    return str(source) if source is not None and _finished(source) else base.model.name


def _transferred(run_dir: Path, transfer: dict[str, str]) -> bool:
    """Whether the run in ``run_dir`` started from its `--transfer` source's run of the same seed."""
    source = _source_run(run_dir, transfer)
    return source is not None and runfolder.load_run_config(run_dir).model.name == str(source)


def _finished(run_dir: Path) -> bool:
    return (run_dir / runfolder.TASK_FILE).is_file()


def _train_one(cfg: RunConfig, run_dir: Path) -> None:
    """Train (or resume, or restart) one run folder."""
    from seqtune.training import train

    result = train(cfg.with_overrides({"output": str(run_dir), "resume": True}))  # starts, or continues
    if not result.completed:  # a signal stopped it; its resume hint was printed
        raise KeyboardInterrupt


def _summary(task_name: str, run_dirs: list[Path]) -> dict[str, Any]:
    """Mean +- std over seeds of each official metric on each evaluation split, and the runs' speed."""
    per_seed = [read_run_metrics(d) for d in run_dirs]
    metrics: dict[str, dict[str, dict[str, float]]] = {}
    for split in get_task(task_name).eval_splits:
        names = {n for m in per_seed for n in m.best_scores(split)}
        for name in sorted(names):
            values = [m.best_scores(split)[name] for m in per_seed if m.best]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            metrics.setdefault(split, {})[name] = {"mean": statistics.fmean(values), "std": std, "n": len(values)}
    return {
        "metrics": metrics,
        "seeds": [runfolder.load_run_config(d).seed for d in run_dirs],
        "runs": [str(d) for d in run_dirs],
        "train_seconds": statistics.fmean(m.train_seconds for m in per_seed),
        "tokens_per_second": statistics.fmean(m.tokens_per_second for m in per_seed),
        "precision": per_seed[0].precision,
        "warnings": [w for m in per_seed for w in m.warnings],
    }


def _best_seed_run(run_dirs: list[Path]) -> Path:
    """The seed whose kept checkpoint scored best on dev (by the runs' selection metric, `--metric` included): the
    run the submission predicts with."""
    task = runfolder.load_task(run_dirs[0])

    def score(d: Path) -> float:
        best = read_run_metrics(d).best
        value = best["score"] if best else float("nan")
        return (value if task.greater_is_better else -value) if value == value else float("-inf")

    return max(run_dirs, key=score)


def _ensemble(folder: Path, runs: list[Path]) -> dict[str, dict[str, float]]:
    """``<output>/<task>`` made a seed ensemble of its seed runs (or read back when it already is one of exactly
    them): its metrics per evaluation split."""
    from seqtune.run_metrics import SeedsMetrics, read_metrics
    from seqtune.seeds import make_ensemble, seed_summary

    if _finished(folder):
        record = read_metrics(folder)
        members = record.ensemble["members"] if isinstance(record, SeedsMetrics) and record.ensemble else None
        if members == [r.name for r in runs]:
            return record.ensemble["metrics"]
    split = get_task(folder.name).eval_splits[0]
    summary = seed_summary([m.best_scores(split) for m in map(read_run_metrics, runs) if m.best])
    cfg = runfolder.load_run_config(runs[0]).with_overrides({"output": str(folder)})
    return make_ensemble(folder, runs, cfg, summary).ensemble["metrics"]


def write_results(out: Path, result: GlueResult) -> None:
    """results.json and results.md (one row per task, official metrics as mean +- std over seeds; with
    ``--ensemble`` the seed ensemble's score beside them)."""
    (out / RESULTS_JSON).write_text(json.dumps({"tasks": result.tasks, "skipped": result.skipped}, indent=1))
    lines = ["# seqtune glue", "", "| task | split | metric | mean | std | seeds | ensemble | train s | tok/s | "
             "precision |", "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, s in result.tasks.items():
        for split, values in s["metrics"].items():
            for metric, v in values.items():
                ens = s.get("ensemble", {}).get(split, {}).get(metric)
                lines.append(
                    f"| {name} | {split} | {metric} | {v['mean']:.4f} | {v['std']:.4f} | {v['n']} | "
                    f"{'' if ens is None else f'{ens:.4f}'} | {s['train_seconds']:.0f} | "
                    f"{s['tokens_per_second']:,.0f} | {s['precision']} |"
                )
    lines += ["", *(f"- {name}: skipped ({why})" for name, why in result.skipped.items())]
    lines += [f"- {name}: every seed started from the same seed's {s['transfer_from']} model (--transfer)"
              for name, s in result.tasks.items() if s.get("transfer_from")]  # fmt: skip
    warnings = [f"- {name}: {w}" for name, s in result.tasks.items() for w in s["warnings"]]
    if warnings:
        lines += ["", "Warnings:", *warnings]
    (out / RESULTS_MD).write_text("\n".join(lines).rstrip() + "\n")


def write_submission(out: Path, result: GlueResult, data_dir: Path) -> Path:
    """Every task's test predictions under GLUE's file names (MNLI: matched and mismatched; AX when its file is
    there), in ``submission/`` and ``submission.zip``."""
    from seqtune.predict import glue_submission, predict_glue_diagnostic

    folder = out / SUBMISSION
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, summary in result.tasks.items():
        # the seed ensemble when there is one; else the seed that scored best on dev
        run_dir = out / name if "ensemble" in summary else _best_seed_run([Path(r) for r in summary["runs"]])
        task = get_task(name)
        if all((data_dir / GLUE_FOLDERS[name] / task.glue_files[s].filename).is_file() for s in task.test_splits):
            glue_submission(run_dir, folder, str(data_dir))
        if name == "mnli" and (data_dir.joinpath(*DIAGNOSTIC)).is_file():
            predict_glue_diagnostic(run_dir, data_dir.joinpath(*DIAGNOSTIC), folder / "AX.tsv")
    archive = out / f"{SUBMISSION}.zip"
    with zipfile.ZipFile(archive.with_suffix(".tmp"), "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.glob("*.tsv")):
            zf.write(path, path.name)
    archive.with_suffix(".tmp").replace(archive)
    return archive


def run_glue(
    base: RunConfig,
    data_dir: str | Path,
    tasks: list[str] | None = None,
    seeds: int = 1,
    output: str | Path = "glue",
    ensemble: bool = False,
    transfer: dict[str, str] | None = None,
) -> GlueResult:
    """Train every GLUE task with data in ``data_dir`` (or the ``tasks`` named) over ``seeds`` seeds; ``ensemble``
    (two or more seeds): each task's folder becomes a seed ensemble, which the submission predicts with.
    ``transfer`` (target -> source task, `parse_transfer`; ``None``: `DEFAULT_TRANSFER`): a target's seed-N run
    starts from the source's seed-N run, trained first when the source is among the tasks (else when a finished one
    is in ``output``; without one the target starts from the base model, and a line says so).

    Example:
        >>> run_glue(RunConfig(), "../shared/glue", ["rte", "mrpc"], seeds=3, output="runs/glue")  # doctest: +SKIP
    """
    data_dir, out = Path(data_dir), Path(output)
    if not data_dir.is_dir():
        raise SeqtuneError(f"{data_dir}: GLUE folder not found; pass --data-dir with <TASK>/train.tsv files")
    if seeds < 1:
        raise SeqtuneError(f"--seeds {seeds}: expected at least 1")
    if ensemble and seeds < 2:
        raise SeqtuneError("--ensemble combines the runs of --seeds N (N >= 2); add e.g. --seeds 3")
    names = [get_task(t).name for t in tasks] if tasks else list(GLUE_TASKS)
    transfer = dict(DEFAULT_TRANSFER) if transfer is None else transfer
    ready, skipped = available(data_dir, names)
    reporter = Reporter(base.quiet)
    for name, why in skipped.items():
        reporter.summary(f"skip {name}: {why}")
    if not ready:
        raise SeqtuneError(f"{data_dir}: none of {', '.join(names)} has train and dev files; check --data-dir")
    out.mkdir(parents=True, exist_ok=True)
    result = GlueResult(out, skipped=skipped)
    ready = _ordered(ready, transfer)
    jobs = [(name, base.seed + i) for name in ready for i in range(seeds)]
    # ETA: seconds per unit of work so far (train file bytes x epochs: text length and passes), times what is left
    sizes = {name: _train_work(base, data_dir, name) for name in ready}
    spent, work_done = 0.0, 0.0
    for n, (name, seed) in enumerate(jobs, start=1):
        run_dir = out / name / f"seed-{seed}"
        work = sizes[name]
        if not _finished(run_dir):
            started = time.perf_counter()
            tune = base.train.tune_threshold and get_task(name).has_threshold  # thresholds: binary tasks only
            fresh = not (run_dir / runfolder.CONFIG_FILE).is_file()
            start, source = _start_model(base, run_dir, transfer), _source_run(run_dir, transfer)
            if source is not None and start == base.model.name and fresh:
                reporter.summary(f"{name} seed {seed}: starts from {start}, not from {transfer[name]} (no finished "
                                 f"{source}; add {transfer[name]} to --tasks)")  # fmt: skip
            # a run started from its source loads the source's weights, also under --from-scratch (the source's own)
            scratch = base.model.from_scratch and start == base.model.name
            cfg = base.with_overrides({"task": name, "seed": seed, "data.data_dir": str(data_dir), "quiet": True,
                                       "train.tune_threshold": tune, "model.name": start,
                                       "model.from_scratch": scratch})  # fmt: skip
            _train_one(cfg, run_dir)
            spent, work_done = spent + time.perf_counter() - started, work_done + work
        left = sum(sizes[t] for t, s in jobs[n:] if not _finished(out / t / f"seed-{s}"))
        eta = f", about {left * spent / work_done / 60:.0f} min left" if work_done and left else ""
        scores = read_run_metrics(run_dir).best_scores(get_task(name).eval_splits[0])
        shown = " ".join(f"{k}={v:.4f}" for k, v in scores.items())
        origin = f" (from {transfer[name]})" if _transferred(run_dir, transfer) else ""
        reporter.summary(f"[{n}/{len(jobs)}] {name} seed {seed}{origin}: {shown or 'no usable score'}{eta}")
        if all(_finished(out / name / f"seed-{s}") for t, s in jobs if t == name):
            runs = [out / name / f"seed-{s}" for t, s in jobs if t == name]
            result.tasks[name] = _summary(name, runs)
            every = all(_transferred(r, transfer) for r in runs)
            result.tasks[name]["transfer_from"] = transfer[name] if every else None
            if ensemble:
                result.tasks[name]["ensemble"] = _ensemble(out / name, runs)
            write_results(out, result)
    result.submission = write_submission(out, result, data_dir)
    reporter.summary(f"results: {out / RESULTS_MD}; submission: {result.submission}")
    return result


def _train_work(cfg: RunConfig, data_dir: Path, name: str) -> float:
    """A run's work for the ETA's proportions: the train file's bytes (text length) times the passes it will make
    (``train.epochs``, or the automatic number for its row count). Cheap: the file is only counted."""
    path = data_dir / GLUE_FOLDERS[name] / get_task(name).glue_files["train"].filename
    with path.open("rb") as f:
        rows = sum(1 for _ in f) - 1
    t = cfg.train
    steps_per_epoch = max(1, math.ceil(rows / (t.batch_size * t.grad_accum)))
    epochs = t.epochs if t.epochs is not None else auto_epochs(steps_per_epoch, t.min_steps, t.max_auto_epochs)
    return float(path.stat().st_size) * epochs
