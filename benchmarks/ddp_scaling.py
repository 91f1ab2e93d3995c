"""Data-parallel scaling, side by side in one run: `seqtune train` in 1 process vs 2 processes under torchrun.

Both train the packaged MiniLM on the same MRPC training rows for the same number of optimizer steps with the
same global batch (1 x B vs 2 x B/2), alternating per repeat, each in its own process group:
  1-process:   `seqtune train mrpc --batch-size B`, torch using all cores (what a user runs by default)
  2-process:   `torchrun --nproc_per_node 2 -m seqtune train mrpc --batch-size B/2`, one thread per process (gloo)
Real tokens/s come from each run's metrics.json (training time only: evaluation, loading and saving excluded);
wall time covers the whole command. On a 2-core machine the two settings share the same cores, so this measures
correctness and overhead (gradient all-reduce, per-step synchronization, a second interpreter), not a speedup.

    python benchmarks/ddp_scaling.py --glue-dir ../shared/glue [--steps 40] [--repeats 2]

Writes benchmarks/results/ddp_scaling.json and .md (or --out DIR).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(kind: str, args: argparse.Namespace, out: Path) -> dict:
    common = [
        "mrpc", "--data-dir", args.glue_dir, "--max-steps", str(args.steps), "--eval-every", str(args.steps),
        "--max-eval-samples", "64", "--quiet", "--output", str(out), "--seed", "1",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if kind == "1-process":
        cmd = [sys.executable, "-m", "seqtune", "train", *common, "--batch-size", str(args.batch)]
        env.pop("OMP_NUM_THREADS", None)
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
        cmd += ["-m", "seqtune", "train", *common, "--batch-size", str(args.batch // 2)]
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 2) // 2))
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {
        "kind": kind,
        "tokens_per_second": metrics["tokens_per_second"],
        "train_seconds": metrics["train_seconds"],
        "wall_seconds": wall,
        "global_batch": metrics["distributed"]["global_batch_size"],
        "world_size": metrics["distributed"]["world_size"],
        "final_loss": json.loads((out / "train_log.jsonl").read_text().splitlines()[-1])["loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--glue-dir", default="../shared/glue")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per run")
    parser.add_argument("--batch", type=int, default=32, help="global batch (the 2-process run uses half each)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"1-process": [], "2-process": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for kind in runs:
                result = run(kind, args, Path(tmp) / f"{kind}-{repeat}")
                runs[kind].append(result)
                print(json.dumps(result), flush=True)
    summary = {
        kind: {
            "tokens_per_second": statistics.mean(r["tokens_per_second"] for r in rs),
            "train_seconds": statistics.mean(r["train_seconds"] for r in rs),
            "wall_seconds": statistics.mean(r["wall_seconds"] for r in rs),
            "final_loss": statistics.mean(r["final_loss"] for r in rs),
        }
        for kind, rs in runs.items()
    }
    one, two = summary["1-process"], summary["2-process"]
    ratios = {
        "tokens_per_second": two["tokens_per_second"] / one["tokens_per_second"],
        "wall_seconds": two["wall_seconds"] / one["wall_seconds"],
    }
    meta = {"steps": args.steps, "global_batch": args.batch, "repeats": args.repeats, "cpus": os.cpu_count()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ddp_scaling.json").write_text(json.dumps({"meta": meta, "runs": runs, "summary": summary,
                                                      "ratios": ratios}, indent=1))  # fmt: skip
    lines = [
        f"MiniLM on MRPC, {args.steps} optimizer steps of {args.batch} examples, mean of {args.repeats} "
        f"alternating repeats, {os.cpu_count()} CPUs",
        "",
        "| setting | real tokens/s | training s | wall s | final loss |",
        "|---|---|---|---|---|",
    ]
    for kind, s in summary.items():
        lines.append(
            f"| {kind} | {s['tokens_per_second']:,.0f} | {s['train_seconds']:.1f} | {s['wall_seconds']:.1f} "
            f"| {s['final_loss']:.4f} |"
        )
    lines += [
        "",
        f"2-process / 1-process: tokens/s {ratios['tokens_per_second']:.2f}x, wall time {ratios['wall_seconds']:.2f}x",
    ]
    (out / "ddp_scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
