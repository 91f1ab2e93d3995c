"""Where a training step's time goes: `torch.profiler` over seqtune's own step (MiniLM, real length-grouped MRPC
batches of 16, autocast in the chosen precision, fused AdamW, clipping), ops grouped by what they do.

    python benchmarks/step_profile.py --glue-dir ../shared/glue [--precision bf16] [--steps 20] [--dropout 0.1]

Writes ``benchmarks/results/step_profile-<precision>[-amx][-fresh-embedding-grad][-16bit-masks][-clip-in-step]``
``.{json,md}`` (``-16bit-masks``: the step draws dropout masks as CPU training does, fast_dropout.py;
``--torch-dropout`` for PyTorch's own, as every file without that suffix did; ``-clip-in-step``: it clips as
training does,
seqtune.clipping, ``--torch-clip`` for `torch.nn.utils.clip_grad_norm_`, as every file without it did):
per group the share of the step's self CPU time,
and the 15 most expensive ops. Groups: matmuls (mm/addmm/bmm/linear and fused attention), casts and copies,
layer norm, GELU, dropout (random masks and their use), softmax and unfused attention, embedding lookup and its
backward, the optimizer, gradient clipping, everything else.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import torch
from machine import describe
from records import write

RESULTS = Path(__file__).resolve().parent / "results"

GROUPS = [
    ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "flash_attention",
                "scaled_dot_product", "mkldnn")),
    ("casts and copies", ("aten::to", "aten::_to_copy", "aten::copy_", "aten::clone", "aten::contiguous")),
    ("layer norm", ("layer_norm",)),
    ("gelu", ("gelu",)),
    ("dropout", ("bernoulli", "dropout", "aten::mul", "random_", "randint", "aten::ge")),
    ("softmax", ("softmax",)),
    ("embedding", ("embedding",)),
    ("optimizer", ("adam", "optimizer")),
    ("clipping", ("norm", "clip", "aten::stack", "aten::div")),
    ("adds and sums", ("aten::add", "aten::sum", "aten::sub")),
]  # fmt: skip


def group_of(name: str) -> str:
    """The group of a profiler op name (first match in `GROUPS`, else ``other``).

    Example:
        >>> group_of("aten::addmm"), group_of("aten::native_layer_norm_backward"), group_of("aten::foo")
        ('matmul', 'layer norm', 'other')
    """
    low = name.lower()
    for group, keys in GROUPS:
        if any(k.lower() in low for k in keys):
            return group
    return "other"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--glue-dir", default="../shared/glue")
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--dropout", type=float, default=None, help="model.dropout (default: the model's own)")
    p.add_argument("--freeze-embeddings", action="store_true")
    p.add_argument(
        "--torch-dropout",
        action="store_true",
        help="PyTorch's own CPU dropout masks, not the 16-bit ones seqtune's CPU training draws (fast_dropout.py)",
    )
    p.add_argument(
        "--torch-clip",
        action="store_true",
        help="torch.nn.utils.clip_grad_norm_, not seqtune.clipping (the scaling inside the fused AdamW step)",
    )
    p.add_argument(
        "--fresh-embedding-grad",
        action="store_true",
        help="PyTorch's own embedding backward (a new dense gradient every step), not seqtune's reused one",
    )
    args = p.parse_args(argv)

    from seqtune.batching import Collator, column, length_grouped_order, take_rows
    from seqtune.clipping import clip_gradients
    from seqtune.data import load_glue
    from seqtune.embedding_grad import reuse_embedding_grad
    from seqtune.encoding import tokenize
    from seqtune.fast_dropout import FastDropout
    from seqtune.modeling import load_model, load_tokenizer, resolve_model
    from seqtune.param_groups import param_groups
    from seqtune.precision import autocast
    from seqtune.tasks import get_task

    task, path = get_task("mrpc"), resolve_model("minilm")
    tokenizer = load_tokenizer(path)
    encoded = tokenize(load_glue(task, args.glue_dir), task, tokenizer, 512, show_progress=False)["train"]
    order = length_grouped_order(column(encoded, "length"), 16, seed=0, epoch=0)[: args.steps + 3]
    collate = Collator(tokenizer)
    batches = [collate(take_rows(encoded, idxs)) for idxs in order]
    torch.manual_seed(0)
    model = load_model(path, task, dropout=args.dropout)
    hook = None
    if args.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    elif not args.fresh_embedding_grad:
        hook = reuse_embedding_grad(model)  # as seqtune's single-process CPU runs do
    opt = torch.optim.AdamW(param_groups(model, 8e-5, 0.01), lr=8e-5, fused=True)
    model.train()
    cpu = torch.device("cpu")

    def step(batch: dict) -> int:
        labels = batch["labels"]
        with contextlib.nullcontext() if args.torch_dropout else FastDropout():  # as training.train_step does on CPU
            with autocast(cpu, args.precision):
                logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
            loss.backward()
        if args.torch_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        else:  # as training.train_step does
            clip_gradients(model.parameters(), 1.0, opt, hook)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return int(batch["attention_mask"].sum())

    for batch in batches[:3]:  # warm-up: first-call allocations and kernel selection
        step(batch)
    tokens, started = 0, time.perf_counter()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for batch in batches[3:]:
            tokens += step(batch)
    wall = time.perf_counter() - started
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    groups: dict[str, float] = {}
    for e in events:
        groups[group_of(e.key)] = groups.get(group_of(e.key), 0.0) + e.self_cpu_time_total
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:15]
    record = {
        "precision": args.precision,
        "dropout": args.dropout,
        "freeze_embeddings": args.freeze_embeddings,
        "fresh_embedding_grad": args.fresh_embedding_grad,
        "dropout_masks": "torch" if args.torch_dropout else "16-bit",
        "clipping": "torch" if args.torch_clip else "in-step",
        "steps": args.steps,
        "tokens_per_second_profiled": round(tokens / wall),
        "groups": {k: round(v / total, 4) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])},
        "top_ops": [{"op": e.key, "share": round(e.self_cpu_time_total / total, 4), "calls": e.count} for e in top],
        "machine": describe(),
        "date": time.strftime("%Y-%m-%d"),
    }
    amx = "-amx" if record["machine"]["class"] == "amx" else ""  # AMX machines get their own files
    masks = "-16bit-masks" if not args.torch_dropout else ""  # files from before fast_dropout.py had torch's masks
    fresh = "-fresh-embedding-grad" if args.fresh_embedding_grad else ""
    clip = "-clip-in-step" if not args.torch_clip else ""  # files from before seqtune.clipping: torch's clipping
    write(RESULTS / f"step_profile-{args.precision}{amx}{fresh}{masks}{clip}", record, render)
    return 0


def render(r: dict) -> str:
    m = r["machine"]
    lines = [
        f"# Where a {r['precision']} training step's time goes (MiniLM, MRPC batches of 16)",
        "",
        "| group | share of self CPU time |",
        "|---|---|",
        *[f"| {g} | {s:.1%} |" for g, s in r["groups"].items()],
        "",
        "| op | share | calls |",
        "|---|---|---|",
        *[f"| `{o['op']}` | {o['share']:.1%} | {o['calls']} |" for o in r["top_ops"]],
        "",
        f"{r['steps']} profiled steps after 3 warm-up steps, fused AdamW, clipping at 1.0, dropout "
        f"{'the model' + chr(39) + 's own (0.1)' if r['dropout'] is None else r['dropout']}"
        f"{', frozen word embeddings' if r['freeze_embeddings'] else ''}"
        f"{', a fresh word-embedding gradient each step' if r.get('fresh_embedding_grad') else ''}"
        f"{', the word-embedding gradient in a reused buffer' if r.get('fresh_embedding_grad') is False else ''}"
        f"{', 16-bit dropout masks (fast_dropout.py)' if r.get('dropout_masks') == '16-bit' else ''}"
        f"{', PyTorch' + chr(39) + 's dropout masks' if r.get('dropout_masks') == 'torch' else ''}"
        f"{', clipping scaled inside the AdamW step (seqtune.clipping)' if r.get('clipping') == 'in-step' else ''}; "
        f"{r['tokens_per_second_profiled']:,} real "
        f"tokens/s under the profiler. Machine: {m['cpu']} ({', '.join(m['flags'])}), {m['threads']} threads, "
        f"{r['date']}.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
