"""Load a task's raw data as a `datasets.DatasetDict`: GLUE from a local folder or the hub, or own files.

Every split has the task's text columns, ``label`` (``ClassLabel``, a list of them for multi-label, float for
regression; -1 / empty on unlabeled test splits) and ``idx`` (the row id GLUE submissions use).
"""

from __future__ import annotations

import csv
import io
import math
import os
import socket
import threading
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value
from datasets.utils.stratify import stratified_shuffle_split_generate_indices

from seqtune.config import DataConfig
from seqtune.errors import SeqtuneError
from seqtune.labels import (
    empty_label,
    infer_problem_type,
    is_missing,
    is_number,
    label_id,
    label_items,
    label_key,
    label_names,
    label_value,
    unlabeled,
)
from seqtune.readers import Table, cell_text, clip, read_table, read_text, require_columns
from seqtune.tasks import CUSTOM_TEXT, CUSTOM_TEXT_PAIR, GlueFile, TaskSpec, custom_task

GLUE_FOLDERS = {
    "cola": "CoLA",
    "sst2": "SST-2",
    "mrpc": "MRPC",
    "stsb": "STS-B",
    "qqp": "QQP",
    "mnli": "MNLI",
    "qnli": "QNLI",
    "rte": "RTE",
    "wnli": "WNLI",
}
HUB_DATASET = "nyu-mll/glue"


def features_for(task: TaskSpec) -> Features:
    """The `datasets` features of a task's raw splits."""
    cols: dict[str, Any] = {c: Value("string") for c in task.text_columns}
    if task.is_regression:
        cols["label"] = Value("float32")
    elif task.is_multi_label:
        cols["label"] = Sequence(ClassLabel(names=list(task.label_names or ())))
    else:
        cols["label"] = ClassLabel(names=list(task.label_names or ()))
    cols["idx"] = Value("int64")
    return Features(cols)


# ---------------------------------------------------------------- GLUE, local folder in GLUE's TSV layout


def _glue_label(task: TaskSpec, raw: str, where: str) -> int | float:
    raw = raw.strip()
    if task.is_regression:
        try:
            return float(raw)
        except ValueError:
            raise SeqtuneError(f"{where}: score '{raw}' is not a number; fix or remove the row") from None
    names = task.label_names or ()
    label = label_id(names, raw, allow_ids=True)
    if label is not None:
        return label
    raise SeqtuneError(f"{where}: label '{raw}' is not in the label set {list(names)}; fix or remove the row")


