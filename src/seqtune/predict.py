"""Use a finished run: predict texts or files, re-evaluate on a task's dev data, write GLUE submission files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict

from seqtune.batching import Collator, EncodedRows, column
from seqtune.data import features_for, load_glue, read_glue_file, read_split, select_samples
from seqtune.encoding import encode_texts, tokenize
from seqtune.errors import SeqtuneError
from seqtune.inference import infer_logits
from seqtune.labels import multi_hot, unlabeled
from seqtune.long_inputs import LongInputs, aggregate
from seqtune.metrics import compute_metrics, logits_to_predictions, probabilities
from seqtune.runtime import LoadedRun, load_run
from seqtune.tasks import GlueFile, TaskSpec

PREDICT_CHUNK = 8192  # texts tokenized and held in memory at once by `predict`


def _as_run(run: str | Path | LoadedRun) -> LoadedRun:
    return run if isinstance(run, LoadedRun) else load_run(run)


def logits_for(run: LoadedRun, raw: Dataset, batch_size: int = 128, cache: bool = False) -> np.ndarray:
    """Logits for a raw split; ``cache`` keeps its tokenization on disk (worth it for GLUE splits used again)."""
    dd = DatasetDict(predict=raw)
    encoded = tokenize(dd, run.task, run.tokenizer, run.max_length, run.cfg.data.cache_dir, False, cache,
                       long=LongInputs.of(run.cfg.data))["predict"]  # fmt: skip
    logits = infer_logits(run.model, encoded, Collator(run.tokenizer), batch_size, run.device, run.precision)
    if "doc" not in encoded.column_names:
        return logits
    return aggregate(logits, column(encoded, "doc"), run.task.is_multi_label)


def to_records(task: TaskSpec, logits: np.ndarray) -> list[dict[str, Any]]:
    """Logits -> what a user reads: label + probabilities, a score (regression) or a label set (multi-label)."""
    if task.is_regression:
        return [{"score": float(v)} for v in logits[:, 0]]
    names = list(task.label_names or ())
    probs, preds = probabilities(task, logits), logits_to_predictions(task, logits)  # the run's threshold applies
    if task.is_multi_label:
        return [
            {
                "labels": [n for n, on in zip(names, chosen, strict=True) if on],
                "probabilities": {n: round(float(p), 6) for n, p in zip(names, row, strict=True)},
            }
            for row, chosen in zip(probs, preds, strict=True)
        ]
    return [
        {
            "label": names[int(label)],
            "score": round(float(row[label]), 6),
            "probabilities": {n: round(float(p), 6) for n, p in zip(names, row, strict=True)},
        }
        for row, label in zip(probs, preds, strict=True)
    ]


def check_inputs(task: TaskSpec, texts: list[str], pairs: list[str] | None) -> None:
    """One-line errors for texts to predict: empty or non-string texts, a missing or unexpected pair."""
    for i, text in enumerate(texts + (pairs or [])):
        if not isinstance(text, str):
            raise SeqtuneError(f"input {i % len(texts) + 1}: expected a string, got {type(text).__name__}")
        if not text.strip():
            raise SeqtuneError(f"input {i % len(texts) + 1}: empty text; every input needs some text")
    if task.is_pair and pairs is None:
        raise SeqtuneError(
            f"this model was trained on sentence pairs ({', '.join(task.text_columns)}): pass --text-pair as well"
        )
    if not task.is_pair and pairs is not None:
        raise SeqtuneError("this model takes a single text, not a pair: drop --text-pair")
    if pairs is not None and len(pairs) != len(texts):
        raise SeqtuneError(f"got {len(texts)} texts but {len(pairs)} text pairs; pass one pair per text")


def raw_dataset(task: TaskSpec, texts: list[str], pairs: list[str] | None) -> Dataset:
    check_inputs(task, texts, pairs)
    columns: dict[str, list] = {task.text_columns[0]: texts}
    if pairs is not None:
        columns[task.text_columns[1]] = pairs
    empty_label = unlabeled(task.is_multi_label, task.is_regression)
    columns |= {"label": [empty_label] * len(texts), "idx": list(range(len(texts)))}
    return Dataset.from_dict(columns, features=features_for(task))


def predict(
    run: str | Path | LoadedRun,
    texts: str | list[str],
    text_pairs: str | list[str] | None = None,
    batch_size: int = 128,
) -> list[dict[str, Any]]:
    """Predict one text (pair) or a list of them.

    Example:
        >>> predict("runs/mrpc", "A cat sat.", "A cat was sitting.")  # doctest: +SKIP
        [{'label': 'equivalent', 'score': 0.91, 'probabilities': {'not_equivalent': 0.09, 'equivalent': 0.91}}]
    """
    loaded = _as_run(run)
    texts_l = [texts] if isinstance(texts, str) else list(texts)
    pairs_l = [text_pairs] if isinstance(text_pairs, str) else (list(text_pairs) if text_pairs is not None else None)
    if not texts_l:
        return []
    check_inputs(loaded.task, texts_l, pairs_l)
    # Texts already in memory: one tokenizer call per chunk, no Dataset to build and map (a server calls this per
    # batch). Chunks bound the memory of token lists held as Python objects; each chunk is sorted by length.
    collator, records = Collator(loaded.tokenizer), []
    for start in range(0, len(texts_l), PREDICT_CHUNK):
        columns = [texts_l[start : start + PREDICT_CHUNK]]
        if pairs_l is not None:
            columns.append(pairs_l[start : start + PREDICT_CHUNK])
        rows = EncodedRows(encode_texts(loaded.tokenizer, columns, loaded.max_length, LongInputs.of(loaded.cfg.data)))
        logits = infer_logits(loaded.model, rows, collator, batch_size, loaded.device, loaded.precision)
        if "doc" in rows.columns:  # windows of one text -> one prediction
            logits = aggregate(logits, rows.columns["doc"], loaded.task.is_multi_label)
        records += to_records(loaded.task, logits)
    return records


def _glue_data(loaded: LoadedRun, data_dir: str | None) -> DatasetDict:
    if loaded.cfg.task is None:
        raise SeqtuneError(f"{loaded.run_dir} was trained on own data, not a GLUE task; use --input FILE instead")
    return load_glue(loaded.task, data_dir or loaded.cfg.data.data_dir)


def evaluate_run(
    run: str | Path | LoadedRun, data_dir: str | None = None, max_eval_samples: int | None = None
) -> dict[str, dict[str, float]]:
    """Re-compute a GLUE run's metrics on the task's evaluation splits.

    Example:
        >>> evaluate_run("runs/mrpc", "../shared/glue")["validation"]["accuracy"]  # doctest: +SKIP
    """
    loaded = _as_run(run)
    dd = select_samples(_glue_data(loaded, data_dir), loaded.task, None, max_eval_samples)
    results = {}
    for split in loaded.task.eval_splits:
        if split not in dd:
            raise SeqtuneError(f"{loaded.task.name}: no {split} split in the data; check --data-dir")
        logits = logits_for(loaded, dd[split], cache=True)
        results[split] = compute_metrics(loaded.task, logits, column(dd[split], "label"))
    return results


def evaluate_file(
    run: str | Path | LoadedRun, input_path: str | Path, max_eval_samples: int | None = None
) -> dict[str, float]:
    """A run's metrics on any labeled file with the run's columns (label names from its training data).

    Nothing is written: the file is read, predicted and scored in memory.

    Example:
        >>> evaluate_file("runs/tickets", "tickets-2025.csv")["accuracy"]  # doctest: +SKIP
    """
    loaded = _as_run(run)
    logits, target = labeled_logits(loaded, input_path, max_eval_samples)
    return compute_metrics(loaded.task, logits, target)


def labeled_logits(
    run: str | Path | LoadedRun, input_path: str | Path, max_eval_samples: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A run's logits on a labeled file with the run's columns, and the file's targets (label ids; multi-hot rows
    for multi-label runs): what `evaluate_file` scores, for callers that also score the predictions their own way."""
    loaded = _as_run(run)
    task, data = loaded.task, loaded.cfg.data
    own = loaded.cfg.task is None
    label_col = data.label_column if own else "label"
    cols = dict(zip(task.text_columns, loaded.input_columns(), strict=True))
    flags = {c: f"a file with the column '{c}' (the run's input)" for c in cols.values()}
    flags[label_col] = f"a file with the column '{label_col}' (the run's labels)"
    ds = read_split(input_path, task, cols, label_col, data.label_delimiter, flags)
    if max_eval_samples is not None:
        ds = ds.select(range(min(max_eval_samples, len(ds))))
    labels = ds["label"]
    target = multi_hot(labels, task.num_labels) if task.is_multi_label else np.asarray(labels)
    return logits_for(loaded, ds), target


