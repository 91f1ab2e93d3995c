"""Export a run to ONNX (optionally int8), check it against the PyTorch model, and run it with onnxruntime.

The exported folder is a run folder of its own (``model.onnx`` + tokenizer + ``config.json`` + ``task.json`` +
``config.yaml`` + ``export.json``), so ``seqtune predict`` and ``seqtune serve`` take it like any run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset

from seqtune import runfolder
from seqtune.errors import SeqtuneError
from seqtune.extras import require
from seqtune.metrics import logits_to_predictions
from seqtune.predict import load_run, logits_for, raw_dataset
from seqtune.runtime import EXPORT_INFO, ONNX_FILE, is_onnx_folder

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
FP32_TOLERANCE = 1e-3  # max |logit difference| an fp32 export may have; more means the graph is wrong
FALLBACK_SENTENCES = (
    "The company said its quarterly profit rose sharply.",
    "A man is playing a guitar on a stage.",
    "The cat sat on the mat.",
    "Shares fell 3 percent in early trading after the report was released on Tuesday morning.",
    "It was okay.",
    "The weather forecast calls for heavy rain and strong winds over the weekend.",
    "She did not like the movie at all.",
    "Researchers found that the new method halves the error rate.",
)


class _LogitsOnly(torch.nn.Module):
    """Positional inputs in, logits out: the graph's signature is then exactly the ONNX model's."""

    def __init__(self, model: torch.nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs, strict=True))).logits


@dataclass
class ExportResult:
    """Where the export went and how it compared to the PyTorch model."""

    output: Path
    quantize: str | None
    validation: dict[str, Any]


def validation_rows(run: Any, data_dir: str | None = None, limit: int | None = None) -> tuple[Dataset, str]:
    """Real inputs to compare on: the run's own dev data when it can be found, else a few fixed sentences."""
    from seqtune.data import load_custom, load_glue

    cfg, task = run.cfg, run.task
    try:
        if cfg.task is not None:
            split = task.eval_splits[0]
            ds, source = load_glue(task, data_dir or cfg.data.data_dir)[split], f"{task.name} {split}"
        else:
            ds, source = load_custom(cfg.data, cfg.seed)[0]["validation"], f"{cfg.data.train_file} validation rows"
    except SeqtuneError as exc:
        ds, source = None, f"fixed sentences (dev data unavailable: {exc})"
    if ds is not None and len(ds) > 0:
        return (ds.select(range(min(limit, len(ds)))) if limit else ds), source

    texts = list(FALLBACK_SENTENCES)
    pairs = texts[1:] + texts[:1] if task.is_pair else None
    return raw_dataset(task, texts, pairs), source if ds is None else "fixed sentences"


def compare_logits(task: Any, reference: np.ndarray, candidate: np.ndarray) -> dict[str, Any]:
    """Max |logit difference| and how often the predicted labels agree (None for regression)."""
    out: dict[str, Any] = {"rows": len(reference), "max_abs_logit_diff": float(np.abs(reference - candidate).max())}
    if task.is_regression:
        out["label_agreement"] = None
    else:  # labels as every consumer makes them (the run's decision threshold included)
        same = logits_to_predictions(task, reference) == logits_to_predictions(task, candidate)
        out["label_agreement"] = float(np.mean(same.reshape(len(same), -1).all(-1)))
    return out


