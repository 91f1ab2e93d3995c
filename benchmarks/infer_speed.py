"""Inference speed, side by side in one run: `seqtune predict` vs a transformers `pipeline("text-classification")`.

Same saved model, same inputs (every MRPC dev + test sentence pair), same process, alternating rounds. Reports
sentence pairs per second and p50/p99 latency of a 32-pair request, and checks that both give the same labels.

    python benchmarks/infer_speed.py --glue-dir ../shared/glue [--run runs/mrpc] [--rounds 2]

Without --run it saves the packaged MiniLM with a fresh MRPC head as a run folder (2 training steps): speed
does not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

REQUEST = 32  # pairs per latency-measured request


def make_run(glue_dir: str, work: str) -> Path:
    from seqtune import load_config
    from seqtune.training import train

    out = Path(work) / "run"
    train(load_config(None, ["task=mrpc", f"data.data_dir={glue_dir}", f"output={out}", "quiet=true",
                             "train.max_steps=2", "data.max_eval_samples=32"]))  # fmt: skip
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--glue-dir", default="../shared/glue")
    ap.add_argument("--run", help="a seqtune run folder (default: make one)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch
    from transformers import pipeline

    from seqtune.data import load_glue
    from seqtune.predict import load_run, predict
    from seqtune.tasks import get_task

    work = tempfile.mkdtemp()
    run_dir = Path(args.run) if args.run else make_run(args.glue_dir, work)
    dd = load_glue(get_task("mrpc"), args.glue_dir)
    s1 = list(dd["validation"]["sentence1"]) + list(dd["test"]["sentence1"])
    s2 = list(dd["validation"]["sentence2"]) + list(dd["test"]["sentence2"])
    pairs = [{"text": a, "text_pair": b} for a, b in zip(s1, s2, strict=True)]
    loaded = load_run(run_dir)
    pipe = pipeline("text-classification", model=str(run_dir), device=-1)
    requests = [slice(i, i + REQUEST) for i in range(0, len(pairs), REQUEST)][:20]

    contenders = {
        "seqtune predict": lambda: predict(loaded, s1, s2),
        "pipeline (batch_size=32)": lambda: pipe(pairs, batch_size=32),
        "pipeline (default, batch 1)": lambda: pipe(pairs),
    }
    request_fns = {
        "seqtune predict": lambda sl: predict(loaded, s1[sl], s2[sl]),
        "pipeline (batch_size=32)": lambda sl: pipe(pairs[sl], batch_size=32),
        "pipeline (default, batch 1)": lambda sl: pipe(pairs[sl]),
    }
    throughput = {name: [] for name in contenders}
    latency = {name: [] for name in contenders}
    outputs = {}
    for name in contenders:  # warm-up: first calls pay one-off costs
        request_fns[name](requests[0])
    for _ in range(args.rounds):
        for name, fn in contenders.items():
            started = time.perf_counter()
            outputs[name] = fn()
            throughput[name].append(len(pairs) / (time.perf_counter() - started))
            for sl in requests:
                t = time.perf_counter()
                request_fns[name](sl)
                latency[name].append(time.perf_counter() - t)
    ours = [r["label"] for r in outputs["seqtune predict"]]
    theirs = [r["label"] for r in outputs["pipeline (batch_size=32)"]]
    agreement = sum(a == b for a, b in zip(ours, theirs, strict=True)) / len(ours)
    base = statistics.mean(throughput["pipeline (default, batch 1)"])
    base32 = statistics.mean(throughput["pipeline (batch_size=32)"])
    lines = [
        f"{len(pairs)} MRPC dev+test pairs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.rounds} rounds; label agreement seqtune vs pipeline: {agreement:.2%}",
        "",
        f"| contender | pairs/s | p50 latency ({REQUEST} pairs) | p99 | vs pipeline default | vs pipeline b32 |",
        "|---|---|---|---|---|---|",
    ]
    results = {"pairs": len(pairs), "agreement": agreement, "contenders": {}}
    for name in contenders:
        rate = statistics.mean(throughput[name])
        p50, p99 = percentile(latency[name], 50), percentile(latency[name], 99)
        results["contenders"][name] = {"pairs_per_s": rate, "p50_s": p50, "p99_s": p99}
        lines.append(f"| {name} | {rate:,.0f} | {p50 * 1000:.0f} ms | {p99 * 1000:.0f} ms | "
                     f"{rate / base:.2f}x | {rate / base32:.2f}x |")  # fmt: skip
    table = "\n".join(lines) + "\n"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "infer_speed.json").write_text(json.dumps(results))
    (Path(args.out) / "infer_speed.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
