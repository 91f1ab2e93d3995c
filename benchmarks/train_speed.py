"""Training speed, side by side in one run: the course recipe (HF Trainer) vs `seqtune train mrpc`.

Contenders, on the same packaged MiniLM and the same GLUE MRPC files, alternating per seed:
  (a)  course:       Hugging Face `Trainer` with `TrainingArguments` defaults (fp32, batch 8, lr 5e-5, 3 epochs,
                     `DataCollatorWithPadding`), as in the Hugging Face course, chapter 3.
  (a2) course-bf16:  the same with `bf16=True`. Skipped on CPUs without native bf16 (AVX512-BF16 / AMX), where
                     bf16 matmuls are emulated and far slower than fp32 (say `--force-bf16` to run it anyway).
  (b)  seqtune:      `seqtune train mrpc` with its defaults.
  (c)  seqtune-top3: the same with `--train-layers 3` (freeze-and-cache: the top 3 of 6 layers train on the
                     frozen bottom's cached output; building the cache counts as training time).
Each contender runs in its own process (clean peak RSS). Every run evaluates on dev every ~1/6 epoch so the
time until dev F1 first reaches the course recipe's final F1 can be read off; evaluation time is excluded from
training time for all of them. The same run measures fp32 and bf16 matmul peaks for model-FLOPs utilization; each
contender's MFU is measured against the peak of the precision it trained in (`machine.peak_for`), counting the
FLOPs of the layers it runs (6 x parameters x tokens for a full step; a freeze-and-cache step runs the top K
layers only, and its cache pass 2 x the bottom's parameters x tokens once).

    python benchmarks/train_speed.py --glue-dir ../shared/glue [--seeds 3] [--quick] [--emulate-avx2]
    python benchmarks/train_speed.py --f1-seeds 43,44 [--emulate-avx2] [--contenders course,seqtune-top3]

Writes benchmarks/results/train_speed-<class>.json and .md, ``<class>`` being the machine's class (``amx``, ``bf16``:
native bf16 matmuls; ``avx2``: emulated), with the CPU model, flags and threads in ``machine``. ``--emulate-avx2``
holds a newer CPU to AVX2 (PyTorch's, oneDNN's and MKL's kernels, and seqtune's automatic precision: fp32), for an
AVX2-only machine's ratios where none is at hand; class ``avx2-emulated``.
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

from machine import EMULATE_AVX2, cpuinfo, describe, emulating_avx2, peak_for
from records import mean_std, write

CONTENDERS = ("course", "course-bf16", "seqtune", "seqtune-top3")


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
        "epochs": epochs,
        "evals": evals,
        "precision": "bf16" if bf16 else "fp32",
    }


def _seqtune(args: argparse.Namespace, train_layers: int | None = None) -> dict:
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
    if train_layers:
        overrides.append(f"train.train_layers={train_layers}")
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
        "epochs": cfg.train.epochs or 3,
        "evals": evals,
        "precision": metrics["precision"],
        "train_layers": train_layers,
    }


def worker(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    if args.worker.startswith("seqtune"):
        out = _seqtune(args, train_layers=3 if args.worker == "seqtune-top3" else None)
    else:
        out = _course(args, bf16=args.worker == "course-bf16")
    out["wall_seconds"] = time.perf_counter() - started
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["final"] = out["evals"][-1]
    Path(args.json).write_text(json.dumps(out))


# ----------------------------------------------------------------------------------------------- driver


def run_worker(name: str, seed: int, args: argparse.Namespace, threads: int | None = None) -> dict:
    """One contender's run in its own process (clean peak RSS); ``threads`` caps its torch threads."""
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "result.json"
        cmd = [sys.executable, __file__, "--worker", name, "--seed", str(seed), "--json", str(out),
               "--workdir", work, "--glue-dir", args.glue_dir]  # fmt: skip
        cmd += ["--quick"] if args.quick else []
        subprocess.run(cmd, check=True, env=env)
        return json.loads(out.read_text())


