"""Tokenization (pairs, cache), the padding collator and length-grouped batch order."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset, DatasetDict

from seqtune.batching import Collator, length_grouped_order, padding_share, random_order, sorted_order
from seqtune.data import features_for
from seqtune.encoding import length_profile, tokenize
from seqtune.modeling import load_tokenizer
from seqtune.tasks import get_task


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(str(tiny_model_dir))


def _mrpc_raw() -> DatasetDict:
    task = get_task("mrpc")
    ds = Dataset.from_dict(
        {
            "sentence1": ["A cat sat.", "The quick brown fox jumps over the lazy dog today."],
            "sentence2": ["A cat was sitting.", "Dogs sleep."],
            "label": [1, 0],
            "idx": [0, 1],
        },
        features=features_for(task),
    )
    return DatasetDict(train=ds)


def test_pair_tokenization_marks_the_second_segment(tokenizer, tmp_path):
    enc = tokenize(_mrpc_raw(), get_task("mrpc"), tokenizer, 64, tmp_path)["train"]
    row = enc[0]
    ids, types = row["input_ids"], row["token_type_ids"]
    sep = tokenizer.sep_token_id
    first_sep = ids.index(sep)
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == sep
    assert set(types[: first_sep + 1]) == {0} and set(types[first_sep + 1 :]) == {1}
    assert row["length"] == len(ids) and row["labels"] == 1
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a cat sat. a cat was sitting."


def test_tokenization_is_cached_on_disk(tokenizer, tmp_path):
    task = get_task("mrpc")
    first = tokenize(_mrpc_raw(), task, tokenizer, 64, tmp_path)
    entries = list((tmp_path / "tokenized").iterdir())
    assert len(entries) == 1
    second = tokenize(_mrpc_raw(), task, tokenizer, 64, tmp_path)
    assert second["train"]["input_ids"] == first["train"]["input_ids"]
    assert len(list((tmp_path / "tokenized").iterdir())) == 1  # reused, not re-tokenized
    tokenize(_mrpc_raw(), task, tokenizer, 8, tmp_path)  # another max_length is another entry
    assert len(list((tmp_path / "tokenized").iterdir())) == 2


def test_truncation_and_length_profile(tokenizer, tmp_path):
    enc = tokenize(_mrpc_raw(), get_task("mrpc"), tokenizer, 8, tmp_path)["train"]
    assert max(enc["length"]) == 8
    profile = length_profile([5, 8, 8, 3], 8)
    assert (profile.max, profile.truncated_share) == (8, 0.5)
    assert "50.0% cut at max_length 8" in str(profile)


def test_collator_pads_to_longest_in_batch(tokenizer):
    features = [
        {"input_ids": [101, 7, 102], "attention_mask": [1, 1, 1], "labels": 0, "length": 3, "idx": 0},
        {"input_ids": [101, 7, 8, 9, 102], "attention_mask": [1] * 5, "labels": 1, "length": 5, "idx": 1},
    ]
    batch = Collator(tokenizer)(features)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape == (2, 5)
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["input_ids"][0, 3:].tolist() == [tokenizer.pad_token_id] * 2
    assert Collator(tokenizer, pad_to_multiple_of=8)(features)["input_ids"].shape == (2, 8)
    assert Collator(tokenizer, fixed_length=16)(features)["input_ids"].shape == (2, 16)


def test_length_grouped_order_covers_every_example_once_and_cuts_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 200, size=1000).tolist()
    batches = length_grouped_order(lengths, 16, seed=1, epoch=0)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000))
    assert all(len(b) == 16 for b in batches[:-1] if len(b) != 1000 % 16)
    # deterministic per (seed, epoch), different across epochs: what exact resume relies on
    assert batches == length_grouped_order(lengths, 16, seed=1, epoch=0)
    assert batches != length_grouped_order(lengths, 16, seed=1, epoch=1)
    # the longest batch comes first, so memory problems show at step one
    assert max(lengths[i] for i in batches[0]) == max(lengths)

    def share(order):
        return padding_share([[lengths[i] for i in b] for b in order], [max(lengths[i] for i in b) for b in order])

    grouped, shuffled = share(batches), share(random_order(1000, 16, seed=1, epoch=0))
    assert grouped < 0.1 < shuffled  # grouping removes most padding


def test_sorted_order_is_longest_first():
    batches = sorted_order([3, 9, 1, 7], 2)
    assert batches == [[1, 3], [0, 2]]
