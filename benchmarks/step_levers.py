"""Measure training-step levers side by side on real MRPC batches with the packaged MiniLM.

Each lever runs the same length-grouped batches (forward, backward, clip, AdamW step) in the same process,
alternating rounds so drift on the machine hits every lever alike, and reports real tokens/s and the ratio to
the baseline. Used to pick seqtune's defaults; see the README's performance section.

    python benchmarks/step_levers.py --glue-dir ../shared/glue [--steps 12] [--rounds 2] [--precision bf16]

``--precision bf16`` runs every lever under bf16 autocast (what `precision: auto` picks on CPUs with native bf16);
results go to ``benchmarks/results/step_levers-<precision>.{json,md}`` with the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import torch
from machine import describe
from records import write

from seqtune.batching import Collator, column, length_grouped_order, take_rows
from seqtune.config import TrainConfig
from seqtune.data import load_glue
from seqtune.embedding_grad import reuse_embedding_grad
from seqtune.encoding import tokenize
from seqtune.fast_dropout import FastDropout
from seqtune.lora import add_lora
from seqtune.modeling import load_model, load_tokenizer, resolve_model
from seqtune.tasks import get_task

BASELINE = "fused AdamW"
LEVERS = {
    BASELINE: {"fused": True},
    "fused AdamW + reused embedding gradient (seqtune's step)": {"fused": True, "reuse_grad": True},
    "foreach AdamW": {},
    "no attention dropout (fused SDPA kernel)": {"attention_dropout": 0.0, "fused": True},
    "no dropout at all": {"dropout": 0.0, "fused": True},
    "frozen word embeddings": {"freeze": True, "fused": True},
    "no attention dropout + frozen word emb.": {"attention_dropout": 0.0, "freeze": True, "fused": True},
    "LoRA rank 8 (adapters + head train; seqtune --lora 8)": {"lora": 8, "fused": True},
    # no autocast: fp32 weights and activations, oneDNN runs the fp32 matmuls in bf16 (only with --precision bf16)
    "fp32 + oneDNN bf16 matmuls (mkldnn fp32_precision bf16)": {"fused": True, "matmul_precision": "bf16"},
    # bf16 weights, gradients and activations; AdamW steps fp32 master copies (only with --precision bf16)
    "bf16 weights + fp32 master copy": {"fused": True, "master": True, "reuse_grad": True},
    "seqtune's step + 16-bit dropout masks": {"fused": True, "reuse_grad": True, "fast_dropout": True},
    # seqtune.clipping: the embedding's norm over the step's rows, the scaling inside the fused AdamW step
    "seqtune's step + 16-bit masks + clipping in the step": {
        "fused": True,
        "reuse_grad": True,
        "fast_dropout": True,
        "clip_in_step": True,
    },
    "seqtune's step + masks + clipping in the step + frozen word emb.": {
        "fused": True,
        "fast_dropout": True,
        "clip_in_step": True,
        "freeze": True,
    },
}
BF16_ONLY = ("fp32 + oneDNN bf16 matmuls (mkldnn fp32_precision bf16)", "bf16 weights + fp32 master copy")


class MasterAdamW:
    """AdamW over fp32 copies of bf16 parameters: each step takes their bf16 gradients, steps the copies and writes
    them back in bf16 (mixed precision with master weights, no autocast)."""

    def __init__(self, params: list, **kwargs) -> None:
        self.params = params
        self.master = [p.detach().float() for p in params]
        self.opt = torch.optim.AdamW(self.master, **kwargs)

    def step(self) -> None:
        for m, p in zip(self.master, self.params, strict=True):
            m.grad = p.grad.float()
        self.opt.step()
        with torch.no_grad():
            torch._foreach_copy_(self.params, self.master)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None


def make(lever: dict, path: str, task):
    torch.manual_seed(0)
    model = load_model(path, task, dropout=lever.get("dropout"))
    if lever.get("master"):
        model.to(torch.bfloat16)
    if "attention_dropout" in lever:  # only the attention probabilities' dropout: lets SDPA use its fused kernel
        for module in model.modules():
            if hasattr(module, "dropout_prob") or type(module).__name__.endswith("SelfAttention"):
                if hasattr(module, "dropout") and isinstance(module.dropout, torch.nn.Dropout):
                    module.dropout.p = lever["attention_dropout"]
                if hasattr(module, "dropout_prob"):
                    module.dropout_prob = lever["attention_dropout"]
    if lever.get("freeze"):
        model.get_input_embeddings().weight.requires_grad_(False)
    hook = reuse_embedding_grad(model) if lever.get("reuse_grad") else None
    if lever.get("lora"):
        model = add_lora(model, lever["lora"])
    params = [p for p in model.parameters() if p.requires_grad]
    if lever.get("master"):
        return model.train(), MasterAdamW(params, lr=8e-5, fused=True), None
    opt = torch.optim.AdamW(params, lr=8e-5, fused=lever.get("fused", False) or None)
    model.train()
    return model, opt, hook


def run_steps(
    model, opt, batches, forward=None, precision: str = "fp32", clip_in_step: bool = False, embedding_grad=None
) -> tuple[float, int]:
    """Timed training steps; ``forward`` runs the model (e.g. a compiled wrapper), ``model`` owns the parameters.
    ``clip_in_step``: clip as seqtune's training does (seqtune.clipping), with ``embedding_grad`` the reused
    embedding gradient's hook when there is one; else `clip_grad_norm_`."""
    from seqtune.clipping import clip_gradients
    from seqtune.precision import autocast

    forward = model if forward is None else forward
    tokens, start = 0, time.perf_counter()
    for batch in batches:
        with autocast(torch.device("cpu"), precision):
            logits = forward(**{k: v for k, v in batch.items() if k != "labels"}).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), batch["labels"])
        loss.backward()
        if clip_in_step:
            clip_gradients(model.parameters(), 1.0, opt, embedding_grad)
        else:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += int(batch["attention_mask"].sum())
    return time.perf_counter() - start, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--glue-dir", default="../shared/glue")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=TrainConfig().batch_size, help="default: seqtune's")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--only", nargs="*", help="only these levers (name parts) and the baseline; prints only")
    args = ap.parse_args()
    task = get_task("mrpc")
    path = resolve_model("minilm")
    tokenizer = load_tokenizer(path)
    encoded = tokenize(load_glue(task, args.glue_dir), task, tokenizer, 512, show_progress=False)["train"]
    order = length_grouped_order(column(encoded, "length"), args.batch_size, seed=0, epoch=0)[1 : args.steps + 2]
    collate = Collator(tokenizer)
    batches = [collate(take_rows(encoded, idxs)) for idxs in order]
    warmup, timed = batches[0], batches[1:]
    if args.precision != "bf16":  # the oneDNN bf16 and bf16-weight levers are bf16 levers
        for name in BF16_ONLY:
            LEVERS.pop(name)
    if args.only:
        for name in [n for n in LEVERS if n != BASELINE and not any(w in n for w in args.only)]:
            LEVERS.pop(name)
    built = {name: make(lever, path, task) for name, lever in LEVERS.items()}
    totals = {name: [0.0, 0] for name in LEVERS}

    def run(name: str, batches: list) -> tuple[float, int]:
        lever, (model, opt, hook) = LEVERS[name], built[name]
        precision = args.precision
        if "matmul_precision" in lever:
            precision = "fp32"
            torch.backends.mkldnn.matmul.fp32_precision = lever["matmul_precision"]
        try:
            with FastDropout() if lever.get("fast_dropout") else contextlib.nullcontext():
                in_step = lever.get("clip_in_step", False)
                return run_steps(model, opt, batches, precision=precision, clip_in_step=in_step, embedding_grad=hook)
        finally:
            torch.backends.mkldnn.matmul.fp32_precision = "ieee"

    for name in built:
        run(name, [warmup])
    for _ in range(args.rounds):
        for name in built:
            seconds, tokens = run(name, timed)
            totals[name][0] += seconds
            totals[name][1] += tokens
    base = totals[BASELINE][1] / totals[BASELINE][0]
    record = {
        "machine": describe(torch.get_num_threads()),
        "precision": args.precision,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "rounds": args.rounds,
        "date": time.strftime("%Y-%m-%d"),
        "levers": {
            name: {"tokens_per_second": tokens / seconds, "ratio": tokens / seconds / base}
            for name, (seconds, tokens) in totals.items()
        },
    }
    if args.only:  # a subset is a quick look, not the table of record
        print(render(record))
        return
    amx = "-amx" if record["machine"]["class"] == "amx" else ""  # AMX machines get their own files
    write(Path(__file__).resolve().parent / "results" / f"step_levers-{args.precision}{amx}", record, render)


def render(record: dict) -> str:
    """The Markdown table of one run: each lever's real tokens/s and its ratio to the baseline, and the machine."""
    m = record["machine"]
    lines = [
        f"# Step levers, {record['precision']} (MiniLM, real MRPC batches of {record['batch_size']})",
        "",
        "| lever | real tok/s | vs baseline |",
        "|---|---|---|",
        *(f"| {name} | {r['tokens_per_second']:,.0f} | {r['ratio']:.2f}x |" for name, r in record["levers"].items()),
        "",
        f"{record['steps']} steps x {record['rounds']} alternating rounds, same process, {record['precision']}; "
        f"{m['cpu']} ({', '.join(m['flags'])}), {m['threads']} threads, {record['date']}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
