"""Tests for seqtune.data: GLUE from a local folder (hand-made and real), the hub fallback, and own data files."""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import ClassLabel, Sequence, Value

from seqtune.config import DataConfig
from seqtune.data import load_custom, load_glue, resolve_glue_dir
from seqtune.errors import SeqtuneError
from seqtune.tasks import GLUE_TASKS

REAL_GLUE = Path(__file__).resolve().parents[1].parent / "shared" / "glue"


def _raises(fragment: str):
    return pytest.raises(SeqtuneError, match=re.escape(fragment))


# ---------------------------------------------------------------- a hand-made mini GLUE in GLUE's own layouts
#
# Each task: its folder, the file columns holding the text(s) and the label, the examples (texts, raw label,
# expected label id / score) and, per split, (file name, full header as in the real file, header written?).
# Texts carry unbalanced quotes, so the files only read right with quoting off.

_MNLI = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse"]
_MNLI += ["sentence1_parse", "sentence2_parse", "sentence1", "sentence2"]
_STSB = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2"]
_MRPC = ["#1 ID", "#2 ID", "#1 String", "#2 String"]
_PAIR_EXAMPLES = [('He said "yes', "it 's \"odd"), ('"Start quote', "plain, with comma"), ("third", 'end"')]

MINI: dict[str, dict] = {
    "cola": {
        "folder": "CoLA",
        "text": ("sentence",),
        "label": "label",
        "examples": [(('The "sailors rode.',), "1", 1), (("Rode \"the sailors'.",), "0", 0), (("ok",), "1", 1)],
        "files": {
            "train": ("train.tsv", ["source", "label", "original_label", "sentence"], False),
            "validation": ("dev.tsv", ["source", "label", "original_label", "sentence"], False),
            "test": ("test.tsv", ["index", "sentence"], True),
        },
    },
    "sst2": {
        "folder": "SST-2",
        "text": ("sentence",),
        "label": "label",
        "examples": [(('a "charming journey ',), "1", 1), (("it 's dull",), "0", 0), (('"',), "0", 0)],
        "files": {
            "train": ("train.tsv", ["sentence", "label"], True),
            "validation": ("dev.tsv", ["sentence", "label"], True),
            "test": ("test.tsv", ["index", "sentence"], True),
        },
    },
    "mrpc": {
        "folder": "MRPC",
        "bom": True,
        "text": ("#1 String", "#2 String"),
        "label": "Quality",
        "examples": [(t, lab, lab_id) for t, lab, lab_id in zip(_PAIR_EXAMPLES, "101", [1, 0, 1], strict=True)],
        "files": {
            "train": ("train.tsv", ["Quality", *_MRPC], True),
            "validation": ("dev.tsv", ["Quality", *_MRPC], True),
            "test": ("test.tsv", ["index", *_MRPC], True),
        },
    },
    "stsb": {
        "folder": "STS-B",
        "text": ("sentence1", "sentence2"),
        "label": "score",
        "examples": [(t, s, float(s)) for t, s in zip(_PAIR_EXAMPLES, ["5.000", "0.250", "3.8"], strict=True)],
        "files": {
            "train": ("train.tsv", [*_STSB, "score"], True),
            "validation": ("dev.tsv", [*_STSB, "score"], True),
            "test": ("test.tsv", _STSB, True),
        },
    },
    "qqp": {
        "folder": "QQP",
        "text": ("question1", "question2"),
        "label": "is_duplicate",
        "examples": [(t, lab, int(lab)) for t, lab in zip(_PAIR_EXAMPLES, "010", strict=True)],
        "files": {
            "train": ("train.tsv", ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"], True),
            "validation": ("dev.tsv", ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"], True),
            "test": ("test.tsv", ["id", "question1", "question2"], True),
        },
    },
    "mnli": {
        "folder": "MNLI",
        "text": ("sentence1", "sentence2"),
        "label": "gold_label",
        "examples": [
            (_PAIR_EXAMPLES[0], "neutral", 1),
            (_PAIR_EXAMPLES[1], "contradiction", 2),
            (_PAIR_EXAMPLES[2], "entailment", 0),
        ],
        "files": {
            "train": ("train.tsv", [*_MNLI, "label1", "gold_label"], True),
            "validation_matched": (
                "dev_matched.tsv",
                [*_MNLI, *(f"label{i}" for i in range(1, 6)), "gold_label"],
                True,
            ),
            "validation_mismatched": (
                "dev_mismatched.tsv",
                [*_MNLI, *(f"label{i}" for i in range(1, 6)), "gold_label"],
                True,
            ),
            "test_matched": ("test_matched.tsv", _MNLI, True),
            "test_mismatched": ("test_mismatched.tsv", _MNLI, True),
        },
    },
    "qnli": {
        "folder": "QNLI",
        "text": ("question", "sentence"),
        "label": "label",
        "examples": [
            (t, lab, ["entailment", "not_entailment"].index(lab))
            for t, lab in zip(_PAIR_EXAMPLES, ["not_entailment", "entailment", "entailment"], strict=True)
        ],
        "files": {
            "train": ("train.tsv", ["index", "question", "sentence", "label"], True),
            "validation": ("dev.tsv", ["index", "question", "sentence", "label"], True),
            "test": ("test.tsv", ["index", "question", "sentence"], True),
        },
    },
    "rte": {
        "folder": "RTE",
        "text": ("sentence1", "sentence2"),
        "label": "label",
        "examples": [
            (_PAIR_EXAMPLES[0], "entailment", 0),
            (_PAIR_EXAMPLES[1], "not_entailment", 1),
            (_PAIR_EXAMPLES[2], "not_entailment", 1),
        ],
        "files": {
            "train": ("train.tsv", ["index", "sentence1", "sentence2", "label"], True),
            "validation": ("dev.tsv", ["index", "sentence1", "sentence2", "label"], True),
            "test": ("test.tsv", ["index", "sentence1", "sentence2"], True),
        },
    },
    "wnli": {
        "folder": "WNLI",
        "text": ("sentence1", "sentence2"),
        "label": "label",
        # WNLI's label ids: 0 = not_entailment, 1 = entailment
        "examples": [(t, lab, int(lab)) for t, lab in zip(_PAIR_EXAMPLES, "100", strict=True)],
        "files": {
            "train": ("train.tsv", ["index", "sentence1", "sentence2", "label"], True),
            "validation": ("dev.tsv", ["index", "sentence1", "sentence2", "label"], True),
            "test": ("test.tsv", ["index", "sentence1", "sentence2"], True),
        },
    },
}


def _index_value(k: int) -> int:
    return 10 * k + 7  # not 0..n-1, so `idx` provably comes from the file's index column


def write_mini_glue(root: Path, task: str) -> None:
    """Write one task of the mini GLUE under ``root/<Folder>/``."""
    mini = MINI[task]
    folder = root / mini["folder"]
    folder.mkdir(parents=True, exist_ok=True)
    for filename, header, has_header in mini["files"].values():
        lines = ["\t".join(header)] if has_header else []
        for k, (texts, raw_label, _) in enumerate(mini["examples"]):
            values = dict(zip(mini["text"], texts, strict=True)) | {mini["label"]: raw_label, "index": _index_value(k)}
            lines.append("\t".join(str(values.get(col, f"{col}-{k}")) for col in header))
        text = "\n".join(lines) + "\n"
        (folder / filename).write_text(("\ufeff" if mini.get("bom") else "") + text, encoding="utf-8")


@pytest.mark.parametrize("name", list(GLUE_TASKS))
def test_every_glue_task_loads_from_a_mini_glue_folder(tmp_path, name):
    task = GLUE_TASKS[name]
    mini = MINI[name]
    write_mini_glue(tmp_path, name)
    dd = load_glue(task, str(tmp_path))

    assert set(dd) == set(task.glue_files) == {"train", *task.eval_splits, *task.test_splits}
    n = len(mini["examples"])
    for split, ds in dd.items():
        assert ds.column_names == [*task.text_columns, "label", "idx"], split
        assert len(ds) == n
        label_feature = ds.features["label"]
        if task.is_regression:
            assert label_feature == Value("float32")
        else:
            assert isinstance(label_feature, ClassLabel)
            assert tuple(label_feature.names) == task.label_names
        for col, pos in zip(task.text_columns, range(len(task.text_columns)), strict=True):
            assert ds[col] == [texts[pos] for texts, _, _ in mini["examples"]], (split, col)
        has_index = "index" in mini["files"][split][1]
        assert ds["idx"] == ([_index_value(k) for k in range(n)] if has_index else list(range(n)))
        if split in task.test_splits:
            assert ds["label"] == [-1] * n
        elif task.is_regression:
            assert list(ds["label"]) == pytest.approx([score for _, _, score in mini["examples"]])
        else:
            assert ds["label"] == [label_id for _, _, label_id in mini["examples"]]


def test_glue_dir_from_env_and_task_folder_directly(tmp_path, monkeypatch):
    write_mini_glue(tmp_path, "rte")
    monkeypatch.setenv("SEQTUNE_GLUE_DIR", str(tmp_path))
    assert resolve_glue_dir(GLUE_TASKS["rte"], None) == tmp_path / "RTE"
    # the task folder itself is accepted too
    assert resolve_glue_dir(GLUE_TASKS["rte"], str(tmp_path / "RTE")) == tmp_path / "RTE"
    assert len(load_glue(GLUE_TASKS["rte"])["train"]) == 3


def test_glue_dir_without_the_task(tmp_path):
    write_mini_glue(tmp_path, "rte")
    with _raises(f"{tmp_path}: no MRPC data found; expected {tmp_path / 'MRPC'}/{{train,dev,test}}.tsv"):
        load_glue(GLUE_TASKS["mrpc"], str(tmp_path))


def test_glue_without_data_dir_offline_tells_to_pass_data_dir(monkeypatch):
    monkeypatch.delenv("SEQTUNE_GLUE_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with _raises("no local GLUE data and offline mode is on (HF_HUB_OFFLINE): pass --data-dir DIR"):
        load_glue(GLUE_TASKS["mrpc"])


def _glue_file(tmp_path: Path, folder: str, name: str, text: str | bytes) -> Path:
    (tmp_path / folder).mkdir(exist_ok=True)
    path = tmp_path / folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_glue_unknown_label_names_the_line(tmp_path):
    path = _glue_file(tmp_path, "CoLA", "train.tsv", "gj04\t1\t\tfine.\ngj04\t7\t*\tbad label.\n")
    with _raises(f"{path} line 2: label '7' is not in the label set ['unacceptable', 'acceptable']"):
        load_glue(GLUE_TASKS["cola"], str(tmp_path))


def test_glue_bad_score_names_the_line(tmp_path):
    header = "\t".join([*_STSB, "score"])
    path = _glue_file(tmp_path, "STS-B", "dev.tsv", f"{header}\n" + "\t".join(["0"] * 9 + ["high"]) + "\n")
    with _raises(f"{path} line 2: score 'high' is not a number; fix or remove the row"):
        load_glue(GLUE_TASKS["stsb"], str(tmp_path))


def test_glue_short_line_names_the_line(tmp_path):
    path = _glue_file(tmp_path, "RTE", "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly\n")
    with _raises(f"{path} line 3: expected at least 4 tab-separated fields, found 2"):
        load_glue(GLUE_TASKS["rte"], str(tmp_path))


def test_glue_wrong_task_layout(tmp_path):
    path = _glue_file(tmp_path, "SST-2", "train.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\t1\n")
    with _raises(f"{path}: missing column 'sentence'; found columns ['index', 'sentence1', 'sentence2', 'label']"):
        load_glue(GLUE_TASKS["sst2"], str(tmp_path))


def test_glue_file_not_utf8_or_empty(tmp_path):
    path = _glue_file(tmp_path, "RTE", "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tcaf\xe9\tb\tentailment\n")
    path.write_bytes(path.read_text().encode("latin-1"))
    with _raises(f"{path} line 2: not valid UTF-8 (byte 0xe9); re-save the file as UTF-8"):
        load_glue(GLUE_TASKS["rte"], str(tmp_path))
    path.write_text("index\tsentence1\tsentence2\tlabel\n")
    with _raises(f"{path}: expected GLUE's TSV with data rows, found only a header"):
        load_glue(GLUE_TASKS["rte"], str(tmp_path))


def test_glue_bad_index_names_the_line(tmp_path):
    path = _glue_file(tmp_path, "RTE", "test.tsv", "index\tsentence1\tsentence2\n0\ta\tb\nx1\ta\tb\n")
    with _raises(f"{path} line 3: column 'index' holds 'x1', expected an integer row id"):
        load_glue(GLUE_TASKS["rte"], str(tmp_path))


# ---------------------------------------------------------------- the real GLUE files (../shared/glue)

REAL = {
    # task: (folder, {split: rows}, dev label counts by id, or None for STS-B)
    "mrpc": ("MRPC", {"train": 3668, "validation": 408, "test": 1725}, {0: 129, 1: 279}),
    "sst2": ("SST-2", {"train": 67349, "validation": 872}, {0: 428, 1: 444}),
    "cola": ("CoLA", {"train": 8551, "validation": 1043, "test": 1063}, {0: 322, 1: 721}),
    "rte": ("RTE", {"train": 2490, "validation": 277, "test": 3000}, {0: 146, 1: 131}),
    "wnli": ("WNLI", {"train": 635, "validation": 71, "test": 146}, {0: 40, 1: 31}),
    "stsb": ("STS-B", {"train": 5749, "validation": 1500, "test": 1379}, None),
    "qnli": ("QNLI", {"validation": 5463, "test": 5463}, {0: 2702, 1: 2761}),
}


@pytest.mark.parametrize("name", list(REAL))
def test_real_glue_split_sizes_and_labels(name):
    folder, sizes, dev_counts = REAL[name]
    if not (REAL_GLUE / folder).is_dir():
        pytest.skip(f"../shared/glue not found: no {REAL_GLUE / folder}")
    task = GLUE_TASKS[name]
    dd = load_glue(task, str(REAL_GLUE))
    assert {split: len(ds) for split, ds in dd.items()} == sizes
    dev = dd["validation"]
    if dev_counts is None:
        assert 0.0 <= min(dev["label"]) and max(dev["label"]) <= 5.0
    else:
        assert dict(Counter(dev["label"])) == dev_counts
        assert tuple(dev.features["label"].names) == task.label_names
    if "test" in dd:
        assert set(dd["test"]["label"]) == {-1}
        assert dd["test"]["idx"] == list(range(sizes["test"]))
    assert all(text.strip() for col in task.text_columns for text in dev[col])


def test_real_mrpc_keeps_stray_quotes():
    if not (REAL_GLUE / "MRPC").is_dir():
        pytest.skip(f"../shared/glue not found: no {REAL_GLUE / 'MRPC'}")
    dev = load_glue(GLUE_TASKS["mrpc"], str(REAL_GLUE))["validation"]
    # dev line 2 starts its second sentence with an unbalanced quote: quoting off keeps it, and the rows after it
    assert dev[0]["sentence2"].startswith('"The foodservice pie business')
    assert dev[0]["label"] == 1


# ---------------------------------------------------------------- own data


def _csv(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def _rows_csv(path: Path, header: str, rows: list[str]) -> str:
    return _csv(path, header + "\n" + "\n".join(rows) + "\n")


SENTIMENT = [f"text {i},{'pos' if i % 3 else 'neg'}" for i in range(30)]


def test_csv_single_sentence(tmp_path):
    train = _rows_csv(tmp_path / "train.csv", "text,label", SENTIMENT)
    dd, task = load_custom(DataConfig(train_file=train, validation_fraction=0.2))
    assert task.label_names == ("neg", "pos")
    assert task.problem_type == "single_label_classification"
    assert task.text_columns == ("text",)
    assert dd["train"].column_names == ["text", "label", "idx"]
    assert dd["train"].features["label"].names == ["neg", "pos"]
    assert len(dd["train"]) + len(dd["validation"]) == 30
    assert len(dd["validation"]) == 6
    for ds in dd.values():
        for row in ds:
            assert row["label"] == (1 if int(row["idx"]) % 3 else 0)
            assert row["text"] == f"text {row['idx']}"


def test_tsv_pair_keeps_quotes(tmp_path):
    train = _csv(tmp_path / "t.tsv", 'q\ta\ty\n"Is it\tyes "quoted\tb\nwhat\tno\ta\n')
    valid = _csv(tmp_path / "v.tsv", "q\ta\ty\nwhy\tbecause\ta\n")
    cfg = DataConfig(train_file=train, validation_file=valid, text_column="q", text_pair_column="a", label_column="y")
    dd, task = load_custom(cfg)
    assert task.is_pair and task.text_columns == ("text", "text_pair")
    assert dd["train"]["text"] == ['"Is it', "what"]
    assert dd["train"]["text_pair"] == ['yes "quoted', "no"]
    assert dd["train"]["label"] == [1, 0]
    assert dd["validation"][0] == {"text": "why", "text_pair": "because", "label": 0, "idx": 0}


def test_jsonl_pair(tmp_path):
    rows = [{"a": f"q{i}", "b": f"s{i}", "label": "yes" if i % 2 else "no"} for i in range(10)]
    train = _csv(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    dd, task = load_custom(DataConfig(train_file=train, text_column="a", text_pair_column="b"))
    assert task.label_names == ("no", "yes")
    assert sorted([*dd["train"]["idx"], *dd["validation"]["idx"]]) == list(range(10))
    for row in dd["train"]:
        assert row["text_pair"] == f"s{row['idx']}" and row["label"] == row["idx"] % 2


@pytest.mark.parametrize("pair", [False, True])
def test_parquet(tmp_path, pair):
    path = tmp_path / "d.parquet"
    columns = {"t": [f"x{i}" for i in range(8)], "label": [i % 2 for i in range(8)]}
    if pair:
        columns["t2"] = [f"y{i}" for i in range(8)]
    pq.write_table(pa.table(columns), path)
    cfg = DataConfig(
        train_file=str(path), validation_file=str(path), text_column="t", text_pair_column="t2" if pair else None
    )
    dd, task = load_custom(cfg)
    assert task.label_names == ("0", "1")
    assert dd["validation"]["label"] == [i % 2 for i in range(8)]
    assert dd["validation"].column_names == (["text", "text_pair"] if pair else ["text"]) + ["label", "idx"]


def test_numeric_labels_in_numeric_order(tmp_path):
    rows = [f"t{i},{lab}" for i, lab in enumerate([10, 2, 1, 2, 10, 1, 2.0])]
    train = _rows_csv(tmp_path / "d.csv", "text,label", rows)
    dd, task = load_custom(DataConfig(train_file=train, validation_file=train))
    assert task.label_names == ("1", "2", "10")
    assert dd["validation"]["label"] == [2, 1, 0, 1, 2, 0, 1]  # "2.0" is the label 2


def test_list_labels_are_multi_label(tmp_path):
    rows = [{"text": "a", "label": ["urgent", "billing"]}, {"text": "b", "label": ["tech"]}, {"text": "c", "label": []}]
    train = _csv(tmp_path / "d.jsonl", "\n".join(json.dumps(r) for r in rows))
    dd, task = load_custom(DataConfig(train_file=train, validation_file=train))
    assert task.problem_type == "multi_label_classification"
    assert task.label_names == ("billing", "tech", "urgent")
    assert dd["validation"].features["label"] == Sequence(ClassLabel(names=["billing", "tech", "urgent"]))
    assert dd["validation"]["label"] == [[0, 2], [1], []]


def test_delimited_labels_with_multi_label(tmp_path):
    train = _rows_csv(tmp_path / "d.csv", "text,label", ['a,"billing, urgent"', "b,tech", "c,urgent"])
    dd, task = load_custom(DataConfig(train_file=train, validation_file=train, problem_type="multi_label"))
    assert task.is_multi_label and task.label_names == ("billing", "tech", "urgent")
    assert dd["validation"]["label"] == [[0, 2], [1], [2]]
    piped = _rows_csv(tmp_path / "p.csv", "text,label", ["a,billing|urgent", "b,tech"])
    _, task = load_custom(
        DataConfig(train_file=piped, validation_file=piped, problem_type="multi_label", label_delimiter="|")
    )
    assert task.label_names == ("billing", "tech", "urgent")


def test_non_integer_numbers_are_regression(tmp_path):
    train = _rows_csv(tmp_path / "d.csv", "text,label", ["a,0.5", "b,3", "c,4.25", "d,1"])
    dd, task = load_custom(DataConfig(train_file=train, validation_file=train))
    assert task.is_regression and task.label_names is None
    assert dd["validation"].features["label"] == Value("float32")
    assert list(dd["validation"]["label"]) == pytest.approx([0.5, 3.0, 4.25, 1.0])


def test_held_out_validation_is_seeded_and_stratified(tmp_path):
    train = _rows_csv(tmp_path / "d.csv", "text,label", SENTIMENT)
    cfg = DataConfig(train_file=train, validation_fraction=0.3)
    first, _ = load_custom(cfg, seed=1)
    again, _ = load_custom(cfg, seed=1)
    other, _ = load_custom(cfg, seed=2)
    assert first["validation"]["idx"] == again["validation"]["idx"]
    assert first["train"]["idx"] == again["train"]["idx"]
    assert first["validation"]["idx"] != other["validation"]["idx"]
    assert sorted([*first["train"]["idx"], *first["validation"]["idx"]]) == list(range(30))
    assert Counter(first["validation"]["label"]) == {0: 3, 1: 6}  # 10 neg / 20 pos, stratified


@pytest.mark.parametrize(
    ("labels", "problem"),
    [
        ([i % 3 for i in range(200)], "single_label_classification"),  # stratified
        ([0] * 50 + [1], "single_label_classification"),  # a class of one row: plain split
        ([0.5 * i for i in range(40)], "regression"),  # never stratified
    ],
)
def test_held_out_rows_are_the_ones_datasets_train_test_split_picks(labels, problem):
    """Carved validation sets measured before seqtune computed the split itself must stay the same rows."""
    from datasets import Dataset, Features

    from seqtune.data import hold_out

    label = ClassLabel(names=["a", "b", "c"]) if problem != "regression" else Value("float32")
    ds = Dataset.from_dict({"idx": list(range(len(labels))), "label": labels},
                           features=Features({"idx": Value("int64"), "label": label}))  # fmt: skip
    for seed in (0, 42):
        ours = hold_out(ds, DataConfig(validation_fraction=0.1), problem, seed)
        stratify = "label" if problem != "regression" else None
        try:
            theirs = ds.train_test_split(0.1, seed=seed, stratify_by_column=stratify)
        except ValueError:
            theirs = ds.train_test_split(0.1, seed=seed)
        assert ours[0]["idx"] == theirs["train"]["idx"]
        assert ours[1]["idx"] == theirs["test"]["idx"]


def test_held_out_validation_needs_rows_and_a_sane_fraction(tmp_path):
    one = _rows_csv(tmp_path / "one.csv", "text,label", ["a,x"])
    with _raises(f"{one}: 1 row(s) is too few to hold out validation rows; add examples or pass --validation-file"):
        load_custom(DataConfig(train_file=one, problem_type="multi_label"))
    two = _rows_csv(tmp_path / "two.csv", "text,label", ["a,x", "b,y"])
    with _raises(f"{two}: holding out 60% of 2 row(s) leaves none to train on; add examples, lower "
                 "data.validation_fraction or pass --validation-file"):  # fmt: skip
        load_custom(DataConfig(train_file=two, validation_fraction=0.6))
    train = _rows_csv(tmp_path / "d.csv", "text,label", SENTIMENT)
    with _raises("validation fraction 1.5 is not between 0 and 1"):
        load_custom(DataConfig(train_file=train, validation_fraction=1.5))


@pytest.mark.parametrize(("problem", "unlabeled"), [("auto", -1), ("multi_label", []), ("regression", -1.0)])
def test_test_file_without_labels(tmp_path, problem, unlabeled):
    train = _rows_csv(tmp_path / "d.csv", "text,label", ["a,1.5", "b,2", "c,1.5", "d,2"])
    test = _rows_csv(tmp_path / "test.csv", "text", ["new one", "new two"])
    dd, _ = load_custom(DataConfig(train_file=train, validation_file=train, test_file=test, problem_type=problem))
    assert dd["test"]["label"] == [unlabeled, unlabeled]
    assert dd["test"]["text"] == ["new one", "new two"] and dd["test"]["idx"] == [0, 1]


def test_test_file_with_labels_or_an_empty_label_column(tmp_path):
    train = _rows_csv(tmp_path / "d.csv", "text,label", ["a,neg", "b,pos"])
    labeled = _rows_csv(tmp_path / "t1.csv", "text,label", ["x,pos", "y,neg"])
    dd, _ = load_custom(DataConfig(train_file=train, validation_file=train, test_file=labeled))
    assert dd["test"]["label"] == [1, 0]
    empty = _rows_csv(tmp_path / "t2.csv", "text,label", ["x,", "y,"])
    dd, _ = load_custom(DataConfig(train_file=train, validation_file=train, test_file=empty))
    assert dd["test"]["label"] == [-1, -1]
    nan = tmp_path / "t3.jsonl"  # a pandas export of an unlabeled test set: NaN on every row
    nan.write_text('{"text": "x", "label": NaN}\n{"text": "y", "label": NaN}\n')
    dd, _ = load_custom(DataConfig(train_file=train, validation_file=train, test_file=nan))
    assert dd["test"]["label"] == [-1, -1]


# ---------------------------------------------------------------- own data: errors


def test_no_train_file():
    with _raises("no training data: pass --train-file"):
        load_custom(DataConfig())


def test_missing_train_file(tmp_path):
    with _raises(f"{tmp_path / 'nope.csv'}: file not found; check the path"):
        load_custom(DataConfig(train_file=str(tmp_path / "nope.csv")))


@pytest.mark.parametrize(
    ("kwargs", "column", "flag"),
    [
        ({"text_column": "body"}, "body", "--text-column"),
        ({"label_column": "team"}, "team", "--label-column"),
        ({"text_pair_column": "second"}, "second", "--text-pair-column"),
    ],
)
def test_missing_column_lists_columns_and_flag(tmp_path, kwargs, column, flag):
    train = _rows_csv(tmp_path / "d.csv", "text,label", ["a,x", "b,y"])
    with _raises(f"{train}: missing column '{column}'; found columns ['text', 'label']; pass {flag} with one of them"):
        load_custom(DataConfig(train_file=train, **kwargs))


def test_missing_column_in_test_file(tmp_path):
    train = _rows_csv(tmp_path / "d.csv", "text,label", ["a,x", "b,y"])
    test = _rows_csv(tmp_path / "t.csv", "body", ["a"])
    with _raises(f"{test}: missing column 'text'; found columns ['body']; pass --text-column"):
        load_custom(DataConfig(train_file=train, validation_file=train, test_file=test))


def test_validation_label_not_in_training_labels(tmp_path):
    train = _rows_csv(tmp_path / "train.csv", "text,label", ["a,neg", "b,pos"])
    valid = _rows_csv(tmp_path / "dev.csv", "text,label", ["a,neg", "b,pos", "c,neutral"])
    with _raises(
        f"{valid} line 4: label 'neutral' is not in the label set from the training file ['neg', 'pos']; "
        "fix the label or add training examples for it"
    ):
        load_custom(DataConfig(train_file=train, validation_file=valid))
    multi = _rows_csv(tmp_path / "m.csv", "text,label", ['a,"neg,other"'])
    with _raises(f"{multi} line 2: label 'other' is not in the label set from the training file ['neg', 'pos']"):
        load_custom(DataConfig(train_file=train, validation_file=multi, problem_type="multi_label"))


def test_empty_text_names_the_line(tmp_path):
    train = _rows_csv(tmp_path / "d.csv", "text,label", ["a,x", '"  ",y', "c,x"])
    with _raises(f"{train} line 3: empty text in column 'text'; fill it or remove the row"):
        load_custom(DataConfig(train_file=train))


def test_missing_json_key_is_empty_text(tmp_path):
    train = _csv(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n{"label": "y"}\n')
    with _raises(f"{train} line 2: empty text in column 'text'; fill it or remove the row"):
        load_custom(DataConfig(train_file=train))


def test_empty_label_names_the_row(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["a", "b", "c"], "label": ["x", None, "y"]}), path)
    with _raises(f"{path} row 2: empty label in column 'label'; fill it or remove the row"):
        load_custom(DataConfig(train_file=str(path)))


def test_non_numeric_regression_target(tmp_path):
    train = _rows_csv(tmp_path / "d.csv", "text,label", ["a,0.5", "b,high", "c,inf"])
    with _raises(f"{train} line 3: regression target 'high' in column 'label' is not a number; fix the value"):
        load_custom(DataConfig(train_file=train, problem_type="regression"))
    inf = _rows_csv(tmp_path / "i.csv", "text,label", ["a,0.5", "b,1", "c,inf"])
    with _raises(f"{inf} line 4: regression target 'inf' in column 'label' is not a number"):
        load_custom(DataConfig(train_file=inf, problem_type="regression"))


def test_single_distinct_label(tmp_path):
    train = _rows_csv(tmp_path / "d.csv", "text,label", ["a,spam", "b,spam"])
    with _raises(f"{train}: column 'label' has a single label ['spam']; a classifier needs at least two"):
        load_custom(DataConfig(train_file=train))


def test_multi_label_without_any_label(tmp_path):
    train = _csv(tmp_path / "d.jsonl", '{"text": "a", "label": []}\n{"text": "b", "label": []}\n')
    with _raises(f"{train}: column 'label' holds no labels at all"):
        load_custom(DataConfig(train_file=train))


def test_unknown_problem_type(tmp_path):
    train = _rows_csv(tmp_path / "d.csv", "text,label", ["a,x", "b,y"])
    with _raises("unknown problem type 'multilabel'; expected auto, single_label, multi_label or regression"):
        load_custom(DataConfig(train_file=train, problem_type="multilabel"))


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("d.csv", b"", "file is empty"),
        ("d.csv", b"text,label\n", "no data rows, only a header"),
        ("d.csv", b"\x00\x01\x02binary", "looks like a binary file (NUL bytes)"),
        ("d.csv", "text,label\nna\u00efve,x\n".encode("latin-1"), "line 2: not valid UTF-8 (byte 0xef)"),
        ("d.csv", b"text,label\na,x\nb,y,z\n", "line 3: expected 2 fields as in the header, found 3"),
        ("d.jsonl", b'{"text": "a", "label": "x"}\n{"text": "b", label: "y"}\n', "line 2: invalid JSON"),
        ("d.csv", b"text\tlabel\na\tx\n", "line 1: header is separated by tabs, not commas; it looks like TSV"),
        ("d.csv", b"text,label,label\na,x,y\n", "line 1: duplicated column name(s) ['label']"),
        ("d.xls", b"text,label\na,x\n", "unsupported file type '.xls'"),
    ],
)
def test_broken_train_files(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_bytes(content)
    with _raises(f"{path}{' ' if fragment.startswith('line') else ': '}{fragment}"):
        load_custom(DataConfig(train_file=str(path)))


@pytest.mark.parametrize("share", [0.1, 0.25, 1 / 3, 0.4, 0.7, 0.75, 1.0])
def test_train_shard_keeps_the_share_asked_for(share):
    from datasets import Dataset

    from seqtune.data import shard_rows

    rows = shard_rows(3668, share)
    assert len(rows) == math.ceil(3668 * share - 1e-9)  # 0.75 used to train on all rows, 0.4 on half
    assert rows == sorted(set(rows)) and rows[0] == 0 and rows[-1] < 3668
    k = round(1 / share)
    if abs(1 / share - k) < 1e-9:  # 1/k: exactly the course's shard(num_shards=k, index=0)
        full = Dataset.from_dict({"i": list(range(3668))})
        assert rows == full.shard(num_shards=k, index=0, contiguous=False)["i"]
