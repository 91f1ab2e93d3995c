"""Inputs longer than ``max_length`` tokens: cut them, or read them whole through overlapping windows.

- ``truncate``: keep the first ``max_length`` tokens (the tokenizer's own truncation).
- ``head_tail``: keep the first quarter and the last three quarters of the token budget (Sun et al. 2019, "How to
  fine-tune BERT for text classification?": head + tail beat either alone on long reviews).
- ``windows``: split a long text into windows of ``max_length`` tokens that overlap by ``stride`` tokens. Each window
  is an example with its document's label in training (at most ``max_windows`` per document, evenly spaced); in
  evaluation and prediction every window of a document is scored and the windows' logits are combined into one
  prediction: their mean (single-label, regression) or, per label, their maximum (multi-label: a label that one part
  of a document shows is a label of the document). For pairs the longer text is windowed and the other one, cut to
  at most half the budget, goes with every window.

The encoded rows of a windowed split carry ``doc``: the index of the document (row of the split) each window comes
from; `aggregate` and `doc_labels` turn per-window arrays back into per-document ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from seqtune.batching import column
from seqtune.errors import SeqtuneError

MODES = ("truncate", "head_tail", "windows")
HEAD_SHARE = 0.25  # head_tail: the share of the budget kept from the start of the text


@dataclass(frozen=True)
class LongInputs:
    mode: str = "truncate"
    stride: int | None = None  # windows: tokens shared by consecutive windows; None: a quarter of max_length
    max_windows: int = 8  # windows: most windows of one document used for training (all are used to predict)

    @classmethod
    def of(cls, data: Any) -> LongInputs:
        """The settings of a `DataConfig`."""
        return cls(data.long_inputs, data.stride, data.max_windows)

    def window_stride(self, max_length: int) -> int:
        return self.stride if self.stride is not None else max_length // 4


def encode(
    tokenizer: PreTrainedTokenizerBase,
    columns: list[list[str]],
    max_length: int,
    long: LongInputs | None = None,
    training: bool = False,
) -> dict[str, list]:
    """Token ids, masks and ``length`` for texts (one list) or pairs (two lists): the one tokenizer call that both
    `seqtune.encoding.tokenize` (through ``Dataset.map``) and in-memory prediction use. In ``windows`` mode one row
    per window, with ``doc`` (the index of its text in ``columns``)."""
    long = long or LongInputs()
    if long.mode == "head_tail":
        columns = _head_tail(tokenizer, columns, max_length)
    if long.mode != "windows":
        enc = dict(tokenizer(*columns, truncation=True, max_length=max_length))
    else:
        enc = _windows(tokenizer, columns, max_length, long, training)
    enc["length"] = [len(ids) for ids in enc["input_ids"]]
    return enc


def aggregate(logits: np.ndarray, doc: list[int] | np.ndarray, multi_label: bool) -> np.ndarray:
    """Per-window logits -> one row per document (in order of first appearance, which is the documents' order):
    the mean, or for multi-label the per-label maximum.

    Example:
        >>> aggregate(np.array([[1.0, 3.0], [3.0, 1.0], [0.0, 5.0]]), [0, 0, 1], multi_label=False)
        array([[2., 2.],
               [0., 5.]], dtype=float32)
    """
    doc = np.asarray(doc)
    _, first, inverse = np.unique(doc, return_index=True, return_inverse=True)
    order = np.argsort(first)  # documents in the order they appear
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    slot = rank[inverse]
    out = np.zeros((len(first), logits.shape[1]), dtype=np.float32)
    if multi_label:
        out[:] = -np.inf
        np.maximum.at(out, slot, logits)
        return out
    np.add.at(out, slot, logits)
    return out / np.bincount(slot, minlength=len(first))[:, None]


def doc_labels(labels: np.ndarray, doc: list[int] | np.ndarray | None) -> np.ndarray:
    """Per-window labels -> one per document (every window carries its document's label)."""
    if doc is None:
        return labels
    _, first = np.unique(np.asarray(doc), return_index=True)
    return labels[np.sort(first)]


def per_document(ds: Any, logits: np.ndarray | None, multi_label: bool) -> tuple[np.ndarray | None, np.ndarray]:
    """A tokenized split's logits (when given) and labels, one row per document (windows combined)."""
    labels = column(ds, "labels")
    if "doc" not in ds.column_names:
        return logits, labels
    doc = column(ds, "doc")
    return (aggregate(logits, doc, multi_label) if logits is not None else None), doc_labels(labels, doc)


def _token_offsets(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[tuple[int, int]]]:
    # verbose=False: these whole-text counts are longer than the model takes by design; no "too long" warning
    return tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]


def _cut(text: str, offsets: list[tuple[int, int]], budget: int, head_share: float) -> str:
    """``text`` shortened to about ``budget`` tokens: its first ``head_share`` of them and the rest from its end,
    cut at token boundaries (the tokenizer's character offsets)."""
    if len(offsets) <= budget:
        return text
    head = int(budget * head_share)
    tail = max(budget - head, 0)
    head_end = offsets[head - 1][1] if head > 0 else 0
    tail_start = offsets[len(offsets) - tail][0] if tail > 0 else len(text)
    return (text[:head_end] + " " + text[tail_start:]).strip()


def _head_tail(tokenizer: PreTrainedTokenizerBase, columns: list[list[str]], max_length: int) -> list[list[str]]:
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=len(columns) == 2)
    offsets = [_token_offsets(tokenizer, col) for col in columns]
    if len(columns) == 1:
        return [[_cut(t, o, budget, HEAD_SHARE) for t, o in zip(columns[0], offsets[0], strict=True)]]
    firsts, seconds = [], []
    for a, b, oa, ob in zip(columns[0], columns[1], offsets[0], offsets[1], strict=True):
        if len(oa) >= len(ob):  # cut the longer text; the tokenizer's truncation finishes any remainder
            firsts.append(_cut(a, oa, max(budget - len(ob), budget // 2), HEAD_SHARE))
            seconds.append(b)
        else:
            firsts.append(a)
            seconds.append(_cut(b, ob, max(budget - len(oa), budget // 2), HEAD_SHARE))
    return [firsts, seconds]


def _windows(
    tokenizer: PreTrainedTokenizerBase, columns: list[list[str]], max_length: int, long: LongInputs, training: bool
) -> dict[str, list]:
    pair = len(columns) == 2
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=pair)
    stride = long.window_stride(max_length)
    room = budget // 2 if pair else budget  # tokens of the windowed text in each window (at least)
    if not 0 <= stride < room:
        raise SeqtuneError(
            f"data.stride: {stride} tokens of overlap leave no room to move on in windows of {max_length} tokens; "
            f"use a stride below {room}"
        )
    n = len(columns[0])
    if not pair:
        groups = [(list(range(n)), columns, True)]
    else:  # window the longer text; the other, cut to half the budget at most, goes with every window
        offsets = [_token_offsets(tokenizer, col) for col in columns]
        first_longer = [len(a) >= len(b) for a, b in zip(*offsets, strict=True)]
        half = budget // 2
        cut = [
            [_cut(t, o, half, 1.0) for t, o in zip(col, offs, strict=True)]
            for col, offs in zip(columns, offsets, strict=True)
        ]
        groups = []
        for longer_first in (True, False):
            rows = [i for i in range(n) if first_longer[i] == longer_first]
            a = [columns[0][i] if longer_first else cut[0][i] for i in rows]
            b = [cut[1][i] if longer_first else columns[1][i] for i in rows]
            groups.append((rows, [a, b], longer_first))
    windows: list[tuple[int, int, dict[str, Any]]] = []  # (document, window number, row)
    for rows, cols, longer_first in groups:
        if not rows:
            continue
        truncation = True if not pair else ("only_first" if longer_first else "only_second")
        enc = tokenizer(*cols, truncation=truncation, max_length=max_length, stride=stride,
                        return_overflowing_tokens=True)  # fmt: skip
        mapping = enc.pop("overflow_to_sample_mapping")
        keys = [k for k in enc if k != "overflowing_tokens" and k != "num_truncated_tokens"]
        seen: dict[int, int] = {}
        for w, local in enumerate(mapping):
            number = seen[local] = seen.get(local, -1) + 1
            windows.append((rows[local], number, {k: enc[k][w] for k in keys}))
    windows.sort(key=lambda item: (item[0], item[1]))
    if training:
        windows = _cap(windows, long.max_windows)
    out: dict[str, list] = {k: [row[k] for _, _, row in windows] for k in (windows[0][2] if windows else {})}
    out["doc"] = [d for d, _, _ in windows]
    return out


def _cap(windows: list[tuple[int, int, dict]], most: int) -> list[tuple[int, int, dict]]:
    """At most ``most`` windows per document, evenly spaced over it (first and last included)."""
    by_doc: dict[int, list[tuple[int, int, dict]]] = {}
    for item in windows:
        by_doc.setdefault(item[0], []).append(item)
    out = []
    for items in by_doc.values():
        if len(items) > most:
            keep = sorted(set(np.linspace(0, len(items) - 1, most).round().astype(int).tolist()))
            items = [items[i] for i in keep]
        out += items
    return out


def describe(ds: Any, mode: str, max_length: int) -> str:
    """The training split's long texts in one line: how many were cut (truncate, head_tail) or windowed."""
    if "doc" in ds.column_names:
        return f"windows: {summary(column(ds, 'doc'), max_length)}"
    lengths = column(ds, "length")
    how = "cut to their first tokens" if mode == "truncate" else "cut to their first and last tokens"
    return f"{mode}: {(lengths >= max_length).mean():.1%} of {len(lengths):,} training texts {how} at {max_length}"


def summary(doc: list[int] | np.ndarray, max_length: int) -> str:
    """One line on how a windowed split looks: documents, windows, and the share of documents read in several."""
    counts = np.bincount(np.unique(np.asarray(doc), return_inverse=True)[1])
    return (
        f"{len(counts):,} documents -> {int(counts.sum()):,} windows of up to {max_length} tokens; "
        f"{(counts > 1).mean():.1%} of documents in more than one (most {int(counts.max())})"
    )
