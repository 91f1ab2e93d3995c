"""``--lora R``: train low-rank adapters (LoRA, through peft) on the encoder's linear layers, the head in full.

Each adapted linear layer keeps its pretrained weight W fixed and learns ``B @ A`` (rank R, scaled by alpha / R,
alpha = 2R), so no gradient or AdamW state is kept for the encoder's weights (Hu et al. 2021). What trains fully: every
module outside the encoder (the new classification head, and ModernBERT's or DistilBERT's head layers) and the
encoder's own pooler where the head reads it, since those start untrained. The embeddings and layer norms stay fixed.

During the run the model is a `peft.PeftModel`; checkpoints hold its whole state, so ``--resume`` is exact. The
finished run folder holds the merged model (``W + B @ A * alpha / R`` folded into each weight): a plain transformers
folder that ``pipeline()``, predict, serve and export load like any run, with no peft needed to use it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from seqtune.extras import require


def head_modules(model: nn.Module) -> list[str]:
    """Names of the modules that train in full: the model's direct children outside its encoder that hold
    parameters, and the encoder's pooler when it has one.

    Example (BERT with the [CLS] head): ``["classifier", "bert.pooler"]``.
    """
    encoder = getattr(model, "base_model", model)
    names, pooler = [], None
    for name, child in model.named_children():
        if child is encoder:
            pooler = f"{name}.pooler" if isinstance(getattr(encoder, "pooler", None), nn.Module) else None
        elif any(True for _ in child.parameters()):
            names.append(name)
    return names + ([pooler] if pooler else [])


def add_lora(model: nn.Module, rank: int) -> nn.Module:
    """``model`` wrapped for LoRA training: adapters of rank ``rank`` on every linear layer of the encoder (outside
    the head modules), every other encoder weight frozen, the head modules trained in full."""
    peft = require("peft", "lora")
    heads = head_modules(model)
    in_head = tuple(f"{h}." for h in heads)
    targets = [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not (name in heads or name.startswith(in_head))
    ]
    if not targets:
        raise ValueError(f"{type(model).__name__}: no linear layers outside the head to adapt with LoRA")
    config = peft.LoraConfig(
        r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=targets, modules_to_save=heads, bias="none"
    )
    return peft.get_peft_model(model, config)


def is_lora(model: Any) -> bool:
    """Whether ``model`` is a model being trained with adapters (`add_lora`)."""
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


@torch.no_grad()
def merged(model: nn.Module) -> nn.Module:
    """The plain model to save: adapters folded into their weights (a LoRA model is changed in place and must not
    train on); any other model as it is."""
    return model.merge_and_unload() if is_lora(model) else model
