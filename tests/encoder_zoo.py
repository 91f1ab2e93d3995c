"""Tiny random encoders of nine architectures, each with a tokenizer of its real kind (WordPiece, byte-level BPE,
Unigram) trained offline on the test sentences with `tokenizers`, saved like any Hugging Face model folder."""

from __future__ import annotations

from pathlib import Path

from conftest import WORDS

SENTENCES = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] + ["happy sad 1.5 ok?", "Ünïcode café"]
SIZES = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
# model type -> (tokenizer class, tokenizer kind)
KINDS = {
    "bert": ("BertTokenizer", "wordpiece"),
    "distilbert": ("DistilBertTokenizer", "wordpiece"),
    "electra": ("ElectraTokenizer", "wordpiece"),
    "mpnet": ("MPNetTokenizer", "wordpiece"),
    "roberta": ("RobertaTokenizer", "bpe"),
    "modernbert": ("RobertaTokenizer", "bpe"),
    "xlm-roberta": ("XLMRobertaTokenizer", "unigram"),
    "albert": ("AlbertTokenizer", "unigram"),
    "deberta-v2": ("DebertaV2Tokenizer", "unigram"),
}
ARCHITECTURES = tuple(KINDS)


def _tokenizer(model_type: str):
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    cls_name, kind = KINDS[model_type]
    cls = getattr(transformers, cls_name)
    if kind == "wordpiece":
        specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        if model_type == "mpnet":
            specials = ["<s>", "<pad>", "</s>", "[UNK]", "<mask>"]
        tok = Tokenizer(models.WordPiece(unk_token=specials[1] if model_type != "mpnet" else "[UNK]"))
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.train_from_iterator(SENTENCES, trainers.WordPieceTrainer(vocab_size=120, special_tokens=specials))
        return cls(vocab=tok.get_vocab())
    if kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
        tok.train_from_iterator(SENTENCES, trainer)
        data = tok.to_str()
        import json

        model = json.loads(data)["model"]
        merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
        return cls(vocab=model["vocab"], merges=merges)
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    specials = {"xlm-roberta": ["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                "albert": ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"],
                "deberta-v2": ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]}[model_type]  # fmt: skip
    unk = next(s for s in specials if "unk" in s.lower())
    tok.train_from_iterator(SENTENCES, trainers.UnigramTrainer(vocab_size=150, special_tokens=specials, unk_token=unk))
    import json

    vocab = [tuple(x) for x in json.loads(tok.to_str())["model"]["vocab"]]
    return cls(vocab=vocab)


def tiny_sizes(model_type: str) -> dict:
    """Config sizes of a 2-layer, 32-wide ``model_type`` (DistilBERT names them its own way)."""
    if model_type == "distilbert":
        return {"dim": 32, "n_layers": 2, "n_heads": 2, "hidden_dim": 64}
    extra = {"albert": {"embedding_size": 16}, "modernbert": {"global_attn_every_n_layers": 1}}.get(model_type, {})
    return {**SIZES, **extra}


def build_encoder(path: Path, model_type: str) -> Path:
    """A tiny random ``model_type`` sequence classifier and its tokenizer in ``path``."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    tokenizer = _tokenizer(model_type)
    sizes = tiny_sizes(model_type)
    ids = {k: getattr(tokenizer, f"{k}_id") for k in ("pad_token", "bos_token", "eos_token", "cls_token", "sep_token")}
    ids = {k: v for k, v in ids.items() if v is not None}
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), max_position_embeddings=66, **sizes,
                                  **{f"{k}_id": v for k, v in ids.items()})  # fmt: skip
    if model_type in ("roberta", "xlm-roberta"):
        config.type_vocab_size = 1
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(path)
    tokenizer.model_max_length = int(1e30)  # the model's positions decide the limit
    tokenizer.save_pretrained(path)
    return path
