"""Tokenization of all of MRPC (train + dev + test), side by side in one run, alternating per round:
  course:          `raw.map(tokenize_function, batched=True)` as in the Hugging Face course, chapter 3
  seqtune cold:    `seqtune.encoding.tokenize` into an empty cache folder (tokenize + write the cache)
  seqtune cached:  the same call again (the cache hit: a fingerprint check and a memory-mapped load)
Each number is the median of the rounds; GLUE files are read once beforehand (reading is not tokenizing).

    python benchmarks/tokenize_speed.py --glue-dir ../shared/glue [--rounds 5]

Writes benchmarks/results/tokenize_speed.json and .md (or --out DIR).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--glue-dir", default="../shared/glue")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from datasets import disable_caching, disable_progress_bars
    from transformers import AutoTokenizer

    from seqtune.data import load_glue
    from seqtune.encoding import tokenize
    from seqtune.modeling import resolve_model
    from seqtune.tasks import get_task

    disable_progress_bars()
    disable_caching()  # the course's map must tokenize each round, not reuse an earlier round's cache file
    task = get_task("mrpc")
    raw = load_glue(task, args.glue_dir)
    rows = sum(len(ds) for ds in raw.values())
    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm"))

    def tokenize_function(example):
        return tokenizer(example["sentence1"], example["sentence2"], truncation=True)

    times: dict[str, list[float]] = {"course": [], "seqtune cold": [], "seqtune cached": []}
    for _ in range(args.rounds):
        started = time.perf_counter()
        raw.map(tokenize_function, batched=True)
        times["course"].append(time.perf_counter() - started)
        with tempfile.TemporaryDirectory() as cache:
            started = time.perf_counter()
            tokenize(raw, task, tokenizer, 512, cache, show_progress=False)
            times["seqtune cold"].append(time.perf_counter() - started)
            started = time.perf_counter()
            tokenize(raw, task, tokenizer, 512, cache, show_progress=False)
            times["seqtune cached"].append(time.perf_counter() - started)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenize_speed.json").write_text(json.dumps({"rows": rows, "times": times, "median": medians}, indent=1))
    lines = [
        f"MRPC train+dev+test, {rows} pairs, median of {args.rounds} rounds, {os.cpu_count()} CPUs",
        "",
        "| contender | seconds | pairs/s |",
        "|---|---|---|",
        *(f"| {name} | {s:.3f} | {rows / s:,.0f} |" for name, s in medians.items()),
    ]
    (out / "tokenize_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
