"""Inference speed, side by side in one run: `seqtune predict` vs a transformers `pipeline("text-classification")`.

Same saved model, same inputs (every MRPC dev + test sentence pair), same process, alternating rounds. Reports
sentence pairs per second, p50/p99 latency of a 32-pair request, label agreement with seqtune's float32 PyTorch
predictions, accuracy on the 408 labelled dev pairs, and model-FLOPs utilization: 2 x non-embedding parameters x
real tokens/s over the matmul peak, measured in the same run, of the precision the contender computes in (bf16 for
`seqtune predict` where the CPU has native bf16, which `precision: auto` then picks; fp32 otherwise; int8 ONNX
against the fp32 peak, so it can pass 100%).

With the export extra installed, `seqtune predict` also runs the run's ONNX export and its dynamic int8
quantization (made here with `seqtune.export_run`; the int8 one is kept whatever its agreement, and reported).

    python benchmarks/infer_speed.py --glue-dir ../shared/glue [--run runs/mrpc] [--rounds 2] [--no-onnx]

Results: ``benchmarks/results/infer_speed-<class>.{json,md}`` (``bf16`` or ``avx2``, see `machine.py`).

Without --run it saves the packaged MiniLM with a fresh MRPC head as a run folder (2 training steps): speed
does not depend on the weights, but agreement and accuracy then mean little; pass a trained run for those.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from machine import describe, peak_for
from train_speed import matmul_peak, non_embedding_params

REQUEST = 32  # pairs per latency-measured request
OURS = "seqtune predict"  # precision auto: bf16 where native
REFERENCE = "seqtune predict, fp32"  # agreement is measured against this contender's labels
AUTOCAST = "seqtune predict, bf16 autocast over fp32 weights"


def make_run(glue_dir: str, work: str) -> Path:
    from seqtune import load_config
    from seqtune.training import train

    out = Path(work) / "run"
    train(load_config(None, ["task=mrpc", f"data.data_dir={glue_dir}", f"output={out}", "quiet=true",
                             "train.max_steps=2", "data.max_eval_samples=32"]))  # fmt: skip
    return out


def make_exports(run_dir: Path, glue_dir: str, work: str) -> dict[str, Path]:
    """ONNX fp32 and int8 exports of the run (int8 from the fp32 graph), whatever the int8 agreement."""
    from seqtune.export import export_run

    fp32 = export_run(run_dir, output=Path(work) / "onnx", data_dir=glue_dir).output
    int8 = export_run(fp32, quantize="int8", output=Path(work) / "onnx-int8", data_dir=glue_dir, min_agreement=0)
    return {"seqtune predict, ONNX export": fp32, "seqtune predict, ONNX int8 export": int8.output}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--glue-dir", default="../shared/glue")
    ap.add_argument("--run", help="a seqtune run folder (default: make one)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-onnx", action="store_true", help="skip the ONNX contenders")
    ap.add_argument("--pairs", type=int, help="only the first N pairs (smoke runs)")
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
    s1, s2 = s1[: args.pairs], s2[: args.pairs]
    dev_labels = list(dd["validation"]["label"])[: len(s1)]
    pairs = [{"text": a, "text_pair": b} for a, b in zip(s1, s2, strict=True)]
    from seqtune.precision import resolve_precision

    runs = {OURS: load_run(run_dir), REFERENCE: load_run(run_dir, precision="fp32")}
    precisions = {OURS: resolve_precision("auto", torch.device("cpu")), REFERENCE: "fp32"}
    if precisions[OURS] == "bf16":  # what predict did before it cast the weights once: autocast over fp32 weights
        runs[AUTOCAST] = dataclasses.replace(load_run(run_dir, precision="fp32"), precision="bf16")
        precisions[AUTOCAST] = "bf16"
    onnx = not args.no_onnx and all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnxscript"))
    if onnx:
        runs |= {name: load_run(path) for name, path in make_exports(run_dir, args.glue_dir, work).items()}
    names = runs[REFERENCE].model.config.id2label
    pipe = pipeline("text-classification", model=str(run_dir), device=-1)
    tokenizer = runs[REFERENCE].tokenizer
    tokens = sum(len(ids) for ids in tokenizer(s1, s2, truncation=True)["input_ids"])
    requests = [slice(i, i + REQUEST) for i in range(0, len(pairs), REQUEST)][:20]

    def ours(run):  # whole-set and one-request callables for a seqtune contender
        return (lambda: predict(run, s1, s2)), (lambda sl: predict(run, s1[sl], s2[sl]))

    contenders = {name: ours(run) for name, run in runs.items()} | {
        "pipeline (batch_size=32)": ((lambda: pipe(pairs, batch_size=32)), (lambda sl: pipe(pairs[sl], batch_size=32))),
        "pipeline (default, batch 1)": ((lambda: pipe(pairs)), (lambda sl: pipe(pairs[sl]))),
    }
    throughput = {name: [] for name in contenders}
    latency = {name: [] for name in contenders}
    outputs = {}
    for _, request in contenders.values():  # warm-up: first calls pay one-off costs
        request(requests[0])
    for _ in range(args.rounds):
        for name, (whole, request) in contenders.items():
            started = time.perf_counter()
            outputs[name] = [r["label"] for r in whole()]
            throughput[name].append(len(pairs) / (time.perf_counter() - started))
            for sl in requests:
                t = time.perf_counter()
                request(sl)
                latency[name].append(time.perf_counter() - t)
    # Measured after the contenders, in the same process: best of two sizes (see train_speed.py).
    peaks = {"float32": max(matmul_peak("float32", n, 10.0) for n in (1024, 2048))}
    native = describe(torch.get_num_threads())["class"] != "avx2"
    peaks["bfloat16"] = matmul_peak("bfloat16", 2048) if native else 0.0
    machine = describe(torch.get_num_threads(), peaks)
    counts = non_embedding_params()
    params = counts["layer"] * counts["layers"] + counts["other"]
    base = statistics.mean(throughput["pipeline (default, batch 1)"])
    base32 = statistics.mean(throughput["pipeline (batch_size=32)"])
    reference = outputs[REFERENCE]
    lines = [
        f"{len(pairs)} MRPC dev+test pairs ({tokens / len(pairs):.1f} tokens each on average), torch "
        f"{torch.__version__}, {args.rounds} rounds, matmul peak fp32 {peaks['float32']:.0f} GFLOP/s, bf16 "
        f"{peaks['bfloat16']:.0f}; machine: {machine['cpu']} ({', '.join(machine['flags'])}), {machine['threads']} "
        f"threads, {time.strftime('%Y-%m-%d')}; run {run_dir}",
        "",
        f"| contender | precision | pairs/s | p50 ({REQUEST} pairs) | p99 | vs pipeline default | vs pipeline b32 | "
        f"MFU | agrees with fp32 PyTorch | dev accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    results = {"pairs": len(pairs), "tokens": tokens, "peaks": peaks, "run": str(run_dir), "machine": machine,
               "date": time.strftime("%Y-%m-%d"), "contenders": {}}  # fmt: skip
    for name in contenders:
        rate = statistics.mean(throughput[name])
        p50, p99 = percentile(latency[name], 50), percentile(latency[name], 99)
        precision = precisions.get(name, "int8" if "int8" in name else "fp32")
        mfu = 2 * params * tokens / len(pairs) * rate / (peak_for(precision, peaks) * 1e9)
        labels = outputs[name]
        agree = sum(a == b for a, b in zip(labels, reference, strict=True)) / len(labels)
        accuracy = sum(names[y] == p for y, p in zip(dev_labels, labels, strict=False)) / len(dev_labels)
        results["contenders"][name] = {"pairs_per_s": rate, "p50_s": p50, "p99_s": p99, "mfu": mfu,
                                       "agreement": agree, "dev_accuracy": accuracy,
                                       "precision": precision}  # fmt: skip
        cells = [name, precision, f"{rate:,.0f}", f"{p50 * 1000:.0f} ms", f"{p99 * 1000:.0f} ms", f"{rate / base:.2f}x",
                 f"{rate / base32:.2f}x", f"{mfu:.1%}", f"{agree:.2%}", f"{accuracy:.4f}"]  # fmt: skip
        lines.append(f"| {' | '.join(cells)} |")
    ceiling = peaks["float32"] * 1e9 / (2 * params * tokens / len(pairs))
    results["fp32_ceiling_pairs_per_s"] = ceiling
    lines += ["", f"At 100% of the fp32 matmul peak the model's own FLOPs allow {ceiling:,.0f} pairs/s: "
              f"{ceiling / base:.1f}x the pipeline's default."]  # fmt: skip
    table = "\n".join(lines) + "\n"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    stem = Path(args.out) / f"infer_speed-{machine['class']}"
    stem.with_suffix(".json").write_text(json.dumps(results))
    stem.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
