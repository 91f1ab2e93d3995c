"""What a seed ensemble buys: `seqtune train ... --seeds N --ensemble`, then each member and the ensemble scored once on
a held-out test file, with the cost (training seconds of the members, prediction seconds on the test file).

    python benchmarks/ensemble_study.py --name nlupp --train-file ../shared/data/nlupp_hotels/train.jsonl \\
        --test-file ../shared/data/nlupp_hotels/test.jsonl --label-column intents --multi-label --seeds 3 \\
        --output runs/nlupp-ens

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
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--threads", type=int)
    p.add_argument("--set", action="append", default=[], help="extra override (key=value)")
    p.add_argument("--out", type=Path, default=RESULTS / "ensemble_study.json")
    args = p.parse_args(argv)

    from seqtune import load_config
    from seqtune.precision import cpu_flags
    from seqtune.predict import evaluate_file, load_run
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
        scored[name] = {"test": evaluate_file(run, args.test_file), "predict_seconds": time.perf_counter() - started}
        if name != "ensemble":
            scored[name]["train_seconds"] = read_run_metrics(folder).train_seconds
    members = [scored[m] for m in record["ensemble"]["members"]]
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
    lines += ["", "Validation: rows carved from the training file (`data.split_seed`, the same for every seed); the "
              "ensemble's threshold is tuned there. Test: the data set's own test file, scored once after training. "
              "Times are wall seconds on the machine named, with other jobs sharing its 2 cores."]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
