"""Both orders of a symmetric sentence pair (``data.swap_pairs``): augmentation at no extra cost.

In a paraphrase or similarity task (MRPC, QQP, STS-B) the label does not depend on which text comes first, but a
cross-encoder reads ``[CLS] a [SEP] b [SEP]`` and can learn the order. With ``swap_pairs`` the training split is
tokenized a second time with the two texts swapped (the split ``train_swapped``, row for row beside ``train``), and
every epoch each example is read in one of its two orders, drawn from (seed, epoch): the same number of steps and
examples as without, each example seen both ways over the epochs, and a resumed run draws the same orders.

An epoch's batch order holds indices into the two splits laid end to end (``i`` reads ``train[i]``, ``n + i``
reads ``train_swapped[i]``); `rows_of` fetches them. With ``--train-layers`` the feature cache is built over the
same two splits end to end, so its row ``n + i`` holds pair ``i`` swapped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from datasets import Dataset, DatasetDict

from seqtune.batching import take_rows

if TYPE_CHECKING:
    from seqtune.config import RunConfig
    from seqtune.tasks import TaskSpec

SWAPPED = "train_swapped"


def swap_pairs(cfg: RunConfig, task: TaskSpec) -> bool:
    """``data.swap_pairs``, or its automatic value: on for GLUE's paraphrase tasks (``TaskSpec.swap_pairs``: MRPC,
    QQP; on MRPC's carved validation +1.0 points over six seeds, every seed higher), off for STS-B (symmetric too,
    but -0.1 there), for own data (seqtune cannot know whether the order of a user's two texts carries meaning),
    for ``--long-inputs windows`` (whose windows follow one order), and for ``--train-layers`` (its cache then holds
    both orders, but on MRPC's carved validation with the top 3 layers it gave -0.2 over six seeds)."""
    if cfg.data.swap_pairs is not None:
        return cfg.data.swap_pairs
    return task.swap_pairs and cfg.data.long_inputs != "windows" and not cfg.train.train_layers


def with_swapped(raw: DatasetDict, task: TaskSpec) -> DatasetDict:
    """``raw`` plus the training split with its two text columns exchanged, as the split ``train_swapped``."""
    first, second = task.text_columns
    train = raw["train"]
    swapped = train.rename_column(first, "__first").rename_column(second, first).rename_column("__first", second)
    return DatasetDict({**raw, SWAPPED: swapped.select_columns(train.column_names)})


def draw_orders(order: list[list[int]], n: int, seed: int, epoch: int) -> list[list[int]]:
    """The epoch's batches with each example's order drawn: index ``i`` stays (as given) or becomes ``n + i``
    (swapped), each with probability 1/2, a pure function of (seed, epoch)."""
    flips = np.random.default_rng([seed, epoch, 0x5A]).random(n) < 0.5
    return [[i + n * int(flips[i]) for i in batch] for batch in order]


def rows_of(train: Dataset, swapped: Dataset | None, idxs: Sequence[int]) -> list[dict]:
    """The rows behind an epoch's indices (see the module's note), in the order given."""
    if swapped is None:
        return take_rows(train, idxs)
    n = len(train)
    plain = [i for i in idxs if i < n]
    turned = [i - n for i in idxs if i >= n]
    fetched = iter(take_rows(train, plain) if plain else []), iter(take_rows(swapped, turned) if turned else [])
    return [next(fetched[int(i >= n)]) for i in idxs]
