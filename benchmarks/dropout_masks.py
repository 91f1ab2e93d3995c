"""What a dropout costs on the CPU: PyTorch's `F.dropout` (one random number per element, drawn serially) against
seqtune's 16-bit masks (`seqtune.fast_dropout`: one 64-bit random word per four elements), and a plain multiply of
the same tensor as the floor, on MiniLM's shapes in a batch of 16 at 64 tokens.

    python benchmarks/dropout_masks.py [--repeats 50] [--rounds 3]

Writes ``benchmarks/results/dropout_masks-<class>.{json,md}``: per shape and way, the median milliseconds of one
call (training mode, p = 0.1, bf16 and fp32), over ``--rounds`` alternating rounds of ``--repeats`` calls each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from machine import describe
from records import write

RESULTS = Path(__file__).resolve().parent / "results"
SHAPES = {
    "hidden states (16, 64, 384)": (16, 64, 384),  # after each attention output and feed-forward block
    "attention probabilities (16, 12, 64, 64)": (16, 12, 64, 64),  # SDPA's dropout_p
}


def ways() -> dict:
    from seqtune.fast_dropout import dropout

    return {
        "PyTorch F.dropout": lambda x: F.dropout(x, 0.1, training=True),
        "16-bit masks (seqtune)": lambda x: dropout(x, 0.1),
        "plain multiply (floor)": lambda x: x * 1.1,
    }


def median_ms(fn, x: torch.Tensor, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    torch.manual_seed(0)
    rows = []
    for dtype in (torch.bfloat16, torch.float32):
        for shape_name, shape in SHAPES.items():
            x = torch.randn(shape, dtype=dtype)
            timings: dict[str, list[float]] = {name: [] for name in ways()}
            for fn in ways().values():
                fn(x)  # warm-up
            for _ in range(args.rounds):  # alternate, so drift hits every way alike
                for name, fn in ways().items():
                    timings[name].append(median_ms(fn, x, args.repeats))
            for name, ms in timings.items():
                rows.append({"dtype": str(dtype).removeprefix("torch."), "shape": shape_name, "way": name,
                             "ms": round(min(ms), 3)})  # fmt: skip
    record = {"rows": rows, "repeats": args.repeats, "rounds": args.rounds, "torch": torch.__version__,
              "machine": describe(), "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    write(RESULTS / f"dropout_masks-{record['machine']['class']}", record, render)
    return 0


def render(r: dict) -> str:
    m = r["machine"]
    base = {(row["dtype"], row["shape"]): row["ms"] for row in r["rows"] if row["way"] == "PyTorch F.dropout"}
    lines = [
        "# What one dropout call costs on the CPU (p = 0.1, training mode)",
        "",
        "| dtype | tensor | way | ms per call | vs PyTorch |",
        "|---|---|---|---|---|",
        *[
            f"| {row['dtype']} | {row['shape']} | {row['way']} | {row['ms']:.3f} | "
            f"{base[row['dtype'], row['shape']] / row['ms']:.1f}x |"
            for row in r["rows"]
        ],
        "",
        f"Best of {r['rounds']} alternating rounds, each the median of {r['repeats']} calls; torch {r['torch']}. "
        f"Machine: {m['cpu']} ({', '.join(m['flags'])}), {m['threads']} threads, {r['date']}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