def f1_seeds(args: argparse.Namespace) -> None:
    """The dev F1 at the end of training over more seeds, untimed: the timed run's seeds (42, 43, ... in the order
    of ``train_speed-<class>.json``) and each of ``--f1-seeds`` it lacks, run through the same worker. Writes
    ``train_speed-<class>-f1-seeds.json`` and ``.md``."""
    import torch

    machine = describe(torch.get_num_threads())
    stem = Path(args.out) / f"train_speed-{machine['class']}"
    timed = json.loads(stem.with_suffix(".json").read_text())["runs"] if stem.with_suffix(".json").is_file() else {}
    contenders = {}
    for name in args.contenders.split(","):
        finals = {42 + i: r["final"] for i, r in enumerate(timed.get(name, []))}
        for seed in [int(s) for s in args.f1_seeds.split(",") if int(s) not in finals]:
            print(f"seed {seed}: {name} (untimed) ...", flush=True)
            finals[seed] = run_worker(name, seed, args, args.threads)["final"]
            print(f"  final acc {finals[seed]['accuracy']:.4f} F1 {finals[seed]['f1']:.4f}", flush=True)
        mean, std = mean_std([finals[s]["f1"] for s in sorted(finals)])
        contenders[name] = {
            "f1_per_seed": {str(s): round(finals[s]["f1"], 4) for s in sorted(finals)},
            "accuracy_per_seed": {str(s): round(finals[s]["accuracy"], 4) for s in sorted(finals)},
            "f1_mean": round(mean, 4),
            "f1_std": round(std, 4),
        }
    record = {
        "what": f"dev F1 of the last evaluation (the benchmark's 'final') per seed, MRPC, class {machine['class']}; "
        f"seeds of the timed run from {stem.name}.json, the others untimed through `train_speed.py --f1-seeds "
        f"{args.f1_seeds}`" + (f" with {args.threads} thread(s) per run" if args.threads else ""),
        "machine": machine,
        "date": time.strftime("%Y-%m-%d"),
        "contenders": contenders,
    }
    write(stem.with_name(f"{stem.name}-f1-seeds"), record, render_f1_seeds)


def render_f1_seeds(record: dict) -> str:
    rows = record["contenders"]
    seeds = sorted({s for r in rows.values() for s in r["f1_per_seed"]}, key=int)
    lines = [
        f"# Dev F1 per seed ({record['machine']['class']}, {record['date']})",
        "",
        "| contender | " + " | ".join(f"seed {s}" for s in seeds) + " | mean +- std |",
        "|---|" + "---|" * (len(seeds) + 1),
        *(f"| {name} | " + " | ".join(f"{r['f1_per_seed'].get(s, float('nan')):.4f}" for s in seeds)
          + f" | {r['f1_mean']:.4f} +- {r['f1_std']:.4f} |" for name, r in rows.items()),
        "",
        record["what"] + f"; {machine_line(record)}.",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


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


def non_embedding_params() -> dict[str, int]:
    """MiniLM's matmul parameters: per encoder layer, the number of layers, and the rest outside the embeddings."""
    from seqtune.frozen import encoder_layers
    from seqtune.modeling import load_model, resolve_model
    from seqtune.tasks import get_task

    model = load_model(resolve_model("minilm"), get_task("mrpc"))
    layers = encoder_layers(model).layers
    total = sum(p.numel() for n, p in model.named_parameters() if ".embeddings." not in n)
    per_layer = sum(p.numel() for p in layers[0].parameters())
    return {"layer": per_layer, "layers": len(layers), "other": total - per_layer * len(layers)}


def run_flops(run: dict, params: dict[str, int]) -> float:
    """Model FLOPs of one run: 6 x parameters x real tokens for the layers that train (forward and backward), plus,
    with freeze-and-cache, 2 x the frozen layers' parameters x one epoch's tokens (the cache pass, forward only).

    Example:
        >>> p = {"layer": 10, "layers": 6, "other": 4}
        >>> full, top2 = {"real_tokens": 30, "epochs": 3}, {"real_tokens": 30, "epochs": 3, "train_layers": 2}
        >>> run_flops(full, p), run_flops(top2, p)
        (11520.0, 5120.0)
    """
    k = run.get("train_layers") or params["layers"]
    trained = 6 * (k * params["layer"] + params["other"]) * run["real_tokens"]
    frozen = 2 * (params["layers"] - k) * params["layer"] * run["real_tokens"] / run.get("epochs", 1)
    return trained + frozen


def first_reach(evals: list[dict], target: float) -> float | None:
    for e in evals:
        if e["f1"] >= target - 1e-9:
            return e["train_seconds"]
    return None


def summarize(runs: dict[str, list[dict]], peaks: dict[str, float], params: dict[str, int]) -> dict:
    target = statistics.mean(r["final"]["f1"] for r in runs["course"])
    out = {}
    for name, rs in runs.items():
        if not rs:
            continue
        secs = statistics.mean(r["train_seconds"] for r in rs)
        toks = statistics.mean(r["real_tokens"] / r["train_seconds"] for r in rs)
        reach = [first_reach(r["evals"], target) for r in rs]
        peak = peak_for(rs[0]["precision"], peaks)
        flops_per_s = statistics.mean(run_flops(r, params) / r["train_seconds"] for r in rs)
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
            "precision": rs[0]["precision"],
            "mfu": flops_per_s / (peak * 1e9),
        }
    return {"course_final_f1": target, "contenders": out}


