"""Which parameters the optimizer updates, and how fast: weight decay groups, layer-wise learning-rate decay, and
re-initialising the top encoder layers before fine-tuning.

A parameter's depth: 0 for the embeddings, ``i + 1`` for encoder layer ``i`` (any name with ``.layer.N.``,
``.layers.N.``, ``.block.N.`` or ``.h.N.``), and ``L + 1`` for everything above the encoder (pooler, head, final
norms). With ``layer_decay`` d < 1 a parameter at depth k trains at ``lr * d ** (L + 1 - k)``: the head at the full
rate, each layer below it a factor d slower (Howard & Ruder 2018; Sun et al. 2019).
"""

from __future__ import annotations

import re
from typing import Any

import torch

_LAYER = re.compile(r"\.(?:layer|layers|block|blocks|h)\.(\d+)\.")


def layer_index(name: str) -> int | None:
    """The encoder layer a parameter belongs to, from its name; ``None`` outside the numbered layers.

    Example:
        >>> layer_index("bert.encoder.layer.4.attention.self.query.weight"), layer_index("classifier.weight")
        (4, None)
    """
    found = _LAYER.search(name)
    return int(found.group(1)) if found else None


def depths(model: torch.nn.Module) -> dict[str, int]:
    """Each trainable parameter's depth (see the module docstring)."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    indices = [i for i in map(layer_index, names) if i is not None]
    top = (max(indices) + 2) if indices else 1
    out = {}
    for name in names:
        index = layer_index(name)
        out[name] = index + 1 if index is not None else (0 if "embed" in name.lower() else top)
    return out


def param_groups(
    model: torch.nn.Module,
    lr: float,
    weight_decay: float,
    layer_decay: float = 1.0,
    scaled: dict[int, float] | None = None,
) -> list[dict]:
    """AdamW parameter groups: no weight decay for biases and norm weights (decaying them only hurts), and with
    ``layer_decay`` < 1 one learning rate per depth.

    ``scaled`` (``id(parameter)`` -> factor): parameters that live in units ``factor`` times those of the rest, a
    regression head in units of the target (`seqtune.modeling.target_scale`). Their rate is multiplied and their
    weight decay divided by the factor, so AdamW moves them exactly as it would move the same head trained on
    targets in units of their spread.

    Example:
        >>> from transformers import BertConfig, BertForSequenceClassification
        >>> m = BertForSequenceClassification(BertConfig(hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
        ...                                                intermediate_size=8, vocab_size=10))
        >>> sorted({g["lr"] for g in param_groups(m, 1.0, 0.01, layer_decay=0.5)})
        [0.125, 0.25, 0.5, 1.0]
    """
    depth = depths(model)
    top = max(depth.values(), default=0)
    scaled = scaled or {}
    groups: dict[tuple[int, bool, float], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decays = not (param.ndim < 2 or "layernorm" in name.lower() or "layer_norm" in name.lower())
        scale = layer_decay ** (top - depth[name]) if layer_decay != 1.0 else 1.0
        units = scaled.get(id(param), 1.0)
        key = (depth[name] if layer_decay != 1.0 else 0, decays, units)
        group = groups.setdefault(key, {"params": [], "weight_decay": weight_decay / units if decays else 0.0,
                                        "lr": lr * scale * units})  # fmt: skip
        group["params"].append(param)
    return list(groups.values())


def reinit_top_layers(model: Any, count: int) -> list[int]:
    """Give the top ``count`` encoder layers fresh weights drawn as the architecture initialises new ones (Zhang et
    al. 2021, "Revisiting few-sample BERT fine-tuning": the top layers of a pretrained model are specialised to its
    pretraining objective). Returns the re-initialised layer indices.

    transformers marks loaded parameters as initialised and its init functions skip those, so the marks are cleared
    first.
    """
    if count <= 0:
        return []
    modules = dict(model.named_modules())
    layers: dict[int, torch.nn.Module] = {}
    for name, module in modules.items():
        found = _LAYER.search(name + ".")
        if found and _LAYER.search(name + ".").end() == len(name) + 1:  # the layer module itself, not a child
            layers[int(found.group(1))] = module
    chosen = sorted(layers)[-count:]
    for index in chosen:
        for module in layers[index].modules():
            module._is_hf_initialized = False
            for param in module.parameters(recurse=False):
                param._is_hf_initialized = False
            model._init_weights(module)
    return chosen