@contextlib.contextmanager
def _quiet_logs(*names: str) -> Iterator[None]:
    """Exporter and quantizer chatter (torchvision not installed, pre-processing advice) off for a moment."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _export_graph(run: Any, example: Dataset, path: Path) -> None:
    """torch.onnx.export (the torch.export-based exporter) with dynamic batch and sequence axes."""
    require("onnxscript", "export")
    from datasets import DatasetDict

    from seqtune.batching import Collator
    from seqtune.encoding import tokenize

    enc = tokenize(DatasetDict(x=example), run.task, run.tokenizer, run.max_length, None, False, False)["x"]
    batch = Collator(run.tokenizer)([enc[i] for i in range(len(enc))])
    names = [n for n in MODEL_INPUTS if n in batch]
    batch_dim, seq_dim = torch.export.Dim("batch"), torch.export.Dim("sequence")
    with warnings.catch_warnings(), _quiet_logs("torch.onnx", "torch.export", "torch._dynamo"):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _LogitsOnly(run.model, names).eval(),
            tuple(batch[n] for n in names),
            str(path),
            input_names=names,
            output_names=["logits"],
            dynamic_shapes=(tuple({0: batch_dim, 1: seq_dim} for _ in names),),  # one entry: the *inputs tuple
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def _quantize_int8(source: Path, target: Path) -> None:
    """Dynamic int8 quantization: int8 weights (per channel, 7-bit range), activations quantized on the fly."""
    onnx = require("onnx", "export")
    require("onnxruntime", "export")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(source))
    # The exporter records intermediate shapes (value_info) that onnxruntime's own shape inference then
    # contradicts ("Inferred shape and existing shape differ"); dropping them lets it infer afresh.
    model.graph.ClearField("value_info")
    cleaned = source.with_name("cleaned.onnx")
    onnx.save(model, str(cleaned))
    with _quiet_logs(""):  # the root logger: "Please consider to run pre-processing before quantization"
        # Per-channel scales, and 7-bit weights (reduce_range): on CPUs without VNNI the int8 kernels' u8 x s8
        # products can saturate at 8 bits. On MiniLM MRPC dev this took label agreement from 98.3% (defaults)
        # to 99.5%.
        quantize_dynamic(str(cleaned), str(target), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    cleaned.unlink()


def _prepare_output(run_dir: Path, output: str | Path | None, quantize: str | None) -> Path:
    out = Path(output) if output else run_dir / ("onnx-int8" if quantize else "onnx")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / EXPORT_INFO).is_file())):
        raise SeqtuneError(f"{out}: exists and is not an earlier export; choose another --output or remove it")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _source_of(export_dir: Path, quantize: str | None) -> Path:
    """The training run behind an fp32 export (which ``--quantize int8`` can quantize without re-exporting)."""
    info = json.loads((export_dir / EXPORT_INFO).read_text()) if (export_dir / EXPORT_INFO).is_file() else {}
    if not quantize or info.get("quantize") or not info.get("source_run"):
        raise SeqtuneError(
            f"{export_dir}: already an ONNX export; pass the run folder that `seqtune train` wrote (or an fp32 "
            "export with --quantize int8)"
        )
    source = Path(info["source_run"])
    if not source.is_dir():
        raise SeqtuneError(f"{export_dir}: its source run {source} is gone, and validation needs it; export again")
    return source


def export_run(
    run_dir: str | Path,
    fmt: str = "onnx",
    quantize: str | None = None,
    output: str | Path | None = None,
    data_dir: str | None = None,
    max_samples: int | None = None,
    min_agreement: float | None = None,
) -> ExportResult:
    """Export a run to ONNX (``quantize="int8"``: dynamic int8) and validate it against the PyTorch model.

    ``run_dir`` is a training run, or an fp32 export to quantize (skipping the slow graph export). Validation
    runs both models on the run's dev data (else a few sentences) and records the max |logit difference| and
    label agreement in ``export.json``. An fp32 export whose logits differ by more than 1e-3, or an export below
    ``min_agreement`` (default 0.99 for int8), raises `SeqtuneError`.

    Example:
        >>> result = export_run("runs/mrpc", quantize="int8")  # doctest: +SKIP
        >>> result.validation["label_agreement"]  # doctest: +SKIP
    """

    if fmt != "onnx":
        raise SeqtuneError(f"export format '{fmt}' is not supported; expected --format onnx")
    if quantize not in (None, "int8"):
        raise SeqtuneError(f"--quantize {quantize}: expected int8 (or leave it out for fp32)")
    path = runfolder.check_is_run(run_dir)
    fp32_export = path if is_onnx_folder(path) else None
    for module in ("onnx", "onnxruntime") if fp32_export else ("onnx", "onnxruntime", "onnxscript"):
        require(module, "export")  # before anything is written
    source = _source_of(path, quantize) if fp32_export else path
    run = load_run(source, precision="fp32")
    out = _prepare_output(source, output, quantize)
    if out.resolve() == path.resolve():
        raise SeqtuneError(f"{out}: the output would overwrite the export it quantizes; choose another --output")
    rows, data = validation_rows(run, data_dir, max_samples)
    if fp32_export is not None:
        _quantize_int8(fp32_export / ONNX_FILE, out / ONNX_FILE)
    elif quantize:
        _export_graph(run, rows.select(range(min(4, len(rows)))), out / "fp32.onnx")
        _quantize_int8(out / "fp32.onnx", out / ONNX_FILE)
        (out / "fp32.onnx").unlink()
    else:
        _export_graph(run, rows.select(range(min(4, len(rows)))), out / ONNX_FILE)
    run.tokenizer.save_pretrained(out)
    run.model.config.save_pretrained(out)
    for name in (runfolder.TASK_FILE, runfolder.CONFIG_FILE):
        if (source / name).is_file():
            shutil.copy2(source / name, out / name)
    exported = load_run(out)
    validation = compare_logits(run.task, logits_for(run, rows), logits_for(exported, rows)) | {"data": data}
    info = {"format": fmt, "quantize": quantize, "source_run": str(source.resolve()), "validation": validation}
    try:
        _check(validation, quantize, 0.99 if min_agreement is None and quantize else min_agreement, out)
    except SeqtuneError as exc:  # leave nothing that predict/serve would load; keep the numbers for a look
        (out / ONNX_FILE).unlink(missing_ok=True)
        (out / EXPORT_INFO).write_text(json.dumps(info | {"rejected": str(exc)}, indent=1))
        raise
    (out / EXPORT_INFO).write_text(json.dumps(info, indent=1))
    return ExportResult(out, quantize, validation)


def _check(validation: dict[str, Any], quantize: str | None, min_agreement: float | None, out: Path) -> None:
    diff, agreement = validation["max_abs_logit_diff"], validation["label_agreement"]
    if not quantize and diff > FP32_TOLERANCE:
        raise SeqtuneError(
            f"{out}: the ONNX model's logits differ from PyTorch's by up to {diff:.3g} (expected <= "
            f"{FP32_TOLERANCE}); the export is wrong for this model (model.onnx removed)"
        )
    if min_agreement is not None and agreement is not None and agreement < min_agreement:
        raise SeqtuneError(
            f"{out}: labels agree with PyTorch on {agreement:.2%} of {validation['rows']} rows, below the "
            f"{min_agreement:.0%} required (model.onnx removed); use the fp32 export, or pass --min-agreement to "
            "accept it"
        )


def describe(result: ExportResult) -> str:
    """One line for the CLI: where the export went and how it compared."""
    v = result.validation
    kind = f"ONNX {result.quantize}" if result.quantize else "ONNX fp32"
    agree = "n/a (regression)" if v["label_agreement"] is None else f"{v['label_agreement']:.2%}"
    return (
        f"exported {kind} -> {result.output}; validated on {v['rows']} rows of {v['data']}: "
        f"max |logit diff| = {v['max_abs_logit_diff']:.2e}, label agreement = {agree}"
    )
