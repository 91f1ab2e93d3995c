"""Does `torch.compile` pay for fine-tuning here? Eager vs compiled with a few fixed length buckets, one run.

Both contenders train the packaged MiniLM on the same real, length-grouped MRPC batches (seqtune's default size
unless --batch-size; forward, backward, clip, fused AdamW), alternating rounds in one process:
  eager:     dynamic padding to each batch's longest row (seqtune's default).
  compiled:  `torch.compile(model, dynamic=False)` with every batch padded up to a multiple of ``--bucket``
             tokens, so only a few shapes exist and each compiles once (no recompiles after the first round).
Reports the compile cost (the compiled contender's first round minus its steady-state time for the same steps),
steady-state real tokens/s of both, and the number of training steps after which compiling breaks even.

    python benchmarks/compile_buckets.py --glue-dir ../shared/glue [--steps 24] [--rounds 3] [--bucket 32] \
        [--precision bf16]

Writes benchmarks/results/compile_buckets.json and .md (``compile_buckets-bf16`` with ``--precision bf16``: both
contenders under bf16 autocast), or into --out DIR.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from machine import describe
from step_levers import run_steps  # same directory

from seqtune.batching import Collator, column, length_grouped_order, take_rows
from seqtune.config import TrainConfig
from seqtune.data import load_glue
from seqtune.encoding import tokenize
from seqtune.modeling import load_model, load_tokenizer, resolve_model
from seqtune.tasks import get_task


def build(path: str, task, compiled: bool):
    torch.manual_seed(0)
    model = load_model(path, task)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=8e-5, fused=True)
    forward = torch.compile(model, dynamic=False) if compiled else model
    return model, forward, opt


def steps(contender, batches, precision: str = "fp32") -> tuple[float, int]:
    model, forward, opt = contender
    return run_steps(model, opt, batches, forward, precision=precision)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--glue-dir", default="../shared/glue")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds after the first (compiling) round")
    ap.add_argument("--bucket", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=TrainConfig().batch_size, help="default: seqtune's")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    args = ap.parse_args()
    task = get_task("mrpc")
    path = resolve_model("minilm")
    tokenizer = load_tokenizer(path)
    encoded = tokenize(load_glue(task, args.glue_dir), task, tokenizer, 512, show_progress=False)["train"]
    bs = args.batch_size
    grouped = length_grouped_order(column(encoded, "length"), bs, seed=0, epoch=0)
    order = [b for b in grouped if len(b) == bs][: args.steps]
    rows = [take_rows(encoded, idxs) for idxs in order]
    eager_batches = [Collator(tokenizer)(r) for r in rows]
    bucket_batches = [Collator(tokenizer, pad_to_multiple_of=args.bucket)(r) for r in rows]
    shapes = sorted({tuple(b["input_ids"].shape) for b in bucket_batches})

    eager = build(path, task, compiled=False)
    compiled = build(path, task, compiled=True)
    p = args.precision
    first = {"eager": steps(eager, eager_batches, p)[0], "compiled": steps(compiled, bucket_batches, p)[0]}
    steady = {"eager": [0.0, 0], "compiled": [0.0, 0]}
    for _ in range(args.rounds):
        for name, contender, batches in (("eager", eager, eager_batches), ("compiled", compiled, bucket_batches)):
            seconds, tokens = steps(contender, batches, p)
            steady[name][0] += seconds
            steady[name][1] += tokens
    rate = {name: tokens / seconds for name, (seconds, tokens) in steady.items()}
    per_step = {name: seconds / (args.rounds * len(rows)) for name, (seconds, _) in steady.items()}
    compile_cost = first["compiled"] - per_step["compiled"] * len(rows)
    saved = per_step["eager"] - per_step["compiled"]
    summary = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
        "cpu": describe(torch.get_num_threads()),
        "precision": args.precision,
        "steps_per_round": len(rows),
        "rounds": args.rounds,
        "bucket": args.bucket,
        "bucket_shapes": [list(s) for s in shapes],
        "real_tokens_per_second": rate,
        "speedup": rate["compiled"] / rate["eager"],
        "compile_seconds": compile_cost,
        "seconds_saved_per_step": saved,
        "break_even_steps": compile_cost / saved if saved > 0 else None,
    }
    md = "\n".join(
        [
            f"Machine: {summary['cpu']['cpu']} ({', '.join(summary['cpu']['flags'])}), {summary['machine']}; "
            f"{args.precision}; {len(rows)} MRPC batches of {bs} x {args.rounds} timed rounds; "
            f"compiled batches padded to multiples of {args.bucket} ({len(shapes)} shapes).",
            "",
            "| contender | real tok/s (steady) | vs eager | first round s (incl. compile) |",
            "|---|---|---|---|",
            f"| eager (dynamic padding) | {rate['eager']:,.0f} | 1.00x | {first['eager']:.1f} |",
            f"| torch.compile, {args.bucket}-token buckets | {rate['compiled']:,.0f} | {summary['speedup']:.2f}x "
            f"| {first['compiled']:.1f} |",
            "",
            f"compile cost {compile_cost:.0f} s; "
            + (
                f"breaks even after {summary['break_even_steps']:,.0f} training steps"
                if summary["break_even_steps"]
                else "never breaks even (not faster in steady state)"
            ),
        ]
    )
    print(md)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / ("compile_buckets" if args.precision == "fp32" else f"compile_buckets-{args.precision}")
    stem.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    stem.with_suffix(".md").write_text(md + "\n")


if __name__ == "__main__":
    main()
