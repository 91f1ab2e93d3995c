"""Training speed, side by side in one run: the course recipe (HF Trainer) vs `seqtune train mrpc`.

Contenders, on the same packaged MiniLM and the same GLUE MRPC files, alternating per seed:
  (a)  course:       Hugging Face `Trainer` with `TrainingArguments` defaults (fp32, batch 8, lr 5e-5, 3 epochs,
                     `DataCollatorWithPadding`), as in the Hugging Face course, chapter 3.
  (a2) course-bf16:  the same with `bf16=True`. Skipped on CPUs without native bf16 (AVX512-BF16 / AMX), where
                     bf16 matmuls are emulated and far slower than fp32 (say `--force-bf16` to run it anyway).
  (b)  seqtune:      `seqtune train mrpc` with its defaults.
Each contender runs in its own process (clean peak RSS). Every run evaluates on dev every ~1/6 epoch so the
time until dev F1 first reaches the course recipe's final F1 can be read off; evaluation time is excluded from
training time for all of them. The same run measures fp32 and bf16 matmul peaks for model-FLOPs utilization.

    python benchmarks/train_speed.py --glue-dir ../shared/glue [--seeds 3] [--quick]

Writes benchmarks/results/train_speed.json and .md (or --out DIR).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONTENDERS = ("course", "course-bf16", "seqtune")


# ----------------------------------------------------------------------------------------------- workers


def _course(args: argparse.Namespace, bf16: bool) -> dict:
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from seqtune.data import load_glue
    from seqtune.metrics import make_compute_metrics
    from seqtune.modeling import resolve_model
    from seqtune.tasks import get_task

    task = get_task("mrpc")
    checkpoint = resolve_model("minilm")
    raw = load_glue(task, args.glue_dir)  # the hub's glue/mrpc, read from the local TSVs
    if args.quick:
        raw["train"] = raw["train"].select(range(800))
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)

    def tokenize_function(example):
        return tokenizer(example["sentence1"], example["sentence2"], truncation=True)

    tokenized = raw.map(tokenize_function, batched=True)
    counts = {"real": 0, "padded": 0, "on": True}

    class CountingCollator(DataCollatorWithPadding):
        def __call__(self, features):
            batch = super().__call__(features)
            if counts["on"]:
                counts["real"] += int(batch["attention_mask"].sum())
                counts["padded"] += batch["attention_mask"].numel()
            return batch

    evals, eval_seconds = [], [0.0]
    clock = {"start": 0.0}

    class TimedTrainer(Trainer):
        def evaluate(self, *a, **kw):
            counts["on"] = False
            started = time.perf_counter()
            metrics = super().evaluate(*a, **kw)
            eval_seconds[0] += time.perf_counter() - started
            train_so_far = time.perf_counter() - clock["start"] - eval_seconds[0]
            evals.append(
                {"train_seconds": train_so_far, "f1": metrics["eval_f1"], "accuracy": metrics["eval_accuracy"]}
            )
            counts["on"] = True
            return metrics

    steps_per_epoch = -(-len(tokenized["train"]) // 8)
    epochs = 1 if args.quick else 3
    training_args = TrainingArguments(
        str(Path(args.workdir) / "course"),
        eval_strategy="steps",
        eval_steps=max(1, steps_per_epoch // 6),
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=args.seed,
        bf16=bf16,
        num_train_epochs=epochs,
        use_cpu=not __import__("torch").cuda.is_available(),
    )
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=2)
    trainer = TimedTrainer(
        model,
        training_args,
        train_dataset=tokenized["train"],
        eval_dataset=tokenized["validation"],
        data_collator=CountingCollator(tokenizer),
        processing_class=tokenizer,
        compute_metrics=make_compute_metrics(task),
    )
    clock["start"] = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - clock["start"]
    if not evals or evals[-1]["train_seconds"] < wall - eval_seconds[0] - 1:
        trainer.evaluate()  # final evaluation at the end of training
    return {
        "train_seconds": wall - eval_seconds[0],
        "real_tokens": counts["real"],
        "padded_tokens": counts["padded"],
        "samples": len(tokenized["train"]) * epochs,
        "evals": evals,
    }


def _seqtune(args: argparse.Namespace) -> dict:
    from seqtune import load_config
    from seqtune.training import train

    overrides = [
        "task=mrpc",
        f"data.data_dir={args.glue_dir}",
        f"output={Path(args.workdir) / 'seqtune'}",
        "quiet=true",
        f"seed={args.seed}",
        "data.cache_dir=" + str(Path(args.workdir) / "cache"),  # cold tokenization, like the course run
    ]
    if args.quick:
        overrides += ["data.max_train_samples=800", "train.epochs=1"]
    cfg = load_config(None, overrides)
    steps_per_epoch = -(-(800 if args.quick else 3668) // cfg.train.batch_size)
    cfg.train.eval_every = max(1, steps_per_epoch // 6)
    result = train(cfg)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    real = metrics["tokens_per_second"] * metrics["train_seconds"]
    evals = [
        {"train_seconds": h["train_seconds"], "f1": h["metrics"]["validation"]["f1"],
         "accuracy": h["metrics"]["validation"]["accuracy"]}
        for h in metrics["history"]
    ]  # fmt: skip
    return {
        "train_seconds": metrics["train_seconds"],
        "real_tokens": real,
        "padded_tokens": real / (1 - metrics["padding_share"]),
        "samples": (800 if args.quick else 3668) * (cfg.train.epochs or 3),
        "evals": evals,
    }


def worker(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    out = _seqtune(args) if args.worker == "seqtune" else _course(args, bf16=args.worker == "course-bf16")
    out["wall_seconds"] = time.perf_counter() - started
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["final"] = out["evals"][-1]
    Path(args.json).write_text(json.dumps(out))


# ----------------------------------------------------------------------------------------------- driver


def matmul_peak(dtype_name: str, n: int, budget: float = 20.0) -> float:
    """Best GFLOP/s of an n x n matmul within a time budget."""
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best, deadline = 0.0, time.perf_counter() + budget
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def non_embedding_params() -> int:
    from seqtune.modeling import load_model, resolve_model
    from seqtune.tasks import get_task

    model = load_model(resolve_model("minilm"), get_task("mrpc"))
    return sum(p.numel() for n, p in model.named_parameters() if ".embeddings." not in n)


def first_reach(evals: list[dict], target: float) -> float | None:
    for e in evals:
        if e["f1"] >= target - 1e-9:
            return e["train_seconds"]
    return None


def summarize(runs: dict[str, list[dict]], peaks: dict[str, float], params: int) -> dict:
    target = statistics.mean(r["final"]["f1"] for r in runs["course"])
    out = {}
    for name, rs in runs.items():
        if not rs:
            continue
        secs = statistics.mean(r["train_seconds"] for r in rs)
        toks = statistics.mean(r["real_tokens"] / r["train_seconds"] for r in rs)
        reach = [first_reach(r["evals"], target) for r in rs]
        peak = (
            peaks["bfloat16"]
            if name == "course-bf16" or (name == "seqtune" and rs[0].get("bf16"))
            else peaks["float32"]
        )
        out[name] = {
            "runs": len(rs),
            "real_tokens_per_s": toks,
            "samples_per_s": statistics.mean(r["samples"] / r["train_seconds"] for r in rs),
            "padding_share": statistics.mean(1 - r["real_tokens"] / r["padded_tokens"] for r in rs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rs),
            "train_seconds": secs,
            "wall_seconds": statistics.mean(r["wall_seconds"] for r in rs),
            "seconds_to_course_f1": statistics.mean(x for x in reach) if all(x is not None for x in reach) else None,
            "final_accuracy": statistics.mean(r["final"]["accuracy"] for r in rs),
            "final_f1": statistics.mean(r["final"]["f1"] for r in rs),
            "final_f1_per_seed": [r["final"]["f1"] for r in rs],
            "mfu": 6 * params * toks / (peak * 1e9),
        }
    return {"course_final_f1": target, "contenders": out}


def markdown(summary: dict, peaks: dict, meta: dict) -> str:
    rows = summary["contenders"]
    lines = [
        f"Machine: {meta['cpu']}, {meta['threads']} threads, torch {meta['torch']}; "
        f"matmul peak fp32 {peaks['float32']:.0f} GFLOP/s, bf16 {peaks['bfloat16']:.1f} GFLOP/s; "
        f"seeds {meta['seeds']}; quick={meta['quick']}. "
        f"Course final dev F1 (target): {summary['course_final_f1']:.4f}.",
        "",
        "| contender | real tok/s | samples/s | padding | peak RSS MB | train s | s to course F1 | dev acc | dev F1 "
        "| MFU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        reach = f"{r['seconds_to_course_f1']:.0f}" if r["seconds_to_course_f1"] is not None else "never"
        lines.append(
            f"| {name} | {r['real_tokens_per_s']:,.0f} | {r['samples_per_s']:.1f} | {r['padding_share']:.1%} | "
            f"{r['peak_rss_mb']:.0f} | {r['train_seconds']:.0f} | {reach} | {r['final_accuracy']:.4f} | "
            f"{r['final_f1']:.4f} | {r['mfu']:.1%} |"
        )
    for base in ("course", "course-bf16"):
        if base in rows and "seqtune" in rows:
            b, s = rows[base], rows["seqtune"]
            lines.append(
                f"\nseqtune / {base}: tokens/s {s['real_tokens_per_s'] / b['real_tokens_per_s']:.2f}x, "
                f"training time {s['train_seconds'] / b['train_seconds']:.2f}x"
                + (f", time to the course's F1 {s['seconds_to_course_f1'] / b['train_seconds']:.2f}x of its "
                   "training time" if s["seconds_to_course_f1"] is not None else "")
            )  # fmt: skip
    for name, reason in meta.get("skipped", {}).items():
        lines.append(f"\n{name}: skipped — {reason}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--glue-dir", default="../shared/glue")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="800 training examples, 1 epoch: a smoke run")
    ap.add_argument("--force-bf16", action="store_true", help="run course-bf16 even without native bf16")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--worker", choices=CONTENDERS, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=42, help=argparse.SUPPRESS)
    ap.add_argument("--json", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.worker:
        worker(args)
        return

    import platform

    import torch

    from seqtune.inference import bf16_supported

    native_bf16 = bf16_supported(torch.device("cpu"))
    # Best of two sizes: on a shared 2-core VM a single size's best can sit well under the real peak.
    peaks = {
        "float32": max(matmul_peak("float32", n, 10.0) for n in (1024, 2048)),
        "bfloat16": matmul_peak("bfloat16", 2048 if native_bf16 else 256),
    }
    print(f"matmul peak GFLOP/s: fp32 {peaks['float32']:.0f}, bf16 {peaks['bfloat16']:.1f}", flush=True)
    contenders = list(CONTENDERS)
    skipped = {}
    if not native_bf16 and not args.force_bf16:
        contenders.remove("course-bf16")
        skipped["course-bf16"] = (
            f"this CPU has no native bf16 (no AVX512-BF16/AMX); emulated bf16 matmul runs at "
            f"{peaks['bfloat16']:.1f} GFLOP/s vs fp32 {peaks['float32']:.0f}"
        )
    runs: dict[str, list[dict]] = {c: [] for c in contenders}
    for i in range(args.seeds):
        for name in contenders:  # alternate contenders within each seed, so machine drift hits all alike
            with tempfile.TemporaryDirectory() as work:
                out = Path(work) / "result.json"
                cmd = [sys.executable, __file__, "--worker", name, "--seed", str(42 + i), "--json", str(out),
                       "--workdir", work, "--glue-dir", args.glue_dir]  # fmt: skip
                cmd += ["--quick"] if args.quick else []
                print(f"seed {42 + i}: {name} ...", flush=True)
                subprocess.run(cmd, check=True)
                runs[name].append(json.loads(out.read_text()))
                r = runs[name][-1]
                print(f"  {r['train_seconds']:.0f}s train, {r['real_tokens'] / r['train_seconds']:,.0f} tok/s, "
                      f"final acc {r['final']['accuracy']:.4f} F1 {r['final']['f1']:.4f}", flush=True)  # fmt: skip
    summary = summarize(runs, peaks, non_embedding_params())
    meta = {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "seeds": args.seeds,
        "quick": args.quick,
        "skipped": skipped,
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    stem = Path(args.out) / ("train_speed_quick" if args.quick else "train_speed")
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "peaks": peaks, "summary": summary, "runs": runs}))
    table = markdown(summary, peaks, meta)
    stem.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