def machine_line(meta: dict) -> str:
    """The machine in one line; results from before `machine.describe` carry only ``cpu`` and ``threads``."""
    m = meta.get("machine") or {"cpu": meta.get("cpu", "?"), "flags": [], "threads": meta.get("threads", "?")}
    flags = ", ".join(m["flags"]) or "flags not recorded"
    return f"{m['cpu']} ({flags}), {m['threads']} threads"


def markdown(summary: dict, peaks: dict, meta: dict) -> str:
    rows = summary["contenders"]
    lines = [
        f"Machine: {machine_line(meta)}, torch {meta['torch']}; "
        f"matmul peak fp32 {peaks['float32']:.0f} GFLOP/s, bf16 {peaks['bfloat16']:.1f} GFLOP/s; "
        f"seeds {meta['seeds']}; quick={meta['quick']}. "
        f"Course final dev F1 (target): {summary['course_final_f1']:.4f}.",
        "",
        "| contender | precision | real tok/s | samples/s | padding | peak RSS MB | train s | s to course F1 | dev acc "
        "| dev F1 | MFU |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        reach = f"{r['seconds_to_course_f1']:.0f}" if r["seconds_to_course_f1"] is not None else "never"
        lines.append(
            f"| {name} | {r.get('precision', '-')} | {r['real_tokens_per_s']:,.0f} | {r['samples_per_s']:.1f} | "
            f"{r['padding_share']:.1%} | "
            f"{r['peak_rss_mb']:.0f} | {r['train_seconds']:.0f} | {reach} | {r['final_accuracy']:.4f} | "
            f"{r['final_f1']:.4f} | {r['mfu']:.1%} |"
        )
    for base, mine in [(b, s) for b in ("course", "course-bf16") for s in ("seqtune", "seqtune-top3")]:
        if base in rows and mine in rows:
            b, s = rows[base], rows[mine]
            lines.append(
                f"\n{mine} / {base}: tokens/s {s['real_tokens_per_s'] / b['real_tokens_per_s']:.2f}x, "
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
    ap.add_argument("--emulate-avx2", action="store_true", help="hold this CPU to AVX2 (machine.EMULATE_AVX2)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--f1-seeds", help="comma-separated seeds: untimed runs for the F1 over more seeds (f1_seeds)")
    ap.add_argument("--contenders", default="course,seqtune-top3", help="with --f1-seeds: which contenders")
    ap.add_argument("--threads", type=int, help="with --f1-seeds: torch threads per run (when runs share cores)")
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
    if args.emulate_avx2 and not emulating_avx2():  # the variables must be set before torch loads: start again
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **EMULATE_AVX2})
    if args.f1_seeds:
        f1_seeds(args)
        return

    import torch

    from seqtune.precision import CPU_BF16_FLAGS

    native_bf16 = any(flag in CPU_BF16_FLAGS for flag in cpuinfo()[1])  # by the flags: the course takes bf16=True
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
        why = "this CPU is held to AVX2 here" if emulating_avx2() else "this CPU has no native bf16"
        skipped["course-bf16"] = (
            f"{why} (no AVX512-BF16/AMX); emulated bf16 matmul runs at "
            f"{peaks['bfloat16']:.1f} GFLOP/s vs fp32 {peaks['float32']:.0f}"
        )
    runs: dict[str, list[dict]] = {c: [] for c in contenders}
    for i in range(args.seeds):
        for name in contenders:  # alternate contenders within each seed, so machine drift hits all alike
            print(f"seed {42 + i}: {name} ...", flush=True)
            runs[name].append(run_worker(name, 42 + i, args))
            r = runs[name][-1]
            print(f"  {r['train_seconds']:.0f}s train, {r['real_tokens'] / r['train_seconds']:,.0f} tok/s, "
                  f"final acc {r['final']['accuracy']:.4f} F1 {r['final']['f1']:.4f}", flush=True)  # fmt: skip
    summary = summarize(runs, peaks, non_embedding_params())
    meta = {
        "machine": describe(torch.get_num_threads(), peaks),
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
        "seeds": args.seeds,
        "quick": args.quick,
        "skipped": skipped,
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    stem = Path(args.out) / f"train_speed{'_quick' if args.quick else ''}-{meta['machine']['class']}"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "peaks": peaks, "summary": summary, "runs": runs}))
    table = markdown(summary, peaks, meta)
    stem.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
