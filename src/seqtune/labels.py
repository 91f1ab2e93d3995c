"""Labels of own data: the problem type a label column implies, label names, and one label per row.

Labels are strings or numbers (multi-label: lists of them, or one delimited string). A missing label is null, an
empty string or a float NaN; anything else that is not a label (a JSON object, a list where one label is
expected, a word among regression targets) is an error naming the row.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from seqtune.errors import SeqtuneError
from seqtune.readers import Table, clip


def is_number(value: Any) -> bool:
    """A finite number, or a string that reads as one (booleans are not numbers here)."""
    if isinstance(value, bool):
        return False
    # Finite only: "inf" is no usable target, and int(float("inf")) would crash label handling.
    if isinstance(value, int | float):
        return math.isfinite(value)
    try:
        return math.isfinite(float(str(value)))
    except ValueError:
        return False


_PROBLEM_TYPES = {
    "single_label": "single_label_classification",
    "multi_label": "multi_label_classification",
    "regression": "regression",
} | {v: v for v in ("single_label_classification", "multi_label_classification")}


def infer_problem_type(table: Table, label_col: str, requested: str, delimiter: str) -> str:
    """The transformers problem type: as requested, or for ``auto`` read off the label column."""
    if requested != "auto":
        if requested not in _PROBLEM_TYPES:
            raise SeqtuneError(
                f"unknown problem type {requested!r}; expected auto, single_label, multi_label or regression "
                "(--problem-type)"
            )
        return _PROBLEM_TYPES[requested]
    values = [r[label_col] for r in table.rows]
    if any(isinstance(v, list) for v in values):
        return "multi_label_classification"
    fractions = [v for v in values if is_number(v) and float(v) != int(float(v))]
    if not fractions:
        return "single_label_classification"
    # Non-integer numbers mean regression; a stray 'NaN' or 'high' among them must not silently turn the column
    # into a classifier with one class per distinct number.
    for i, v in enumerate(values):
        if not is_number(v) and not is_missing(v):
            raise SeqtuneError(
                f"{table.where(i)}: {clip(v)} in column '{label_col}' is not a number, but other rows hold numbers "
                f"like {clip(fractions[0], 20)} (regression targets); fix the value or remove the row, or pass "
                "--problem-type single_label to treat every value as a class name"
            )
    return "regression"


def is_missing(value: Any) -> bool:
    """An absent label: null, an empty string, or a float NaN (JSON ``NaN``, a pandas export's missing value)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return isinstance(value, str) and not value.strip()


def empty_label(table: Table, i: int, label_col: str) -> SeqtuneError:
    """The error for a row without a label (NaN named, since the file shows a value there)."""
    nan = " (NaN)" if isinstance(v := table.rows[i][label_col], float | str) and str(v).strip().lower() == "nan" else ""
    return SeqtuneError(f"{table.where(i)}: empty label{nan} in column '{label_col}'; fill it or remove the row")


def label_value(table: Table, i: int, label_col: str, problem: str) -> Any:
    """Row ``i``'s label, ``None`` when missing; labels must be strings, numbers or (multi-label) lists of them."""
    value = table.rows[i][label_col]
    if is_missing(value):
        return None
    items = value if isinstance(value, list) else [value]
    if isinstance(value, dict) or any(isinstance(x, list | dict) for x in items):
        raise SeqtuneError(
            f"{table.where(i)}: label {clip(value)} in column '{label_col}' is a JSON "
            f"{'object' if isinstance(value, dict) else 'nested list'}, expected a label name or number"
            f"{' or a list of them' if problem == 'multi_label_classification' else ''}; write the label as a string"
        )
    if isinstance(value, list) and problem != "multi_label_classification":
        raise SeqtuneError(
            f"{table.where(i)}: label {clip(value)} in column '{label_col}' is a list, expected one label per row "
            f"for {problem.split('_classification')[0].replace('_', '-')}; pass --multi-label for several labels"
        )
    return value


def label_items(value: Any, delimiter: str) -> list[str]:
    """A multi-label value (a list, or one string split at ``delimiter``) as stripped, non-empty label names."""
    if isinstance(value, list):
        return [str(v).strip() for v in value]
    return [p.strip() for p in str(value).split(delimiter) if p.strip()]


def label_key(value: Any) -> str:
    """Labels as strings; numeric labels like 1 and 1.0 and "1" are one label."""
    if is_number(value) and float(value) == int(float(value)):
        return str(int(float(value)))
    return str(value).strip()


def label_id(names: tuple[str, ...], key: str, allow_ids: bool) -> int | None:
    """The class id of label ``key``: its position in ``names``; with ``allow_ids`` (GLUE files and the hub's
    copies give ids, not names) also a decimal id below ``len(names)``. ``None`` when it is neither."""
    if key in names:
        return names.index(key)
    if allow_ids and key.isdecimal() and int(key) < len(names):
        return int(key)
    return None


def label_names(table: Table, label_col: str, problem: str, delimiter: str) -> tuple[str, ...]:
    """Every label of the training file, sorted (numbers in numeric order): the label ids are their positions."""
    seen: set[str] = set()
    for i in range(len(table.rows)):
        value = label_value(table, i, label_col, problem)
        if value is None:
            if problem != "multi_label_classification":
                raise empty_label(table, i, label_col)
            continue
        seen.update(label_items(value, delimiter) if problem == "multi_label_classification" else [label_key(value)])
    if not seen:
        raise SeqtuneError(f"{table.path}: column '{label_col}' holds no labels at all; expected label names per row")
    # Numeric labels keep numeric order (2 before 10, 1.5 before 10.5), so label ids match what users expect.
    if all(is_number(s) for s in seen):
        return tuple(sorted(seen, key=float))
    return tuple(sorted(seen))


def unlabeled(is_multi_label: bool, is_regression: bool) -> Any:
    """The label stored for a row without one (unlabeled test data, texts to predict)."""
    return [] if is_multi_label else (-1.0 if is_regression else -1)


def multi_hot(rows: list[list[int]], num_labels: int) -> np.ndarray:
    """Label ids per row -> float32 multi-hot rows (what multi-label losses and metrics take)."""
    hot = np.zeros((len(rows), num_labels), dtype=np.float32)
    for row, ids in enumerate(rows):
        hot[row, ids] = 1.0
    return hot
