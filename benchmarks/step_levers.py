"""Measure training-step levers side by side on real MRPC batches with the packaged MiniLM.

Each lever runs the same length-grouped batches (forward, backward, clip, AdamW step) in the same process,
alternating rounds so drift on the machine hits every lever alike, and reports real tokens/s and the ratio to
the baseline. Used to pick seqtune's defaults; see the README's performance section.

    python benchmarks/step_levers.py --glue-dir ../shared/glue [--steps 12] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from seqtune.batching import Collator, length_grouped_order, take_rows
from seqtune.config import TrainConfig
from seqtune.data import load_glue
from seqtune.encoding import tokenize
from seqtune.modeling import load_model, load_tokenizer, resolve_model
from seqtune.tasks import get_task

LEVERS = {
    "baseline (foreach AdamW)": {},
    "fused AdamW": {"fused": True},
    "frozen word embeddings": {"freeze": True},
    "frozen word emb. + fused": {"freeze": True, "fused": True},
    "no dropout": {"dropout": 0.0},
    "no dropout + fused": {"dropout": 0.0, "fused": True},
    "no dropout + frozen + fused": {"dropout": 0.0, "freeze": True, "fused": True},
}


def make(lever: dict, path: str, task):
    torch.manual_seed(0)
    model = load_model(path, task, dropout=lever.get("dropout"))
    if lever.get("freeze"):
        model.get_input_embeddings().weight.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=TrainConfig().lr, fused=lever.get("fused", False) or None)
    model.train()
    return model, opt


def run_steps(model, opt, batches, forward=None) -> tuple[float, int]:
    """Timed training steps; ``forward`` runs the model (e.g. a compiled wrapper), ``model`` owns the parameters."""
    forward = model if forward is None else forward
    tokens, start = 0, time.perf_counter()
    for batch in batches:
        logits = forward(**{k: v for k, v in batch.items() if k != "labels"}).logits
        loss = torch.nn.functional.cross_entropy(logits, batch["labels"])
        loss.backward()
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
    args = ap.parse_args()
    task = get_task("mrpc")
    path = resolve_model("minilm")
    tokenizer = load_tokenizer(path)
    encoded = tokenize(load_glue(task, args.glue_dir), task, tokenizer, 512, show_progress=False)["train"]
    order = length_grouped_order(encoded["length"], args.batch_size, seed=0, epoch=0)[1 : args.steps + 2]
    collate = Collator(tokenizer)
    batches = [collate(take_rows(encoded, idxs)) for idxs in order]
    warmup, timed = batches[0], batches[1:]
    built = {name: make(lever, path, task) for name, lever in LEVERS.items()}
    totals = {name: [0.0, 0] for name in LEVERS}
    for model, opt in built.values():
        run_steps(model, opt, [warmup])
    for _ in range(args.rounds):
        for name, (model, opt) in built.items():
            seconds, tokens = run_steps(model, opt, timed)
            totals[name][0] += seconds
            totals[name][1] += tokens
    base = totals["baseline (foreach AdamW)"][1] / totals["baseline (foreach AdamW)"][0]
    results = {}
    print(f"threads {torch.get_num_threads()}, {args.steps} steps x {args.rounds} rounds, batch {args.batch_size}")
    print("| lever | real tokens/s | vs baseline |\n|---|---|---|")
    for name, (seconds, tokens) in totals.items():
        rate = tokens / seconds
        results[name] = {"tokens_per_second": rate, "ratio": rate / base}
        print(f"| {name} | {rate:,.0f} | {rate / base:.2f}x |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
