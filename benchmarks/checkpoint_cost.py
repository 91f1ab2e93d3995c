"""What a resumable checkpoint of the packaged MiniLM costs, and so what share of training time the clock cadence
(`train.save_every_minutes`) spends on saving.

    python benchmarks/checkpoint_cost.py [--repeats 5]

A checkpoint is written exactly as training writes it (`seqtune.checkpoint.save_checkpoint`: weights, AdamW state,
scheduler, RNG states, fsync, atomic rename) after one real optimizer step, so the AdamW moments exist. The share of
training time is save seconds / (save seconds + the interval): the cost of a clock checkpoint does not depend on
the task, only on the model and the disk. Results: benchmarks/results/checkpoint_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)

    import torch
    from transformers import get_linear_schedule_with_warmup

    from seqtune import checkpoint as ckpt
    from seqtune.config import RunConfig
    from seqtune.modeling import load_model, resolve_model
    from seqtune.precision import cpu_flags
    from seqtune.setup_steps import setup_optimizer
    from seqtune.state import LoopState
    from seqtune.tasks import get_task

    model = load_model(resolve_model("minilm"), get_task("mrpc"))
    optimizer = setup_optimizer(model, RunConfig(), torch.device("cpu"), lr=8e-5)
    scheduler = get_linear_schedule_with_warmup(optimizer, 10, 100)
    batch = {"input_ids": torch.randint(1000, 2000, (16, 48)), "attention_mask": torch.ones(16, 48, dtype=torch.long)}
    model(**batch, labels=torch.zeros(16, dtype=torch.long)).loss.backward()
    optimizer.step()
    scheduler.step()
    seconds = []
    with tempfile.TemporaryDirectory() as tmp:
        for step in range(1, args.repeats + 1):
            started = time.perf_counter()
            path = ckpt.save_checkpoint(Path(tmp), step, model, optimizer, scheduler, LoopState(step=step).to_dict(), 1)
            seconds.append(time.perf_counter() - started)
        size = sum(f.stat().st_size for f in path.iterdir())
    median = statistics.median(seconds)
    shares = {minutes: median / (median + 60 * minutes) for minutes in (1, 5, 10, 30)}
    record = {
        "model": "minilm (all-MiniLM-L6-v2, 22.7M parameters)",
        "checkpoint_mb": round(size / 1e6, 1),
        "save_seconds": [round(s, 3) for s in seconds],
        "median_seconds": round(median, 3),
        "share_of_training_time": {f"every {m} min": round(v, 5) for m, v in shares.items()},
        "cpu": " ".join(cpu_flags()) or "avx2 only",
        "date": time.strftime("%Y-%m-%d"),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "checkpoint_cost.json").write_text(json.dumps(record, indent=1))
    lines = [
        "# Checkpoint cost (MiniLM, resumable checkpoint as training writes it)",
        "",
        f"Checkpoint {record['checkpoint_mb']} MB; save time median {median:.2f} s over {args.repeats} saves "
        f"({', '.join(f'{s:.2f}' for s in seconds)} s); CPU flags: {record['cpu']}; {record['date']}.",
        "",
        "| save_every_minutes | share of training time spent saving |",
        "|---|---|",
        *(f"| {m} | {v:.2%} |" for m, v in shares.items()),
    ]
    (RESULTS / "checkpoint_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
