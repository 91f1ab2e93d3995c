"""Does `seqtune predict --input` keep memory flat as files grow? Peak RSS and rows/s for 100k and 2M rows.

    python benchmarks/predict_memory.py --rows 100000,2000000 [--model minilm]

The input is a Parquet file of short texts (CLINC150's training texts, cycled, each with its row number appended, so
no two rows are equal). Each size is predicted by `seqtune predict RUN --input FILE --output preds.parquet` in its own
process; its peak RSS is the child's ``ru_maxrss``. The run is a binary classifier (in scope or not) trained for one
step on CLINC150: the default ``--model tiny`` is a 2-layer, 32-wide random BERT with the MiniLM tokenizer (the memory
of the prediction path is what is measured, not the model's speed); ``--model minilm`` uses the packaged MiniLM.
Results: ``benchmarks/results/predict_memory.{json,md}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def tiny_model(path: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from seqtune.modeling import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    p.add_argument("--rows", default="100000,2000000")
    p.add_argument("--model", default="tiny", choices=["tiny", "minilm"])
    args = p.parse_args(argv)
    import pyarrow as pa
    import pyarrow.parquet as pq

    from seqtune import load_config, train
    from seqtune.precision import cpu_flags

    with (args.data_dir / "clinc150" / "train.csv").open() as f:
        rows = list(csv.DictReader(f))
    texts = [row["text"] for row in rows]
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # a binary task (out of scope or not), so each output row stays small: 151 intents' probabilities per row
        # would make a 2M-row output of gigabytes and measure the disk, not the prediction
        binary = root / "scope.csv"
        with binary.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["text", "label"])
            writer.writerows([row["text"], "oos" if row["intent"] == "oos" else "in"] for row in rows)
        model = str(tiny_model(root / "tiny")) if args.model == "tiny" else "minilm"
        cfg = load_config(
            None,
            [
                f"model.name={model}",
                f"data.train_file={binary}",
                "train.max_steps=1",
                "model.max_length=64",
                "quiet=true",
                f"output={root / 'run'}",
            ],
        )
        train(cfg)
        for n in (int(x) for x in args.rows.split(",")):
            data = root / f"in-{n}.parquet"
            writer = None
            for start in range(0, n, 100_000):  # written in slices: this process stays small too
                stop = min(start + 100_000, n)
                batch = pa.table({"text": [f"{texts[i % len(texts)]} {i}" for i in range(start, stop)]})
                writer = writer or pq.ParquetWriter(data, batch.schema)
                writer.write_table(batch)
            writer.close()
            out = root / f"out-{n}.parquet"
            # a wrapper process per size: its RUSAGE_CHILDREN peak is this prediction's alone
            wrapper = (
                "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
            )
            started = time.perf_counter()
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    wrapper,
                    sys.executable,
                    "-m",
                    "seqtune",
                    "predict",
                    str(root / "run"),
                    "--input",
                    str(data),
                    "--output",
                    str(out),
                ],
                capture_output=True,
                text=True,
                env={**os.environ, "HF_HUB_OFFLINE": "1"},
            )
            seconds = time.perf_counter() - started
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            peak = int(done.stdout.strip().splitlines()[-1])
            rows = pq.ParquetFile(out).metadata.num_rows
            records.append(
                {
                    "rows": n,
                    "written": rows,
                    "seconds": round(seconds, 1),
                    "rows_per_second": round(n / seconds),
                    "peak_rss_mb": round(peak / 1024),
                    "model": args.model,
                    "cpu": " ".join(cpu_flags()) or "avx2 only",
                    "date": time.strftime("%Y-%m-%d"),
                }
            )
            print(json.dumps(records[-1]), flush=True)
            data.unlink()
            out.unlink()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "predict_memory.json").write_text(json.dumps(records, indent=1))
    lines = [
        "# `seqtune predict --input` memory: peak RSS as the file grows",
        "",
        "| rows | peak RSS MB | seconds | rows/s | model |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['rows']:,} | {r['peak_rss_mb']:,} | {r['seconds']:.0f} | {r['rows_per_second']:,} | {r['model']} |"
        for r in records
    ]
    lines += [
        "",
        f"Machine: 2-core VM, CPU flags {records[0]['cpu']}; {records[0]['date']}. Peak RSS of the predicting "
        "process (its ru_maxrss, measured by a wrapper process per size). "
        "Input: Parquet of short texts; output: Parquet.",
    ]
    (RESULTS / "predict_memory.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
