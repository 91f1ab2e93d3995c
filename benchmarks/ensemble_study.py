"""What a seed ensemble buys: `seqtune train ... --seeds N --ensemble`, then each member and the ensemble scored once on
a held-out test file, with the cost (training seconds of the members, prediction seconds on the test file).

    python benchmarks/ensemble_study.py --name nlupp --train-file ../shared/data/nlupp_hotels/train.jsonl \\
        --test-file ../shared/data/nlupp_hotels/test.jsonl --label-column intents --multi-label --seeds 3 \\
        --output runs/nlupp-ens

With ``--out-of-scope LABEL`` (CLINC150: ``oos``) the test also gives the two figures such intent sets are judged by
(Larson et al. 2019): accuracy on the in-scope rows and recall of the out-of-scope class.

    python benchmarks/ensemble_study.py --name clinc150 --train-file ../shared/data/clinc150/train.csv \\
        --test-file ../shared/data/clinc150/test.csv --label-column intent --out-of-scope oos \\
        --set data.validation_file=../shared/data/clinc150/validation.csv --output runs/clinc-ens

The runs start or resume (a finished folder is read back, not retrained). Results are appended to
``benchmarks/results/ensemble_study.json``; ``ensemble_study.md`` is rendered from all of them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from records import replace_named  # same directory

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True, help="the data set's name in the results table")
    p.add_argument("--train-file", required=True)
    p.add_argument("--test-file", required=True)
    p.add_argument("--label-column", default="label")
    p.add_argument("--multi-label", action="store_true")
    p.add_argument("--out-of-scope", help="the out-of-scope label: also report in-scope accuracy and its recall")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--threads", type=int)
    p.add_argument("--set", action="append", default=[], help="extra override (key=value)")
    p.add_argument("--out", type=Path, default=RESULTS / "ensemble_study.json")
    args = p.parse_args(argv)

    from seqtune import load_config
    from seqtune.metrics import compute_metrics
    from seqtune.precision import cpu_flags
    from seqtune.predict import labeled_logits, load_run
    from seqtune.run_metrics import read_run_metrics
    from seqtune.seeds import train_seeds

    overrides = [f"data.train_file={args.train_file}", f"data.label_column={args.label_column}",
                 f"output={args.output}", "resume=true", "quiet=true", *args.set]  # fmt: skip
    if args.multi_label:
        overrides.append("data.problem_type=multi_label")
    if args.threads:
        overrides.append(f"train.num_threads={args.threads}")
    cfg = load_config(None, overrides)
    out, summary = train_seeds(cfg, args.seeds, ensemble=True)
    record = json.loads((out / "metrics.json").read_text())
    scored = {}
    for name in [*record["ensemble"]["members"], "ensemble"]:
        folder = out if name == "ensemble" else out / name
        run = load_run(folder)
        started = time.perf_counter()
        logits, target = labeled_logits(run, args.test_file)  # one prediction of the test file per model
        seconds = time.perf_counter() - started
        scored[name] = {"test": compute_metrics(run.task, logits, target), "predict_seconds": seconds}
        if args.out_of_scope:
            scored[name]["test"] |= scope_scores(run.task.label_names, logits, target, args.out_of_scope)
        if name != "ensemble":
            scored[name]["train_seconds"] = read_run_metrics(folder).train_seconds
    members = [scored[m] for m in record["ensemble"]["members"]]
    extra = ["in_scope_accuracy", "out_of_scope_recall"] if args.out_of_scope else []
    metric = record["ensemble"]["threshold"]["metric"] if record["ensemble"]["threshold"] else next(iter(summary))
    result = {
        "name": args.name,
        "seeds": args.seeds,
        "metric": metric,
        "validation": {
            "seeds_mean": summary[metric]["mean"],
            "seeds_std": summary[metric]["std"],
            "ensemble": record["ensemble"]["metrics"]["validation"][metric],
        },  # fmt: skip
        "test": {
            "seeds": [m["test"][metric] for m in members],
            "seeds_mean": statistics.fmean(m["test"][metric] for m in members),
            "ensemble": scored["ensemble"]["test"][metric],
            **{
                name: {"seeds": [m["test"][name] for m in members], "ensemble": scored["ensemble"]["test"][name]}
                for name in extra
            },
        },  # fmt: skip
        "train_seconds_total": sum(m["train_seconds"] for m in members),
        "predict_seconds": {
            "one member": statistics.fmean(m["predict_seconds"] for m in members),
            "ensemble": scored["ensemble"]["predict_seconds"],
        },  # fmt: skip
        "overrides": args.set,
        "precision": load_run(out).precision,
        "cpu": " ".join(cpu_flags()) or "avx2 only",
        "date": time.strftime("%Y-%m-%d"),
    }
    replace_named(args.out, result, render)
    print(json.dumps(result, indent=1))
    return 0


def scope_scores(label_names, logits, target, out_of_scope: str) -> dict[str, float]:
    """Accuracy on the rows whose gold label is not ``out_of_scope`` (a row predicted out of scope counts as wrong)
    and the recall of ``out_of_scope``, from a multi-class run's logits and the gold label ids."""
    gold = [label_names[i] for i in target]
    pred = [label_names[i] for i in logits.argmax(-1)]
    inside = [g != out_of_scope for g in gold]
    hits = [g == p for g, p in zip(gold, pred, strict=True)]
    n_in = sum(inside)
    return {
        "in_scope_accuracy": sum(h for h, i in zip(hits, inside, strict=True) if i) / n_in,
        "out_of_scope_recall": sum(h for h, i in zip(hits, inside, strict=True) if not i) / (len(gold) - n_in),
    }