def read_glue_file(path: Path, spec: GlueFile, task: TaskSpec) -> dict[str, list]:
    """Read one GLUE TSV: quoting off (texts contain stray quotes), BOM stripped, header by name or position."""
    if not path.is_file():
        raise SeqtuneError(f"{path}: file not found; expected GLUE's layout <data-dir>/{path.parent.name}/{path.name}")
    # read_text: one clear error for binary / non-UTF-8 files; newline="" keeps \u2028 etc. inside a text.
    rows = list(csv.reader(io.StringIO(read_text(path), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE))
    header: list[str] = [h.strip() for h in rows[0]] if spec.header and rows else []
    body = rows[1:] if spec.header else rows
    if not any(body):
        found = "only a header" if rows else "an empty file"
        raise SeqtuneError(f"{path}: expected GLUE's TSV with data rows, found {found}; re-download the task's files")

    def position(name: str | int) -> int:
        if isinstance(name, int):
            return name
        if name not in header:
            raise SeqtuneError(f"{path}: missing column '{name}'; found columns {header}; is this the right task?")
        return header.index(name)

    text_pos = [position(n) for n in spec.text_fields]
    label_pos = position(spec.label_field) if spec.label_field is not None else None
    idx_pos = header.index("index") if "index" in header else None
    out: dict[str, list] = {c: [] for c in task.text_columns} | {"label": [], "idx": []}
    first_line = 2 if spec.header else 1
    for n, row in enumerate(body):
        if not row:
            continue
        where = f"{path} line {n + first_line}"
        needed = max(text_pos + ([label_pos] if label_pos is not None else []))
        if len(row) <= needed:
            raise SeqtuneError(f"{where}: expected at least {needed + 1} tab-separated fields, found {len(row)}")
        for col, pos in zip(task.text_columns, text_pos, strict=True):
            out[col].append(row[pos])
        if label_pos is None:
            out["label"].append(-1.0 if task.is_regression else -1)
        else:
            out["label"].append(_glue_label(task, row[label_pos], where))
        out["idx"].append(_glue_index(row[idx_pos], where) if idx_pos is not None else len(out["idx"]))
    return out


def _glue_index(raw: str, where: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SeqtuneError(f"{where}: column 'index' holds {raw!r}, expected an integer row id; fix the row") from None


def resolve_glue_dir(task: TaskSpec, data_dir: str | None) -> Path | None:
    """The task's folder inside a local GLUE copy, or ``None`` when no local copy is configured."""
    base = data_dir or os.environ.get("SEQTUNE_GLUE_DIR")
    if not base:
        return None
    root = Path(base).expanduser()
    folder = GLUE_FOLDERS[task.name]
    for candidate in (root / folder, root / folder.lower(), root / task.name, root):
        if candidate.is_dir() and any((candidate / f.filename).is_file() for f in task.glue_files.values()):
            return candidate
    raise SeqtuneError(
        f"{root}: no {folder} data found; expected {root / folder}/{{train,dev,test}}.tsv in GLUE's layout "
        "(pass the folder that contains the task folders as --data-dir)"
    )


def load_glue_local(task: TaskSpec, folder: Path, splits: list[str] | None = None) -> DatasetDict:
    """Every split of a task whose file exists in ``folder`` (or just ``splits``, which must exist)."""
    features = features_for(task)
    out = DatasetDict()
    for split, spec in task.glue_files.items():
        path = folder / spec.filename
        if splits is not None and split not in splits:
            continue
        if not path.is_file() and splits is None:
            continue
        out[split] = Dataset.from_dict(read_glue_file(path, spec, task), features=features)
    return out


# ---------------------------------------------------------------- GLUE from the hub


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() not in ("0", "", "false", "no", "off")


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers within ``timeout`` seconds (DNS included, which can hang)."""
    if _hub_offline():
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").split("://")[-1].split("/")[0]
    host, _, port = endpoint.partition(":")
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, int(port or 443)), timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def load_glue_hub(task: TaskSpec) -> DatasetDict:
    if not hub_reachable():
        why = "offline mode is on (HF_HUB_OFFLINE)" if _hub_offline() else "the Hugging Face hub is unreachable"
        raise SeqtuneError(
            f"no local GLUE data and {why}: pass --data-dir DIR (a folder with "
            f"{GLUE_FOLDERS[task.name]}/train.tsv, dev.tsv, test.tsv) or set SEQTUNE_GLUE_DIR"
        )
    ds = datasets.load_dataset(HUB_DATASET, task.hub_config)
    return DatasetDict({split: ds[split].cast(features_for(task)) for split in ds})


def load_glue(task: TaskSpec, data_dir: str | None = None) -> DatasetDict:
    """A GLUE task as a DatasetDict: from ``data_dir`` / ``SEQTUNE_GLUE_DIR`` when given, else from the hub.

    Example:
        >>> dd = load_glue(get_task("mrpc"), "../shared/glue")  # doctest: +SKIP
        >>> dd["validation"].features["label"].names
        ['not_equivalent', 'equivalent']
    """
    folder = resolve_glue_dir(task, data_dir)
    return load_glue_local(task, folder) if folder is not None else load_glue_hub(task)


# ---------------------------------------------------------------- own data


def _convert(table: Table, task: TaskSpec, cols: dict[str, str], label_col: str | None, delimiter: str) -> Dataset:
    out: dict[str, list] = {c: [] for c in task.text_columns} | {"label": [], "idx": []}
    names = task.label_names or ()
    for i in range(len(table.rows)):
        for target, source in cols.items():
            out[target].append(cell_text(table, i, source))
        value = label_value(table, i, label_col, task.problem_type) if label_col else None
        if label_col is None:  # an unlabeled split (test)
            label: Any = unlabeled(task.is_multi_label, task.is_regression)
        elif value is None:
            if not task.is_multi_label:  # multi-label rows may carry no label at all
                raise empty_label(table, i, label_col)
            label = []
        elif task.is_regression:
            if not is_number(value):
                raise SeqtuneError(
                    f"{table.where(i)}: regression target {clip(value)} in column '{label_col}' is not a number; "
                    "fix the value or remove the row"
                )
            label = float(value)
        elif task.is_multi_label:
            items = label_items(value, delimiter)
            unknown = [x for x in items if x not in names]
            if unknown:
                raise SeqtuneError(
                    f"{table.where(i)}: label {clip(unknown[0])} is not in the label set from the training file "
                    f"{list(names)}; fix the label or add training examples for it"
                )
            label = sorted(names.index(x) for x in items)
        else:
            key = label_key(value)
            label = label_id(names, key, allow_ids=task.name != "custom")
            if label is None:
                raise SeqtuneError(
                    f"{table.where(i)}: label {clip(key)} is not in the label set from the training file "
                    f"{list(names)}; fix the label or add training examples for it"
                )
        out["label"].append(label)
        out["idx"].append(i)
    return Dataset.from_dict(out, features=features_for(task))


def read_split(
    path: str | Path,
    task: TaskSpec,
    cols: dict[str, str],
    label_col: str | None,
    delimiter: str = ",",
    flags: dict[str, str] | None = None,
) -> Dataset:
    """One labeled (or, with ``label_col=None``, unlabeled) file as a split of ``task``.

    ``cols`` maps the task's text columns to the file's columns; labels must be in the task's label set.
    ``flags`` maps a file column to the flag that names it, for the missing-column message.
    """
    table = read_table(path)
    wanted = [*cols.values(), *([label_col] if label_col else [])]
    require_columns(table, {c: (flags or {}).get(c, f"a file with the column '{c}'") for c in wanted})
    return _convert(table, task, cols, label_col, delimiter)


def load_custom(cfg: DataConfig, seed: int = 42) -> tuple[DatasetDict, TaskSpec]:
    """Own data files -> (DatasetDict with train/validation[/test], the TaskSpec built from them).

    Example:
        >>> dd, task = load_custom(DataConfig(train_file="tickets.csv", text_column="body", label_column="team"))
        ... # doctest: +SKIP
    """
    if cfg.train_file is None:
        raise SeqtuneError("no training data: pass --train-file (CSV, TSV, JSONL or Parquet)")
    flags = {cfg.text_column: "--text-column", cfg.label_column: "--label-column"}
    if cfg.text_pair_column:
        flags[cfg.text_pair_column] = "--text-pair-column"
    train = read_table(cfg.train_file)
    require_columns(train, flags)
    problem = infer_problem_type(train, cfg.label_column, cfg.problem_type, cfg.label_delimiter)
    names = None if problem == "regression" else label_names(train, cfg.label_column, problem, cfg.label_delimiter)
    if names is not None and len(names) < 2 and problem == "single_label_classification":
        raise SeqtuneError(
            f"{train.path}: column '{cfg.label_column}' has a single label {list(names)}; a classifier needs at "
            "least two (for numeric targets pass --problem-type regression)"
        )
    task = custom_task(pair=cfg.text_pair_column is not None, problem_type=problem, label_names=names)  # type: ignore[arg-type]
    cols = {CUSTOM_TEXT: cfg.text_column}
    if cfg.text_pair_column:
        cols[CUSTOM_TEXT_PAIR] = cfg.text_pair_column
    out = DatasetDict(train=_convert(train, task, cols, cfg.label_column, cfg.label_delimiter))
    if cfg.validation_file:
        out["validation"] = read_split(cfg.validation_file, task, cols, cfg.label_column, cfg.label_delimiter, flags)
    else:
        out["train"], out["validation"] = hold_out(out["train"], cfg, problem, seed)
    if cfg.test_file:
        table = read_table(cfg.test_file)
        require_columns(table, {c: f for c, f in flags.items() if c != cfg.label_column})
        # No label column, or one left empty on every row (a common export), means an unlabeled test file.
        labeled = cfg.label_column in table.columns and any(not is_missing(r[cfg.label_column]) for r in table.rows)
        label_col = cfg.label_column if labeled else None
        out["test"] = _convert(table, task, cols, label_col, cfg.label_delimiter)
    return out, task


def hold_out(train: Dataset, cfg: DataConfig, problem: str, seed: int) -> tuple[Dataset, Dataset]:
    """Seeded split of the training rows into train / validation, stratified by label when possible (the seed:
    ``cfg.split_seed``, else ``seed``)."""
    seed = cfg.split_seed if cfg.split_seed is not None else seed
    where = cfg.train_file or "the training split"
    fraction = cfg.validation_fraction
    if not 0 < fraction < 1:
        raise SeqtuneError(f"validation fraction {fraction} is not between 0 and 1; pass e.g. 0.1 or --validation-file")
    if len(train) < 2:
        raise SeqtuneError(
            f"{where}: {len(train)} row(s) is too few to hold out validation rows; "
            "add examples or pass --validation-file"
        )
    n_test = math.ceil(fraction * len(train))
    if n_test >= len(train):
        raise SeqtuneError(
            f"{where}: holding out {fraction:.0%} of {len(train)} row(s) leaves none to train on; "
            "add examples, lower data.validation_fraction or pass --validation-file"
        )
    train_rows, held_rows = split_indices(
        train.with_format("arrow")[:]["label"].to_numpy() if problem == "single_label_classification" else None,
        len(train) - n_test,
        n_test,
        seed,
    )
    return train.select(train_rows), train.select(held_rows)


def split_indices(labels: np.ndarray | None, n_train: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of a seeded train / held-out split, stratified by ``labels`` when given and possible: the rows
    ``Dataset.train_test_split(seed=seed, stratify_by_column=...)`` picks, computed from the label column in one
    array (datasets reads the column row by row: a 100,000-row file took 10.9 s to read with it, 2.3 s without)."""
    if labels is not None:
        try:
            return next(
                stratified_shuffle_split_generate_indices(labels, n_train, n_test, rng=np.random.default_rng(seed))
            )
        except ValueError:  # a class too rare to stratify: a plain seeded split
            pass
    permutation = np.random.default_rng(seed).permutation(n_train + n_test)
    return permutation[n_test:], permutation[:n_test]


def select_samples(dd: DatasetDict, task: TaskSpec, max_train: int | None, max_eval: int | None) -> DatasetDict:
    """Keep the first N rows of train / each evaluation split (quick runs)."""
    out = DatasetDict()
    for split, ds in dd.items():
        limit = max_train if split == "train" else max_eval if split in task.eval_splits else None
        out[split] = ds.select(range(min(limit, len(ds)))) if limit is not None else ds
    return out


def shard_rows(n: int, share: float) -> list[int]:
    """Evenly spaced rows making up ``share`` of ``n`` (at least one): for 1/k it is every k-th row from the
    first, as ``Dataset.shard(num_shards=k, index=0)`` gives; any other share keeps its exact size."""
    count = max(1, math.ceil(n * share - 1e-9))
    return [min(n - 1, int(i / share + 1e-9)) for i in range(count)]
