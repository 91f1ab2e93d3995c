"""Tokenize a raw DatasetDict with ``Dataset.map(batched=True)``, cached on disk by content fingerprint.

Output columns: ``input_ids``, ``attention_mask``, ``token_type_ids`` (when the tokenizer makes them),
``labels`` (int, float, or a multi-hot float list) and ``length`` (tokens, used for batching and stats).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from datasets import DatasetDict, Sequence, Value, load_from_disk
from transformers import PreTrainedTokenizerBase

from seqtune.labels import multi_hot
from seqtune.long_inputs import LongInputs
from seqtune.long_inputs import encode as encode_texts
from seqtune.progress import hf_progress
from seqtune.tasks import TaskSpec

ENCODING_VERSION = 1  # bump when the tokenized layout changes, so old caches are not reused


def default_cache_dir() -> Path:
    return Path(os.environ.get("SEQTUNE_CACHE", Path.home() / ".cache" / "seqtune"))


def _fingerprint(
    dd: DatasetDict, task: TaskSpec, tokenizer: PreTrainedTokenizerBase, max_length: int, long: LongInputs
) -> str:
    """Same raw data + same tokenizer + same settings -> same key. `datasets` fingerprints in-memory tables
    by content, and the tokenizer is identified by its full serialized vocabulary and settings."""
    h = hashlib.sha256()
    h.update(
        json.dumps(
            [
                ENCODING_VERSION,
                task.text_columns,
                task.problem_type,
                task.label_names,
                max_length,
                dataclasses.astuple(long),
            ]
        ).encode()  # fmt: skip
    )
    for split, ds in sorted(dd.items()):
        h.update(f"{split}:{ds._fingerprint}:{len(ds)}".encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    h.update(backend.to_str().encode() if backend is not None else repr(tokenizer.get_vocab()).encode())
    h.update(type(tokenizer).__name__.encode())
    return h.hexdigest()[:20]


def _encode_fn(task: TaskSpec, tokenizer: PreTrainedTokenizerBase, max_length: int, long: LongInputs, split: str):
    num_labels = task.num_labels

    def encode(batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        enc = encode_texts(tokenizer, [batch[c] for c in task.text_columns], max_length, long, split == "train")
        labels = multi_hot(batch["label"], num_labels).tolist() if task.is_multi_label else batch["label"]
        if "doc" not in enc:
            enc["labels"] = labels
            return enc
        local = enc["doc"]
        enc["labels"] = [labels[i] for i in local]
        if "idx" in batch:
            enc["idx"] = [batch["idx"][i] for i in local]
        enc["doc"] = [indices[i] for i in local]
        return enc

    return encode


def tokenize(
    dd: DatasetDict,
    task: TaskSpec,
    tokenizer: PreTrainedTokenizerBase,
    max_length: int,
    cache_dir: str | Path | None = None,
    show_progress: bool = True,
    cache: bool = True,
    long: LongInputs | None = None,
    num_proc: int | None = None,
) -> DatasetDict:
    """Tokenize every split (pairs give ``token_type_ids``); reuse the on-disk copy when nothing changed.

    ``cache=False`` keeps the result in memory only (one-off inputs such as texts to predict). ``long``: how inputs
    longer than ``max_length`` are read (`seqtune.long_inputs`; windows: rows are windows, with ``doc``).

    Example:
        >>> encoded = tokenize(load_glue(task, "../shared/glue"), task, tokenizer, 512)  # doctest: +SKIP
        >>> encoded["train"].column_names
        ['input_ids', 'token_type_ids', 'attention_mask', 'length', 'labels']
    """
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    long = long or LongInputs()
    key = _fingerprint(dd, task, tokenizer, max_length, long)
    target = root / "tokenized" / key
    if cache and (target / "dataset_dict.json").is_file():
        with hf_progress(False):
            return load_from_disk(str(target))
    out = DatasetDict()
    with hf_progress(show_progress):
        for split, ds in dd.items():
            out[split] = ds.map(
                _encode_fn(task, tokenizer, max_length, long, split),
                batched=True,
                with_indices=True,
                batch_size=1000,
                # windows change the row count: every input column goes (idx is carried per window)
                remove_columns=[c for c in ds.column_names if c != "idx" or long.mode == "windows"],
                desc=f"Tokenizing {split}",
                num_proc=num_proc if num_proc and num_proc > 1 and len(ds) >= 2 * num_proc else None,
                # The result is cached below as a whole; datasets' own per-map cache of in-memory data is unwanted.
                keep_in_memory=True,
                # Our key already identifies the result; without it datasets hashes the tokenizer (seconds).
                new_fingerprint=f"{key}-{split}",
            )
            if task.is_regression:
                out[split] = out[split].cast_column("labels", Value("float32"))
            elif task.is_multi_label:
                out[split] = out[split].cast_column("labels", Sequence(Value("float32")))
    if not cache:
        return out
    # Write to a temp folder and rename, so a crash never leaves a half-written cache entry behind.
    tmp: Path | None = None
    with hf_progress(False):
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
            out.save_to_disk(str(tmp))
            os.replace(tmp, target)
        except OSError:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)  # another process won the race, or the disk is full
            return out
        return load_from_disk(str(target))


@dataclass
class LengthProfile:
    p50: int
    p95: int
    max: int
    truncated_share: float
    max_length: int

    def __str__(self) -> str:
        return (
            f"tokens per example: p50 {self.p50}, p95 {self.p95}, max {self.max}; "
            f"{self.truncated_share:.1%} cut at max_length {self.max_length}"
        )


def length_profile(lengths: list[int] | np.ndarray, max_length: int) -> LengthProfile:
    """Token-length percentiles and the share of examples that hit ``max_length`` (were truncated)."""
    arr = np.asarray(lengths)
    return LengthProfile(
        p50=int(np.percentile(arr, 50)),
        p95=int(np.percentile(arr, 95)),
        max=int(arr.max()),
        truncated_share=float((arr >= max_length).mean()),
        max_length=max_length,
    )
