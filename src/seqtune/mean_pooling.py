"""A sequence classifier that reads the attention-masked mean of the encoder's last hidden states.

Sentence-embedding checkpoints (all-MiniLM-L6-v2 and the other sentence-transformers models) were trained with mean
pooling; their [CLS] pooler was never trained. ``model.pooling: mean`` trains this head on them.

This file has no seqtune imports on purpose: ``save_pretrained`` copies it into every run folder it saves
(``auto_map`` in config.json), so the folder loads without seqtune:
``pipeline("text-classification", model=RUN, trust_remote_code=True)``. Without ``trust_remote_code`` transformers
refuses the folder (its ``model_type`` is not a built-in one) rather than loading a [CLS] head that would predict
something else. seqtune itself registers these classes, so ``seqtune predict/serve/export`` need no flag.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

MODEL_TYPE = "seqtune_mean_pooling"
# config.json keys that describe the file rather than the encoder
_OWN_KEYS = ("model_type", "architectures", "auto_map", "transformers_version", "encoder_model_type")


class MeanPoolingConfig(PretrainedConfig):
    """The encoder's own config (flat, so ``hidden_size`` and friends read as usual) and its ``model_type``."""

    model_type = MODEL_TYPE

    def __init__(self, encoder_model_type: str = "bert", **kwargs):
        super().__init__(**kwargs)
        self.encoder_model_type = encoder_model_type

    @classmethod
    def wrap(cls, encoder_config: PretrainedConfig) -> MeanPoolingConfig:
        """The config of a mean-pooling classifier over an encoder with ``encoder_config``."""
        values = {k: v for k, v in encoder_config.to_dict().items() if k not in _OWN_KEYS}
        return cls(encoder_model_type=encoder_config.model_type, **values)

    def encoder_config(self) -> PretrainedConfig:
        values = {k: v for k, v in self.to_dict().items() if k not in _OWN_KEYS}
        return AutoConfig.for_model(self.encoder_model_type, **values)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Average of the hidden states of the real tokens (padding excluded), summed in float32."""
    if attention_mask is None:
        return hidden.float().mean(1).to(hidden.dtype)
    weights = attention_mask.unsqueeze(-1).to(torch.float32)
    pooled = (hidden.float() * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    return pooled.to(hidden.dtype)


class MeanPoolingForSequenceClassification(PreTrainedModel):
    """encoder -> masked mean of the last hidden states -> dropout -> linear: logits (and a loss for ``labels``)."""

    config_class = MeanPoolingConfig
    base_model_prefix = "backbone"
    supports_gradient_checkpointing = True

    def __init__(self, config: MeanPoolingConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.backbone = AutoModel.from_config(config.encoder_config())
        if getattr(self.backbone, "pooler", None) is not None:
            self.backbone.pooler = None  # the [CLS] pooler is not read: no unused parameters to train or sync
        p = next(
            (getattr(config, k) for k in ("classifier_dropout", "hidden_dropout_prob", "dropout")
             if getattr(config, k, None) is not None),
            0.1,
        )  # fmt: skip
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask, **kwargs}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        hidden = self.backbone(**inputs).last_hidden_state
        logits = self.classifier(self.dropout(mean_pool(hidden, attention_mask)))
        loss = None if labels is None else self._loss(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """transformers' convention: ``problem_type`` decides, and is inferred from the labels when unset."""
        kind = self.config.problem_type
        if kind is None and self.num_labels == 1:
            kind = "regression"
        elif kind is None:
            integer = labels.dtype in (torch.long, torch.int)
            kind = "single_label_classification" if integer else "multi_label_classification"
        if kind == "regression":
            return nn.functional.mse_loss(logits.squeeze(-1).float(), labels.float())
        if kind == "single_label_classification":
            return nn.functional.cross_entropy(logits.float(), labels.view(-1))
        return nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())
