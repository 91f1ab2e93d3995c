"""Freeze-and-cache against full fine-tuning: training time, tokens/s-equivalent and dev score per GLUE task.

    python benchmarks/freeze_cache.py --glue-dir ../shared/glue --tasks mrpc,rte,cola,stsb --layers full,1,2,3 \\
        --seeds 42,43,44 [--threads 1] [--full-from runs/glue-defaults]

Each (task, contender, seed) is one `seqtune.train` run with the defaults; a contender ``K`` adds
``--train-layers K`` (the top K of MiniLM's 6 layers train, the bottom's output is cached), ``full`` trains every
layer, ``loraR`` trains rank-R adapters (``--lora R``), and ``K@LR`` (``2@2e-4``, ``lora8@5e-4``) also sets the
learning rate. Training seconds include building the cache. ``--full-from`` reads the ``full`` runs from a
`seqtune glue` output folder (same defaults, same dev scoring) instead of training them again.
"tokens/s-equivalent" is the real (unpadded) training tokens of the whole run divided by its training seconds, the
same count for every contender, so it compares like with like.
The dev split is scored once per run at its kept checkpoint; nothing is chosen on it. Results are appended to
``benchmarks/results/freeze_cache.json`` as they finish (a rerun the same day skips what is there; on another day,
perhaps another machine, it measures again, so each day's rows compare among themselves); ``freeze_cache.md`` is
rendered from all of them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from records import append, mean_std

RESULTS = Path(__file__).resolve().parent / "results"


def run_one(task: str, layers: str, seed: int, args: argparse.Namespace) -> dict:
    from seqtune import load_config, train
    from seqtune.precision import cpu_flags, cpu_model_and_flags

    overrides = [f"task={task}", f"data.data_dir={args.glue_dir}", f"seed={seed}", "quiet=true", *args.set]
    k, _, lr = layers.partition("@")
    if k.startswith("lora"):
        overrides.append(f"model.lora_rank={k.removeprefix('lora')}")
    elif k != "full":
        overrides.append(f"train.train_layers={k}")
    if lr:
        overrides.append(f"train.lr={lr}")
    if args.threads:
        overrides.append(f"train.num_threads={args.threads}")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(None, [*overrides, f"output={tmp}/run", "overwrite=true"])
        started = time.perf_counter()
        result = train(cfg)
        wall = time.perf_counter() - started
        metrics = json.loads((Path(tmp) / "run" / "metrics.json").read_text())
    best = result.best or {}
    return {
        "task": task,
        "layers": layers,
        "seed": seed,
        "selection_metric": result.task.selection_metric,
        "score": best.get("score"),
        "dev": best.get("metrics", {}).get(result.task.eval_splits[0], {}),
        "train_seconds": round(result.train_seconds, 1),
        "wall_seconds": round(wall, 1),
        "tokens_per_second": round(result.tokens_per_second),
        "precision": metrics.get("precision"),
        "threads": args.threads or "all",
        "scored_on": "carved" if "data.validation_from_train=true" in args.set else "dev",
        "cpu": " ".join(cpu_flags()) or "avx2 only",
        "cpu_model": cpu_model_and_flags()[0],
        "date": time.strftime("%Y-%m-%d"),
    }


def read_full(run_dir: Path, task: str, seed: int) -> dict:
    """The ``full`` record of a finished run folder with the defaults (e.g. one of `seqtune glue`'s, which trains
    exactly what ``full`` would), instead of training it again."""
    from seqtune.precision import cpu_flags, cpu_model_and_flags
    from seqtune.run_metrics import read_run_metrics

    metrics = read_run_metrics(run_dir)
    raw = json.loads((run_dir / "metrics.json").read_text())
    split = next(iter(metrics.best["metrics"]))
    return {
        "task": task,
        "layers": "full",
        "seed": seed,
        "selection_metric": metrics.selection_metric,
        "score": metrics.best["score"],
        "dev": metrics.best["metrics"][split],
        "train_seconds": round(metrics.train_seconds, 1),
        "wall_seconds": None,
        "tokens_per_second": round(raw["tokens_per_second"]),
        "precision": raw.get("precision"),
        "threads": "all",
        "scored_on": "dev",
        "from": str(run_dir),
        "cpu": " ".join(cpu_flags()) or "avx2 only",
        "cpu_model": cpu_model_and_flags()[0],
        "date": time.strftime("%Y-%m-%d", time.localtime(run_dir.joinpath("metrics.json").stat().st_mtime)),
    }


def _contender(layers: str) -> str:
    k, _, lr = layers.partition("@")
    name = "all 6" if k == "full" else f"LoRA rank {k.removeprefix('lora')}" if k.startswith("lora") else f"top {k}"
    return name + (f", lr {lr}" if lr else "")


def render(records: list[dict]) -> str:
    lines = [
        "# Freeze-and-cache (`--train-layers K`) and LoRA (`--lora R`) against full fine-tuning, MiniLM, GLUE",
        "",
        "| task | layers trained | scored on | metric | mean | std | seeds | train s | x full's speed | "
        "tok/s-equivalent | precision | threads | date |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    # a row per task, validation kind, day and contender; speed ratios only against full runs of the same day
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        groups.setdefault((f"{r['task']}|{r.get('scored_on', 'dev')}|{r['date']}", r["layers"]), []).append(r)
    for (key, layers), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "full", kv[0][1])):
        task, scored_on, date = key.split("|")
        mean, std = mean_std([r["score"] for r in rs])
        secs = statistics.fmean(r["train_seconds"] for r in rs)
        full = groups.get((key, "full"))
        ratio = f"{statistics.fmean(r['train_seconds'] for r in full) / secs:.2f}x" if full else "-"
        lines.append(
            f"| {task} | {_contender(layers)} | {scored_on} | {rs[0]['selection_metric']} | {mean:.4f} | {std:.4f} | "
            f"{len(rs)} | {secs:.0f} | {ratio} | {statistics.fmean(r['tokens_per_second'] for r in rs):,.0f} | "
            f"{rs[0]['precision']} | {rs[0]['threads']} | {date} |"
        )
    lines += [
        "",
        "Scores: the kept checkpoint's score on GLUE dev, or on 10% of the training rows held out (carved: "
        "`data.validation_from_train`, where learning rates are compared), with seqtune's defaults otherwise "
        "(automatic epochs and learning rate, mean pooling). Train seconds include computing the frozen bottom's "
        "cache (one forward pass over the training set). Machines (2-core VMs): "
        + "; ".join(sorted({f"{r['date']}: {r.get('cpu_model') or '?'} ({r['cpu']})" for r in records}))
        + ". "
        "Runs with 1 thread shared the machine with one other 1-thread job: compare rows of one task, not seconds "
        "across days.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--glue-dir", type=Path, default=Path("../shared/glue"))
    p.add_argument("--tasks", default="mrpc,rte,cola,stsb")
    p.add_argument("--layers", default="full,1,2,3")
    p.add_argument("--seeds", default="42", help="comma-separated seeds")
    p.add_argument("--threads", type=int, help="torch threads per run (1 when another job shares the machine)")
    p.add_argument("--set", action="append", default=[], help="extra override for every run (key=value)")
    p.add_argument("--out", type=Path, default=RESULTS / "freeze_cache.json")
    p.add_argument(
        "--full-from",
        type=Path,
        metavar="GLUE_OUTPUT",
        help="take the 'full' runs from `seqtune glue --output GLUE_OUTPUT` (<task>/seed-N) when there",
    )
    args = p.parse_args(argv)
    records = json.loads(args.out.read_text()) if args.out.is_file() else []
    scored_on = "carved" if "data.validation_from_train=true" in args.set else "dev"
    today = time.strftime("%Y-%m-%d")  # another day is another machine: its rows are compared among themselves
    done = {(r["task"], r["layers"], r["seed"], r.get("scored_on", "dev")) for r in records if r["date"] == today}
    for seed in (int(s) for s in args.seeds.split(",")):
        for task in args.tasks.split(","):
            for layers in args.layers.split(","):
                if (task, layers, seed, scored_on) in done:
                    continue
                glue_run = args.full_from / task / f"seed-{seed}" if args.full_from else None
                if layers == "full" and scored_on == "dev" and glue_run and (glue_run / "metrics.json").is_file():
                    append(args.out, records, read_full(glue_run, task, seed), render)
                else:
                    append(args.out, records, run_one(task, layers, seed, args), render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
