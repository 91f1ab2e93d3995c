"""`seqtune glue` with the defaults, timed, and its results kept with the machine they were measured on.

    python benchmarks/glue_run.py --data-dir ../shared/glue --tasks cola,mrpc,rte,stsb,wnli --seeds 3 \\
        --output runs/glue-defaults [--ensemble]

Runs (or, for finished tasks, reads back) `seqtune.glue.run_glue` into ``--output`` and writes
``benchmarks/results/glue_run.{json,md}``: per task and dev metric the mean +- std over seeds, training seconds
and tokens/s, with ``--ensemble`` the seed ensemble's score (and its gain over the seeds' mean), and the wall time of
the command that trained the runs on this machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=Path("../shared/glue"))
    p.add_argument("--tasks", default="cola,mrpc,rte,stsb,wnli")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--output", type=Path, default=Path("runs/glue-defaults"))
    p.add_argument("--ensemble", action="store_true", help="seed ensembles too (`seqtune glue --ensemble`)")
    p.add_argument("--set", action="append", default=[], help="extra override (key=value)")
    p.add_argument("--out", type=Path, default=RESULTS / "glue_run.json", help="result file (.md beside it)")
    args = p.parse_args(argv)

    from seqtune import load_config
    from seqtune.glue import run_glue
    from seqtune.precision import cpu_flags, cpu_model_and_flags
    from seqtune.runfolder import TASK_FILE

    tasks = args.tasks.split(",")
    fresh = not any(
        (args.output / t / f"seed-{42 + s}" / TASK_FILE).is_file() for t in tasks for s in range(args.seeds)
    )
    cfg = load_config(None, [f"task={tasks[0]}", f"data.data_dir={args.data_dir}", *args.set])  # as seqtune glue
    started = time.perf_counter()
    result = run_glue(cfg, args.data_dir, tasks, args.seeds, str(args.output), ensemble=args.ensemble)
    wall = time.perf_counter() - started
    before = json.loads(args.out.read_text()) if args.out.is_file() else {}
    same_runs = before.get("seeds") == args.seeds and set(before.get("tasks", {})) == set(result.tasks)
    record = {
        "tasks": result.tasks,
        "skipped": result.skipped,
        "seeds": args.seeds,
        "overrides": args.set,
        # read back: the wall time of the command that trained these runs, when this file recorded it
        "wall_seconds": round(wall, 1) if fresh else before.get("wall_seconds") if same_runs else None,
        "cpu": " ".join(cpu_flags()) or "avx2 only",
        "cpu_model": cpu_model_and_flags()[0],
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.write_text(json.dumps(record, indent=1))
    args.out.with_suffix(".md").write_text(render(record))
    print(render(record))
    return 0


def render(r: dict) -> str:
    # "defaults_of": when the defaults of the run's day differ from today's, which defaults they were
    how = "the defaults" + "".join(f", `{o}`" for o in r.get("overrides") or [])
    how += f" {r['defaults_of']}" if r.get("defaults_of") else ""
    lines = [f"# `seqtune glue` with {how}: dev splits, kept checkpoint", "",
             "| task | metric | mean | std | seeds | seed ensemble | train s | tok/s | precision |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, s in r["tasks"].items():
        for split, values in s["metrics"].items():
            for metric, v in values.items():
                ens = s.get("ensemble", {}).get(split, {}).get(metric)
                ens = "-" if ens is None else f"{ens:.4f} ({ens - v['mean']:+.4f})"
                speed = f"{s['train_seconds']:.0f} | {s['tokens_per_second']:,.0f} | {s['precision']}"
                lines.append(f"| {name} | {metric} | {v['mean']:.4f} | {v['std']:.4f} | {v['n']} | {ens} | {speed} |")
    wall = f"{r['wall_seconds'] / 60:.0f} minutes" if r["wall_seconds"] else "not timed (read back)"
    threads = next((o.split("=", 1)[1] for o in r.get("overrides", []) if o.startswith("train.num_threads=")), None)
    shared = f"; {threads} torch thread(s), sharing the machine with other jobs (an upper bound)" if threads else ""
    model = f"{r['cpu_model']} " if r.get("cpu_model") else ""
    lines += ["", f"Machine: 2-core {model}VM, CPU flags {r['cpu']}; {r['seeds']} seed(s); whole command: "
              f"{wall}{shared}; {r['date']}."]  # fmt: skip
    lines += [f"- skipped {name}: {why}" for name, why in r["skipped"].items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
