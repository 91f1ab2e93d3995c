"""What a tuned decision threshold buys on own data: each run trained with `--tune-threshold`, then its kept model
scored once on a held-out test file at the tuned threshold and at 0.5.

    python benchmarks/threshold_study.py --name "CLINC150 out-of-scope" --one-vs-rest oos \\
        --train-file ../shared/data/clinc150/train.csv --validation-file ../shared/data/clinc150/validation.csv \\
        --test-file ../shared/data/clinc150/test.csv --label-column intent --set train.metric=f1 --seeds 3 \\
        --output runs/threshold-clinc-oos

``--one-vs-rest LABEL`` turns a multi-class file into the binary task "LABEL or not" (labels ``LABEL`` and
``--negative-name``, default ``in_scope``), as a user with such data would, written under ``--output``. Runs
start or resume (a finished one is read back). Results are appended to ``benchmarks/results/threshold_study.json``;
``threshold_study.md`` is rendered from all of them.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from records import mean_pm, replace_named  # same directory

RESULTS = Path(__file__).resolve().parent / "results"


def one_vs_rest(src: Path, label_column: str, positive: str, negative: str, dst: Path) -> Path:
    """``src`` with its label column replaced by ``positive`` / ``negative``."""
    with src.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or label_column not in rows[0]:
        raise SystemExit(f"{src}: no rows or no column '{label_column}'")
    dst.parent.mkdir(parents=True, exist_ok=True)
    with dst.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({**r, label_column: positive if r[label_column] == positive else negative} for r in rows)
    return dst


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True, help="the data set's name in the results table")
    p.add_argument("--train-file", type=Path, required=True)
    p.add_argument("--validation-file", type=Path)
    p.add_argument("--test-file", type=Path, required=True)
    p.add_argument("--label-column", default="label")
    p.add_argument("--multi-label", action="store_true")
    p.add_argument("--one-vs-rest", metavar="LABEL", help="make the task binary: LABEL against every other label")
    p.add_argument(
        "--negative-name",
        default="in_scope",
        help="--one-vs-rest: the other label's name; it must sort "
        "before LABEL, so that LABEL is label 1, the class binary F1 is about",
    )
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--threads", type=int)
    p.add_argument("--set", action="append", default=[], help="extra override (key=value)")
    p.add_argument("--out", type=Path, default=RESULTS / "threshold_study.json")
    args = p.parse_args(argv)

    from seqtune import load_config
    from seqtune.precision import cpu_flags
    from seqtune.predict import evaluate_file, load_run
    from seqtune.run_metrics import read_run_metrics
    from seqtune.training import train

    files = {"train": args.train_file, "validation": args.validation_file, "test": args.test_file}
    if args.one_vs_rest:
        if not args.negative_name < args.one_vs_rest:
            p.error(f"--negative-name {args.negative_name} must sort before {args.one_vs_rest} (labels are sorted)")
        files = {k: f and one_vs_rest(f, args.label_column, args.one_vs_rest, args.negative_name,
                                      args.output / "data" / f"{k}.csv") for k, f in files.items()}  # fmt: skip
    overrides = [f"data.train_file={files['train']}", f"data.label_column={args.label_column}", "quiet=true",
                 "train.tune_threshold=true", *args.set]  # fmt: skip
    if files["validation"]:
        overrides.append(f"data.validation_file={files['validation']}")
    if args.multi_label:
        overrides.append("data.problem_type=multi_label")
    if args.threads:
        overrides.append(f"train.num_threads={args.threads}")
    runs = []
    for seed in range(42, 42 + args.seeds):
        out = args.output / f"seed-{seed}"
        if not (out / "metrics.json").is_file():
            train(load_config(None, [*overrides, f"seed={seed}", f"output={out}"]))
        run = load_run(out)
        tuned = evaluate_file(run, files["test"])
        at_half = evaluate_file(replace(run, task=replace(run.task, threshold=None)), files["test"])
        record = read_run_metrics(out)
        threshold = json.loads((out / "metrics.json").read_text())["threshold"]
        runs.append({"seed": seed, "threshold": threshold, "test_at_0.5": at_half, "test_tuned": tuned,
                     "train_seconds": record.train_seconds, "precision": run.precision})  # fmt: skip
    metric = runs[0]["threshold"]["metric"]
    result = {
        "name": args.name,
        "metric": metric,
        "seeds": args.seeds,
        "runs": runs,
        "overrides": args.set,
        "threads": args.threads or "all",
        "cpu": " ".join(cpu_flags()) or "avx2 only",
        "date": time.strftime("%Y-%m-%d"),
    }
    replace_named(args.out, result, render)
    print(render([result]))
    return 0


def render(records: list[dict]) -> str:
    lines = [
        "# Decision thresholds (`--tune-threshold`) on own data",
        "",
        "| data | metric | seeds | thresholds | validation at 0.5 | validation tuned | test at 0.5 | test tuned | "
        "test gain | other test metrics (at 0.5 -> tuned) | train s | threads | precision | cpu |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        m, runs = r["metric"], r["runs"]
        half, tuned = [x["test_at_0.5"][m] for x in runs], [x["test_tuned"][m] for x in runs]
        others = ", ".join(
            f"{k} {statistics.fmean(x['test_at_0.5'][k] for x in runs):.4f} -> "
            f"{statistics.fmean(x['test_tuned'][k] for x in runs):.4f}"
            for k in runs[0]["test_tuned"] if k != m
        )  # fmt: skip
        thresholds = ", ".join(f"{x['threshold']['value']:.2f}" for x in runs)
        lines.append(
            f"| {r['name']} | {m} | {r['seeds']} | {thresholds} | "
            f"{mean_pm([x['threshold']['score_at_0.5'] for x in runs])} | "
            f"{mean_pm([x['threshold']['score'] for x in runs])} | {mean_pm(half)} | {mean_pm(tuned)} | "
            f"{statistics.fmean(tuned) - statistics.fmean(half):+.4f} | {others} | "
            f"{statistics.fmean(x['train_seconds'] for x in runs):.0f} | {r.get('threads', 'all')} | "
            f"{runs[0]['precision']} | {r['cpu']} |"
        )
    lines += ["", "Each run trains with `--tune-threshold` (the threshold is chosen at every evaluation on the "
              "validation split, and the kept checkpoint is the one with the best tuned score); its kept model is "
              "then scored once on the test file at that threshold and at 0.5. Mean ± std over seeds. Train seconds "
              "are wall seconds per run on the machine named; runs with 1 thread shared its 2 cores with one other "
              "1-thread job."]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
