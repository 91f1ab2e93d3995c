"""Freeze-and-cache (``train.train_layers`` K): train only the top K encoder layers and the head.

The embeddings and the layers below the top K are frozen (no gradient, no optimizer state) and run once, in eval
mode, over every training example: their output (the hidden states entering layer ``L - K``) is cached, unpadded,
in a memory-mapped file inside the run's ``checkpoints/`` folder (bf16 when training runs in bf16, else float32).
Each training step then runs only the top K layers and the head on the cached states (`top_only` hands them to
the model as ``inputs_embeds`` with the embeddings bypassed and the layer list cut to its top), so every epoch
after the first pass costs K/L of a full forward and backward. Evaluation, the saved model and everything that
loads it see the whole, ordinary model: the frozen weights are the pretrained ones.

What stays frozen besides the bottom layers: every parameter the bottom uses, i.e. the base model's embeddings
(and ELECTRA's ``embeddings_project``) and the parts of the encoder shared by all layers (DeBERTa's relative
position embeddings, MPNet's relative attention bias). Pooler, final norm and head train.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from seqtune.batching import Collator, column, sorted_order, take_rows
from seqtune.errors import SeqtuneError
from seqtune.precision import autocast

_LAYER_LISTS = ("encoder.layer", "transformer.layer", "layers", "encoder.layers")
_EMBEDDINGS = ("embeddings", "embeddings_project")
_MANIFEST = "features.json"  # written last: its presence marks a complete cache
_ARRAY = "features.npy"


@dataclass
class EncoderLayers:
    base: nn.Module  # the base model (BertModel, ...)
    owner: nn.Module  # the module holding the layer list
    attr: str
    layers: nn.ModuleList


def encoder_layers(model: nn.Module) -> EncoderLayers:
    """The model's list of encoder layers, or a one-line error for architectures without one seqtune can split."""
    base = getattr(model, "base_model", model)
    for path in _LAYER_LISTS:
        owner_path, _, attr = path.rpartition(".")
        owner = getattr(base, owner_path, None) if owner_path else base
        layers = getattr(owner, attr, None) if owner is not None else None
        if isinstance(layers, nn.ModuleList) and len(layers) > 0:
            return EncoderLayers(base, owner, attr, layers)
    kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
    raise SeqtuneError(
        f"--train-layers: {kind} has no list of separate encoder layers to split (ALBERT, for one, shares one "
        "layer's weights across depth); drop --train-layers to fine-tune the whole model"
    )


def freeze_bottom(model: nn.Module, k: int) -> int:
    """Freeze everything the bottom ``L - k`` layers compute with; returns L, the number of encoder layers."""
    split = encoder_layers(model)
    n = len(split.layers)
    if not 1 <= k <= n:
        kind = getattr(model.config, "model_type", "the model")
        raise SeqtuneError(f"--train-layers {k}: {kind} has {n} encoder layers; pass a number from 1 to {n}")
    for name in _EMBEDDINGS:
        module = getattr(split.base, name, None)
        if isinstance(module, nn.Module):
            module.requires_grad_(False)
    if split.owner is not split.base:  # shared by every layer of the encoder (relative positions, ...)
        for name, child in split.owner.named_children():
            if name != split.attr:
                child.requires_grad_(False)
        for param in split.owner.parameters(recurse=False):
            param.requires_grad_(False)
    for layer in split.layers[: n - k]:
        layer.requires_grad_(False)
    return n