def glue_submission(run: str | Path | LoadedRun, out_dir: str | Path, data_dir: str | None = None) -> list[Path]:
    """Write GLUE leaderboard files (``MRPC.tsv``: ``index<TAB>prediction``) for the task's test split(s)."""
    loaded = _as_run(run)
    dd, task = _glue_data(loaded, data_dir), loaded.task
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for split in task.test_splits:
        if split not in dd:
            raise SeqtuneError(f"{task.name}: no {split} split in the data; GLUE test files are named test.tsv")
        path = out / f"{task.submission_names[split]}.tsv"
        _write_submission_file(task, dd[split]["idx"], logits_for(loaded, dd[split], cache=True), path)
        written.append(path)
    return written


def predict_glue_diagnostic(run: str | Path | LoadedRun, diagnostic: str | Path, out_path: str | Path) -> Path:
    """GLUE's diagnostic set (AX: ``index, sentence1, sentence2``) predicted by an MNLI run, as ``AX.tsv``."""
    loaded = _as_run(run)
    task = loaded.task
    if task.name != "mnli":
        raise SeqtuneError(f"{loaded.run_dir}: the GLUE diagnostic set is predicted by an MNLI run, not {task.name}")
    rows = read_glue_file(Path(diagnostic), GlueFile(Path(diagnostic).name, ("sentence1", "sentence2")), task)
    raw = Dataset.from_dict(rows, features=features_for(task))
    _write_submission_file(task, raw["idx"], logits_for(loaded, raw), Path(out_path))
    return Path(out_path)


def _write_submission_file(task: TaskSpec, idxs: list[int], logits: np.ndarray, path: Path) -> None:
    """``index<TAB>prediction`` lines as the GLUE leaderboard reads them."""
    if task.is_regression:
        values = [f"{v:.3f}" for v in np.clip(logits[:, 0], 0.0, 5.0)]  # STS-B scores live in [0, 5]
    elif task.submission_uses_label_names:
        values = [task.label_names[i] for i in logits_to_predictions(task, logits)]  # type: ignore[index]
    else:
        values = [str(int(i)) for i in logits_to_predictions(task, logits)]
    lines = ["index\tprediction"] + [f"{idx}\t{v}" for idx, v in zip(idxs, values, strict=True)]
    path.write_text("\n".join(lines) + "\n")
