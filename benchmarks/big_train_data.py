"""Training on big own-data files: time and peak memory to read, tokenize and take the first optimizer step, for
100k and 1M rows, with a cold tokenization cache and again with it warm.

    python benchmarks/big_train_data.py --rows 100000,1000000 [--num-proc 1,2]

The data: a CSV of short synthetic texts (5-24 words drawn from a fixed vocabulary with a seeded generator, 20
classes, each class with its own topic words so the task is learnable), written by `write_rows` into a temporary
folder. Each measurement is `seqtune.train` (packaged MiniLM, ``--max-steps 1``, 1,000 validation rows scored) in
its own process, so its peak RSS (``ru_maxrss`` of that child) is its own; the stages are timed inside it. ``cold``:
an empty tokenization cache; ``warm``: the same command again, reusing the cache. Results:
``benchmarks/results/big_train_data.{json,md}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from records import append

RESULTS = Path(__file__).resolve().parent / "results"

_COMMON = (
    "the a my our your this that please can could would you i we need want to for of on in at with about from "
    "and or but not now today tomorrow soon again how what when where why is are was be do does check set find "
    "tell show book cancel change move send pay order help update"
).split()


def write_rows(path: Path, n: int, seed: int = 0, classes: int = 20) -> None:
    """``n`` rows of ``text,label``: short texts mixing common words with their class's topic words."""
    rng = random.Random(seed)
    stems = ("item", "plan", "card", "trip", "bill", "note", "room", "song")
    topics = [[f"{w}{c}" for w in stems] for c in range(classes)]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        for _ in range(n):
            label = rng.randrange(classes)
            words = [rng.choice(topics[label]) if rng.random() < 0.25 else rng.choice(_COMMON)
                     for _ in range(rng.randint(5, 24))]  # fmt: skip
            writer.writerow([" ".join(words), f"class_{label}"])


def child(args: argparse.Namespace) -> int:
    """One measured training start, in this process: stage times on stdout as JSON."""
    from seqtune import load_config, setup_steps, train

    times: dict[str, float] = {}

    def timed(name, fn):
        def wrapper(*a, **kw):
            started = time.perf_counter()
            out = fn(*a, **kw)
            times[name] = round(time.perf_counter() - started, 1)
            return out

        return wrapper

    setup_steps.setup_data = timed("read_s", setup_steps.setup_data)
    setup_steps.setup_encoded = timed("tokenize_s", setup_steps.setup_encoded)
    overrides = [
        f"data.train_file={args.file}",
        "train.max_steps=1",
        "data.max_eval_samples=1000",
        "quiet=true",
        "overwrite=true",
        f"output={args.output}",
        f"data.cache_dir={args.cache}",
    ]
    if args.num_proc:
        overrides.append(f"data.num_proc={args.num_proc}")
    started = time.perf_counter()
    train(load_config(None, overrides))
    times["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(times))
    return 0


def render(records: list[dict]) -> str:
    lines = [
        "# Big training files: read, tokenize, first step (MiniLM, `--max-steps 1`)",
        "",
        "| rows | tokenization cache | num_proc | read s | tokenize s | model + first step + save s | total s | "
        "peak RSS MB | cpu |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        rest = r["total_s"] - r["read_s"] - r["tokenize_s"]
        lines.append(
            f"| {r['rows']:,}{' *' if r.get('shared') else ''} | {r['cache']} | {r['num_proc']} | {r['read_s']} | "
            f"{r['tokenize_s']} | {rest:.1f} | {r['total_s']} | {r['peak_rss_mb']:,} | {r['cpu']} |"
        )
    lines += [
        "",
        "Each row is one `seqtune.train` in its own process (peak RSS: that process's `ru_maxrss`). Read: parsing the "
        "CSV, label checks and the seeded 10% validation hold-out; tokenize: `Dataset.map(batched=True)` over every "
        "split and the length profile (a warm cache loads the saved result instead); the rest: loading the model, "
        "one optimizer step, scoring 1,000 validation rows and writing the run folder. Texts: 5-24 synthetic "
        "words, 20 classes (`write_rows`). Machine: 2-core VM; "
        + ", ".join(sorted({f"{r['date']}: {r['cpu']}" for r in records}))
        + "."
        + (
            " Rows marked * ran while other jobs shared the 2 cores: their seconds are upper bounds (memory is not"
            " affected)."
            if any(r.get("shared") for r in records)
            else ""
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", default="100000,1000000")
    p.add_argument("--num-proc", default="1", help="comma-separated data.num_proc values to compare (cold cache)")
    p.add_argument("--out", type=Path, default=RESULTS / "big_train_data.json")
    p.add_argument("--shared", action="store_true", help="other jobs share the machine: mark the rows' times")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        args.num_proc = int(args.num_proc)
        return child(args)
    from seqtune.precision import cpu_flags

    records = json.loads(args.out.read_text()) if args.out.is_file() else []
    wrapper = (
        "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "sys.stderr.write(done.stderr[-3000:]); print(done.stdout.strip().splitlines()[-1] if done.returncode == 0 "
        "else ''); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(done.returncode)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for n in (int(x) for x in args.rows.split(",")):
            data = root / f"train-{n}.csv"
            write_rows(data, n)
            for num_proc in (int(x) for x in args.num_proc.split(",")):
                cache = root / f"cache-{n}-{num_proc}"
                for state in ("cold", "warm"):
                    done = subprocess.run(
                        [sys.executable, "-c", wrapper, sys.executable, __file__, "--child", "--file", str(data),
                         "--output", str(root / "run"), "--cache", str(cache), "--num-proc", str(num_proc)],
                        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1",
                                                             "TOKENIZERS_PARALLELISM": "false"},
                    )  # fmt: skip
                    if done.returncode != 0:
                        print(done.stderr, file=sys.stderr)
                        return 1
                    stages, peak = done.stdout.strip().splitlines()[-2:]
                    cpu = " ".join(cpu_flags()) or "avx2 only"
                    record = {"rows": n, "cache": state, "num_proc": num_proc, **json.loads(stages),
                              "peak_rss_mb": round(int(peak) / 1024), "shared": args.shared, "cpu": cpu,
                              "date": time.strftime("%Y-%m-%d")}  # fmt: skip
                    append(args.out, records, record, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
