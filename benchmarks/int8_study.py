"""int8 ONNX variants of one trained run, side by side: label agreement with fp32 PyTorch and speed.

Every variant is made from the same fp32 export (`seqtune.export_run`) with `onnxruntime.quantization` and runs
every MRPC dev + test pair through `seqtune.predict`'s own path; agreement is with the run's fp32 PyTorch labels.

    python benchmarks/int8_study.py --run RUN --glue-dir ../shared/glue [--rounds 2]

Variants: seqtune's settings (dynamic, per-channel int8 weights in a 7-bit range), the 8-bit range, matrix products
only, one kind of layer or one encoder layer kept in fp32, SmoothQuant-style input scaling (Xiao et al. 2023), and
weight-only 8/4-bit (`MatMulNBits`, activations quantized per block of 32). Results:
``benchmarks/results/int8_study-<class>.{json,md}`` (see `machine.py`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from machine import describe

RESULTS = Path(__file__).resolve().parent / "results"
ROLES = ("query", "key", "value", "attention output", "FFN in", "FFN out")  # weight products of a BERT layer, in order


def _cleaned(src: Path):
    """The fp32 graph without the intermediate shapes the exporter recorded (onnxruntime infers them afresh)."""
    import onnx

    model = onnx.load(str(src))
    model.graph.ClearField("value_info")
    return model


def dynamic(**options) -> Callable[[Path, Path], None]:
    def make(src: Path, dst: Path) -> None:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        tmp = dst.with_name("cleaned.onnx")
        onnx.save(_cleaned(src), str(tmp))
        quantize_dynamic(str(tmp), str(dst), weight_type=QuantType.QInt8, per_channel=True, **options)
        tmp.unlink()

    return make


def weight_products(src: Path) -> list[str]:
    """Names of the matrix products with a weight (the encoder's Linear layers), in graph order."""
    import onnx

    model = onnx.load(str(src))
    weights = {i.name for i in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]


def keep_fp32(choose: Callable[[int, str], bool], classifier: bool = False) -> Callable[[Path, Path], None]:
    """The 8-bit matrix-product variant with the chosen (layer, role) products left in fp32."""

    def make(src: Path, dst: Path) -> None:
        import onnx

        names = weight_products(src)
        excluded = [n for i, n in enumerate(names) if choose(i // len(ROLES), ROLES[i % len(ROLES)])]
        if classifier:
            excluded += [n.name for n in onnx.load(str(src)).graph.node if n.op_type == "Gemm"]
        dynamic(reduce_range=False, op_types_to_quantize=["MatMul", "Gemm"], nodes_to_exclude=excluded)(src, dst)

    return make


def smooth_quant(calibration: list[dict], alpha: float = 0.5) -> Callable[[Path, Path], None]:
    """Divide each weight product's input by s (a Mul node) and multiply the weight's rows by s, s_j = max|X_j| **
    alpha / max|W_j| ** (1 - alpha) (exact in fp32), then the 8-bit dynamic variant."""

    def make(src: Path, dst: Path) -> None:
        import onnx
        import onnxruntime as ort
        from onnx import helper, numpy_helper

        model = _cleaned(src)
        inits = {i.name: i for i in model.graph.initializer}
        groups: dict[str, list] = {}
        for node in model.graph.node:
            if node.op_type == "MatMul" and node.input[1] in inits:
                groups.setdefault(node.input[0], []).append(node)
        probe = _cleaned(src)
        for name in groups:
            probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
        feeds = [i.name for i in session.get_inputs()]
        amax: dict[str, np.ndarray] = {}
        for batch in calibration:
            for name, value in zip(groups, session.run(list(groups), {k: batch[k] for k in feeds}), strict=True):
                seen = np.abs(value).reshape(-1, value.shape[-1]).max(0)
                amax[name] = np.maximum(amax[name], seen) if name in amax else seen
        for x, nodes in groups.items():
            weights = [numpy_helper.to_array(inits[n.input[1]]) for n in nodes]
            wmax = np.max([np.abs(w).max(1) for w in weights], axis=0)
            s = (np.maximum(amax[x], 1e-5) ** alpha / np.maximum(wmax, 1e-5) ** (1 - alpha)).astype(np.float32)
            for node, w in zip(nodes, weights, strict=True):
                inits[node.input[1]].CopyFrom(numpy_helper.from_array(w * s[:, None], node.input[1]))
                node.input[0] = f"{x}_smoothed"
            model.graph.initializer.append(numpy_helper.from_array(1 / s, f"{x}_smooth_scale"))
            first = min(i for i, n in enumerate(model.graph.node) if n in nodes)
            mul = helper.make_node("Mul", [x, f"{x}_smooth_scale"], [f"{x}_smoothed"], name=f"{x}_smooth")
            model.graph.node.insert(first, mul)
        tmp = dst.with_name("smoothed.onnx")
        onnx.save(model, str(tmp))
        dynamic(reduce_range=False)(tmp, dst)
        tmp.unlink()

    return make


def weight_only(bits: int, block: int = 32) -> Callable[[Path, Path], None]:
    def make(src: Path, dst: Path) -> None:
        from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

        config = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=True, accuracy_level=4, bits=bits)
        quantizer = MatMulNBitsQuantizer(_cleaned(src), bits=bits, block_size=block, is_symmetric=True,
                                         accuracy_level=4, algo_config=config)  # fmt: skip
        quantizer.process()
        quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)

    return make


def variants(calibration: list[dict]) -> dict[str, Callable[[Path, Path], None]]:
    out = {
        "fp32 export": lambda src, dst: shutil.copy(src, dst),
        "seqtune --quantize int8 (7-bit weights)": dynamic(reduce_range=True),
        "8-bit weights": dynamic(reduce_range=False),
        "matrix products only, 7-bit": dynamic(reduce_range=True, op_types_to_quantize=["MatMul", "Gemm"]),
        "matrix products only, 8-bit": keep_fp32(lambda layer, role: False),
    }
    out |= {f"{role} kept in fp32": keep_fp32(lambda layer, r, role=role: r == role) for role in ROLES}
    out["classifier kept in fp32"] = keep_fp32(lambda layer, role: False, classifier=True)
    out |= {f"layer {k} kept in fp32": keep_fp32(lambda layer, role, k=k: layer == k) for k in range(6)}
    out["SmoothQuant alpha 0.5"] = smooth_quant(calibration)
    out |= {f"weight-only {bits}-bit, blocks of 32": weight_only(bits) for bits in (8, 4)}
    return out


def render(data: dict) -> str:
    m = data["machine"]
    lines = [
        "# int8 ONNX variants (`benchmarks/int8_study.py`)",
        "",
        f"{data['pairs']} MRPC dev+test pairs, run {data['run']}; machine: {m['cpu']} ({', '.join(m['flags'])}), "
        f"{m['threads']} threads, {data['date']}; speed: best of {data['rounds']} alternating rounds through "
        "`seqtune.predict`",
        "",
        "| variant | agrees with fp32 PyTorch | max abs logit diff | pairs/s | x fp32 export | model file |",
        "|---|---|---|---|---|---|",
    ]
    base = data["variants"]["fp32 export"]["pairs_per_s"]
    for name, r in data["variants"].items():
        lines.append(
            f"| {name} | {r['agreement']:.2%} | {r['max_abs_logit_diff']:.3g} | {r['pairs_per_s']:.0f} | "
            f"{r['pairs_per_s'] / base:.2f}x | {r['megabytes']:.0f} MB |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a trained MRPC run folder")
    ap.add_argument("--glue-dir", default="../shared/glue")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from seqtune.data import load_glue
    from seqtune.export import export_run
    from seqtune.predict import load_run, logits_for, raw_dataset
    from seqtune.tasks import get_task

    work = Path(tempfile.mkdtemp())
    fp32 = export_run(args.run, output=work / "onnx", data_dir=args.glue_dir).output / "model.onnx"
    dd = load_glue(get_task("mrpc"), args.glue_dir)
    reference_run = load_run(args.run, precision="fp32")
    s1 = list(dd["validation"]["sentence1"]) + list(dd["test"]["sentence1"])
    s2 = list(dd["validation"]["sentence2"]) + list(dd["test"]["sentence2"])
    rows = raw_dataset(reference_run.task, s1, s2)
    reference = logits_for(reference_run, rows)
    train = dd["train"].select(range(256))
    calibration = [
        {k: v.astype(np.int64) for k, v in reference_run.tokenizer(
            train["sentence1"][i : i + 32], train["sentence2"][i : i + 32], padding=True, truncation=True,
            return_tensors="np").items()}
        for i in range(0, 256, 32)
    ]  # fmt: skip
    runs, results = {}, {}
    for name, make in variants(calibration).items():
        folder = work / f"v{len(runs)}"
        shutil.copytree(fp32.parent, folder)
        make(fp32, folder / "model.onnx")
        runs[name] = load_run(folder)
        logits = logits_for(runs[name], rows)
        results[name] = {
            "agreement": float(np.mean(logits.argmax(-1) == reference.argmax(-1))),
            "max_abs_logit_diff": float(np.abs(logits - reference).max()),
            "megabytes": (folder / "model.onnx").stat().st_size / 1e6,
            "rates": [],
        }
        print(name, f"{results[name]['agreement']:.2%}", flush=True)
    for _ in range(args.rounds):  # speed: alternating rounds, after every model is built
        for name, run in runs.items():
            started = time.perf_counter()
            logits_for(run, rows)
            results[name]["rates"].append(len(rows) / (time.perf_counter() - started))
    for r in results.values():
        r["pairs_per_s"] = max(r.pop("rates"))
    data = {"pairs": len(rows), "run": str(args.run), "rounds": args.rounds, "date": time.strftime("%Y-%m-%d"),
            "machine": describe(torch.get_num_threads()), "variants": results}  # fmt: skip
    stem = Path(args.out) / f"int8_study-{data['machine']['class']}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(data, indent=1))
    stem.with_suffix(".md").write_text(render(data))
    print(render(data))
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