def render(records: list[dict]) -> str:
    lines = [
        "# Seed ensembles (`--seeds N --ensemble`)",
        "",
        "| data | metric | seeds | validation: seeds mean | validation: ensemble | test: seeds mean (each) | "
        "test: ensemble | gain on test | train s (all seeds) | predict s: one / ensemble | precision | cpu |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        v, t, ps = r["validation"], r["test"], r["predict_seconds"]
        each = ", ".join(f"{x:.4f}" for x in t["seeds"])
        lines.append(
            f"| {r['name']} | {r['metric']} | {r['seeds']} | {v['seeds_mean']:.4f} +- {v['seeds_std']:.4f} | "
            f"{v['ensemble']:.4f} | {t['seeds_mean']:.4f} ({each}) | {t['ensemble']:.4f} | "
            f"{t['ensemble'] - t['seeds_mean']:+.4f} | {r['train_seconds_total']:.0f} | "
            f"{ps['one member']:.1f} / {ps['ensemble']:.1f} | {r['precision']} | {r['cpu']} |"
        )
    scoped = [r for r in records if "in_scope_accuracy" in r["test"]]
    if scoped:
        lines += ["", "Intent sets with an out-of-scope class, test:", "",
                  "| data | in-scope accuracy: seeds mean (each) | ensemble | out-of-scope recall: seeds mean "
                  "| ensemble |",
                  "|---|---|---|---|---|"]  # fmt: skip
    for r in scoped:
        acc, rec = r["test"]["in_scope_accuracy"], r["test"]["out_of_scope_recall"]
        each = ", ".join(f"{x:.4f}" for x in acc["seeds"])
        lines.append(
            f"| {r['name']} | {statistics.fmean(acc['seeds']):.4f} ({each}) | {acc['ensemble']:.4f} | "
            f"{statistics.fmean(rec['seeds']):.4f} | {rec['ensemble']:.4f} |"
        )
    lines += ["", "Validation: rows carved from the training file (`data.split_seed`, the same for every seed), or "
              "the data set's own validation file when its overrides name one (CLINC150); the "
              "ensemble's threshold is tuned there. Test: the data set's own test file, scored once after training. "
              "Times are wall seconds on the machine named, with other jobs sharing its 2 cores."]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