def _passthrough(*args: Any, inputs_embeds: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
    """Stands in for the embeddings' forward: hands the cached hidden states (``inputs_embeds``) on unchanged."""
    if inputs_embeds is None:  # called positionally (DistilBERT: embeddings(input_ids, inputs_embeds))
        inputs_embeds = next(a for a in (*args, *kwargs.values()) if torch.is_tensor(a) and a.ndim == 3)
    return inputs_embeds


@contextlib.contextmanager
def top_only(model: nn.Module, k: int) -> Iterator[None]:
    """Inside: ``model(inputs_embeds=H, attention_mask=M)`` runs only the top ``k`` layers (and the head) on ``H``.

    The embeddings stay in the module tree (only their ``forward`` is bypassed), so their buffers do too: a
    distributed model re-reads the buffers it broadcasts at every step."""
    split = encoder_layers(model)
    embeddings = [m for name in _EMBEDDINGS if isinstance(m := split.base._modules.get(name), nn.Module)]
    own = [m.__dict__.get("forward") for m in embeddings]  # an instance-level forward (a wrapper) to put back
    for module in embeddings:
        module.forward = _passthrough
    split.owner._modules[split.attr] = nn.ModuleList(list(split.layers)[len(split.layers) - k :])
    try:
        yield
    finally:
        split.owner._modules[split.attr] = split.layers
        for module, forward in zip(embeddings, own, strict=True):
            if forward is None:
                del module.forward
            else:
                module.forward = forward


def _to_storage(hidden: torch.Tensor, bf16: bool) -> np.ndarray:
    if bf16:
        return hidden.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    return hidden.float().numpy()


@dataclass
class FeatureCache:
    """The frozen bottom's output for every training row, unpadded: rows ``offsets[i]:offsets[i+1]`` of ``array``."""

    array: np.ndarray  # [tokens, hidden], uint16 (bf16 bits) or float32; memory-mapped
    offsets: np.ndarray
    bf16: bool
    k: int
    build_seconds: float = 0.0  # 0 when an existing cache was loaded (a resumed run)

    def batch(self, idxs: list[int], attention_mask: torch.Tensor) -> torch.Tensor:
        """The cached states of rows ``idxs`` padded like ``attention_mask`` ([B, T] -> [B, T, hidden], float32)."""
        out = torch.zeros(*attention_mask.shape, self.array.shape[1], dtype=torch.float32)
        real = attention_mask.bool()
        for j, i in enumerate(idxs):
            rows = torch.from_numpy(np.array(self.array[self.offsets[i] : self.offsets[i + 1]]))
            out[j][real[j]] = (rows.view(torch.bfloat16) if self.bf16 else rows).float()
        return out

    def logits(self, model: nn.Module, unwrapped: nn.Module, idxs: list[int], batch: dict) -> torch.Tensor:
        """The model's logits for a training micro-batch (on ``batch``'s device), through the top layers only."""
        mask = batch["attention_mask"]
        feats = self.batch(idxs, mask.cpu()).to(mask.device)
        with top_only(unwrapped, self.k):
            return model(inputs_embeds=feats, attention_mask=mask).logits


class _Entered(Exception):
    """Raised by `_entering`'s hook to stop a forward pass at the first layer that is not cached."""

    def __init__(self, states: torch.Tensor) -> None:
        self.states = states


@contextlib.contextmanager
def _entering(base: nn.Module, layer: nn.Module) -> Iterator[Any]:
    """Inside: ``run(batch)`` runs ``base`` only up to ``layer`` and returns the hidden states entering it
    (float32, on the CPU): the bottom layers and nothing more, whatever comes after them in the architecture
    (another layer, or a final norm such as ModernBERT's)."""

    def stop(module: nn.Module, args: tuple, kwargs: dict) -> None:
        raise _Entered(args[0] if args else kwargs["hidden_states"])

    def run(batch: dict) -> torch.Tensor:
        try:
            base(**batch)
        except _Entered as entered:
            return entered.states.float().cpu()
        raise RuntimeError("the forward pass never reached the first trained layer")

    handle = layer.register_forward_pre_hook(stop, with_kwargs=True)
    try:
        yield run
    finally:
        handle.remove()


def build_cache(
    model: nn.Module,
    ds: Any,
    collator: Collator,
    k: int,
    folder: Path,
    device: torch.device,
    precision: str,
    batch_size: int = 64,
) -> FeatureCache:
    """Load the cache in ``folder`` when it is complete and matches, else compute it (in eval mode, no gradient)."""
    bf16 = precision == "bf16"
    lengths = column(ds, "length").astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    split = encoder_layers(model)
    n, hidden = len(split.layers), int(model.config.hidden_size)
    want = {"rows": len(lengths), "tokens": int(offsets[-1]), "hidden": hidden, "bf16": bf16, "k": k}
    manifest = folder / _MANIFEST
    if manifest.is_file() and json.loads(manifest.read_text()) == want:
        array = np.load(folder / _ARRAY, mmap_mode="r")
        return FeatureCache(array, offsets, bf16, k)
    started = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    tmp = folder.with_name(f".tmp-{folder.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    array = np.lib.format.open_memmap(
        tmp / _ARRAY, mode="w+", dtype=np.uint16 if bf16 else np.float32, shape=(int(offsets[-1]), hidden)
    )
    was_training = model.training
    model.eval()
    with torch.inference_mode(), autocast(device, precision), _entering(split.base, split.layers[n - k]) as entering:
        for idxs in sorted_order(lengths, batch_size):  # longest first: little padding
            batch = collator(take_rows(ds, idxs))
            batch.pop("labels", None)
            states = entering({key: value.to(device) for key, value in batch.items()})
            real = batch["attention_mask"].bool()
            for j, i in enumerate(idxs):
                array[offsets[i] : offsets[i + 1]] = _to_storage(states[j][real[j]], bf16)
    model.train(was_training)
    array.flush()
    del array
    (tmp / _MANIFEST).write_text(json.dumps(want))
    os.replace(tmp, folder)
    return FeatureCache(
        np.load(folder / _ARRAY, mmap_mode="r"), offsets, bf16, k, build_seconds=time.perf_counter() - started
    )
