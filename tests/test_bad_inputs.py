"""The bad-input corpus (tests/data/bad): every file through `train`, `eval --input` and `predict --input`.

Each file has one expectation per command (`CASES`): an error — exit code 2, one `seqtune: error:` line that names
the file, the line where a line is at fault, and the fix (the pinned fragment) — with nothing written; or handled,
with proof: `Same` means the rows read equal those of `clean.csv` (train: the same splits, eval: the same
metrics, predict: the same predictions), `Rows(n)` that n rows were predicted.

`train` is run through the CLI for every error (the run folder must not appear). For handled files it runs the
data setup `train` runs (`setup_data` on the config the CLI builds) instead of a whole training, which would
cost seconds per file; one tiny run trained on `clean.csv` serves every `eval` and `predict`.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import assert_clean_error, assert_nothing_written, run_cli, snapshot

from seqtune import predict as P
from seqtune.cli import build_parser, main, train_overrides
from seqtune.config import load_config
from seqtune.predict_stream import predict_file
from seqtune.training import setup_data

BAD = Path(__file__).parent / "data" / "bad"
CLEAN = BAD / "clean.csv"


@dataclass(frozen=True)
class Same:
    """Handled: the file reads as exactly the rows of clean.csv."""


@dataclass(frozen=True)
class Rows:
    """Handled: ``n`` rows read (train: over both splits), ``n`` predictions written; eval gives its metrics."""

    n: int


@dataclass(frozen=True)
class Labels:
    """Handled (train): the label set read from the file."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class Error:
    """Exit 2 with one line: ``<file><fragment>``. The fragment starts with ' line N: ...' or ': ...'."""

    fragment: str


Expect = Same | Rows | Labels | Error
SAME = Same()


def everywhere(fragment: str) -> tuple[Expect, Expect, Expect]:
    return Error(fragment), Error(fragment), Error(fragment)


def label_error(line: int, label: str) -> Error:
    return Error(f" line {line}: label {label!r} is not in the label set from the training file ['neg', 'pos']")


NOT_IN_SET = "; fix the label or add training examples for it"
# file -> (train, eval, predict)
CASES: dict[str, tuple[Expect, Expect, Expect]] = {
    # ------------------------------------------------------------ handled
    "clean.csv": (SAME, SAME, SAME),
    "bom_utf8.csv": (SAME, SAME, SAME),
    "crlf.csv": (SAME, SAME, SAME),
    "cr_only.csv": (SAME, SAME, SAME),
    "crlf.tsv": (SAME, SAME, SAME),
    "bom_crlf.jsonl": (SAME, SAME, SAME),
    "json_array.json": (SAME, SAME, SAME),
    "blank_rows.csv": (SAME, SAME, SAME),
    "extra_columns.csv": (SAME, SAME, SAME),
    "header_spaces.csv": (SAME, SAME, SAME),
    "label_spaces.csv": (SAME, SAME, SAME),
    "quoted_newlines.csv": (Rows(12), Rows(12), Rows(12)),  # texts keep their line breaks: see the test below
    # ------------------------------------------------------------ whole-file errors
    "semicolons.csv": everywhere(
        " line 1: header 'text;label' is one column separated by semicolons; expected commas: re-export with that "
        "separator"
    ),
    "tabs_in.csv": everywhere(" line 1: header is separated by tabs, not commas; it looks like TSV, rename it to .tsv"),
    "commas_in.tsv": everywhere(" line 1: header has no tab but has commas; it looks like CSV, rename it to .csv"),
    "utf16_bom.csv": everywhere(": encoded as UTF-16, expected UTF-8 text; re-save the file as UTF-8"),
    "utf16_no_bom.csv": everywhere(
        ": looks like UTF-16 text without a byte-order mark (every other byte is NUL), expected UTF-8; "
        "re-save the file as UTF-8"
    ),
    "empty.csv": everywhere(": file is empty; expected a header line and at least one row"),
    "header_only.csv": everywhere(": no data rows, only a header; expected at least one example, add examples"),
    "duplicate_columns.csv": everywhere(" line 1: duplicated column name(s) ['text']; give every column a unique name"),
    "missing_column.csv": (
        Error(": missing column 'text'; found columns ['body', 'label']; pass --text-column with one of them"),
        Error(": missing column 'text'; found columns ['body', 'label']; pass a file with the column 'text'"),
        Error(": missing column 'text'; found columns ['body', 'label']; pass a file with the column 'text'"),
    ),
    "missing_label_column.csv": (
        Error(": missing column 'label'; found columns ['text']; pass --label-column with one of them"),
        Error(
            ": missing column 'label'; found columns ['text']; pass a file with the column 'label' (the run's labels)"
        ),
        SAME,
    ),
    # ------------------------------------------------------------ errors at a line
    "unbalanced_quote.csv": everywhere(
        " line 6: cannot parse (',' expected after '\"'); a quote opened on this line runs on to line 9: quote fields"
    ),
    "latin1.csv": everywhere(" line 11: not valid UTF-8 (byte 0xe9); re-save the file as UTF-8"),
    "mixed_encoding.csv": everywhere(" line 4: not valid UTF-8 (byte 0xef); re-save the file as UTF-8"),
    "short_row.csv": everywhere(
        " line 8: expected 2 fields as in the header, found 1; check the delimiter (comma) and quoting on that line"
    ),
    "long_row.csv": everywhere(" line 5: expected 2 fields as in the header, found 3; check the delimiter (comma)"),
    "repeated_header.csv": everywhere(
        " line 8: repeats the header line; the file looks like several exports joined together: remove the repeated "
        "header line"
    ),
    "broken_line.jsonl": everywhere(" line 3: invalid JSON (Expecting ',' delimiter); expected one object per line"),
    "non_object.jsonl": everywhere(' line 4: expected a JSON object like {"text": ..., "label": ...}, found list'),
    "list_text.jsonl": everywhere(
        " line 2: text in column 'text' is a JSON list ['a happy', 'cat'], expected a string; write the text as one "
        "string"
    ),
    "empty_text.csv": everywhere(" line 9: empty text in column 'text'; fill it or remove the row"),
    "empty_label.csv": (
        Error(" line 4: empty label in column 'label'; fill it or remove the row"),
        Error(" line 4: empty label in column 'label'; fill it or remove the row"),
        Rows(13),
    ),
    "nan_label.jsonl": (
        Error(" line 5: empty label (NaN) in column 'label'; fill it or remove the row"),
        Error(" line 5: empty label (NaN) in column 'label'; fill it or remove the row"),
        Rows(13),
    ),
    "object_label.jsonl": (
        Error(
            " line 6: label {'name': 'pos'} in column 'label' is a JSON object, expected a label name or number; "
            "write the label as a string"
        ),
        Error(" line 6: label {'name': 'pos'} in column 'label' is a JSON object"),
        Rows(13),
    ),
    # A training file defines the label set, so a new label there is a new class; a file evaluated later may not
    # bring labels the model never saw.
    "unknown_label.csv": (
        Labels(("maybe", "neg", "pos")),
        Error(label_error(7, "maybe").fragment + NOT_IN_SET),
        Rows(13),
    ),
    "nan_target.csv": (
        Error(
            " line 8: 'NaN' in column 'label' is not a number, but other rows hold numbers like '0.25' (regression "
            "targets); fix the value or remove the row, or pass --problem-type single_label"
        ),
        label_error(2, "0"),
        Rows(13),
    ),
    "string_target.csv": (
        Error(" line 11: 'high' in column 'label' is not a number, but other rows hold numbers like '0.25'"),
        label_error(2, "0"),
        Rows(13),
    ),
}
GENERATED = {
    # made in tmp_path at test time (too big / binary to commit)
    "huge_line.csv": everywhere(" line 1: the header line holds "),
    "binary.csv": everywhere(": looks like a binary file (NUL bytes), expected UTF-8 text; export it as CSV/TSV"),
}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> dict[str, Path]:
    """The files of `GENERATED`, written once."""
    folder = tmp_path_factory.mktemp("bad-generated")
    rng = random.Random(0)
    # 10 MB without a line break: a minified export, or a file saved with newlines the reader does not know
    words = [f"w{i}" for i in range(5000)]
    (folder / "huge_line.csv").write_text(",".join(rng.choices(words, k=2_000_000))[: 10 * 2**20])
    (folder / "binary.csv").write_bytes(b"PK\x03\x04\x14\x00\x06\x00" + rng.randbytes(4096))  # a renamed .xlsx
    return {name: folder / name for name in GENERATED}


@pytest.fixture(scope="module")
def bad_run(tiny_model_dir, tmp_path_factory) -> Path:
    """One tiny run trained on clean.csv; eval and predict of every corpus file use it."""
    root = tmp_path_factory.mktemp("bad-run")
    run_dir = root / "run"
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(io.StringIO()):
        mp.setenv("SEQTUNE_CACHE", str(root / "cache"))
        mp.chdir(root)
        code = main(
            ["train", "--train-file", str(CLEAN), "--validation-file", str(CLEAN), "--model", str(tiny_model_dir),
             "--epochs", "1", "--max-length", "32", "--output", str(run_dir), "--quiet"]
        )  # fmt: skip
    assert code == 0
    return run_dir


@pytest.fixture(scope="module")
def cached_runs():
    """Load the run's model once, not once per CLI call: the model loading is not what these tests are about."""
    loaded: dict[str, P.LoadedRun] = {}
    original = P.load_run

    def load_run(run_dir, precision="auto", allow_pickle=False):
        key = f"{run_dir}|{precision}|{allow_pickle}"
        if key not in loaded:
            loaded[key] = original(run_dir, precision, allow_pickle)
        return loaded[key]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(P, "load_run", load_run)
        yield


@pytest.fixture(scope="module")
def clean_results(bad_run, cached_runs, tmp_path_factory) -> dict[str, object]:
    """What clean.csv gives in each command: the splits train reads, eval's metrics, predict's records."""
    preds = tmp_path_factory.mktemp("clean-preds") / "preds.jsonl"
    predict_file(P.load_run(bad_run), CLEAN, preds)
    return {
        "train": _train_splits(CLEAN),
        "eval": P.evaluate_file(P.load_run(bad_run), CLEAN),
        "predict": [json.loads(line) for line in preds.read_text().splitlines()],
    }


def _train_argv(path: Path, out: Path, model: Path) -> list[str]:
    return ["train", "--train-file", str(path), "--model", str(model), "--output", str(out), "--max-length", "32",
            "--epochs", "1", "--quiet"]  # fmt: skip


def _train_splits(path: Path) -> dict[str, list]:
    """The raw splits `seqtune train --train-file PATH` would train on, from the config the CLI builds."""
    ns = build_parser().parse_args(_train_argv(path, Path("unused"), Path("unused")))
    task, raw = setup_data(load_config(ns.config, train_overrides(ns)[1]))
    return {"label_names": list(task.label_names or ())} | {split: raw[split].to_list() for split in raw}


def _all_cases():
    for name, expectations in {**CASES, **GENERATED}.items():
        for command, expect in zip(("train", "eval", "predict"), expectations, strict=True):
            yield pytest.param(name, command, expect, id=f"{name}-{command}")


@pytest.mark.parametrize(("name", "command", "expect"), list(_all_cases()))
def test_bad_input(name, command, expect, bad_run, cached_runs, clean_results, generated, tiny_model_dir, tmp_path,
                   capsys, monkeypatch):  # fmt: skip
    monkeypatch.chdir(tmp_path)  # a stray default runs/ folder would appear here
    path = generated[name] if name in GENERATED else BAD / name
    if command == "train":
        out = tmp_path / "out"
        if isinstance(expect, Error):
            code, _, err = run_cli(capsys, *_train_argv(path, out, tiny_model_dir))
            assert_clean_error(code, err, f"{path}{expect.fragment}")
            assert len(err) < 500, "a message must stay one readable line, whatever the file holds"
            assert_nothing_written(out)
        elif isinstance(expect, Labels):
            assert _train_splits(path)["label_names"] == list(expect.names)
        elif isinstance(expect, Rows):
            splits = _train_splits(path)
            assert len(splits["train"]) + len(splits["validation"]) == expect.n
        else:
            assert _train_splits(path) == clean_results["train"]
        return
    before = snapshot(bad_run)
    if command == "eval":
        code, stdout, err = run_cli(capsys, "eval", bad_run, "--input", path)
        if isinstance(expect, Error):
            assert_clean_error(code, err, f"{path}{expect.fragment}")
        else:
            assert code == 0, err
            metrics = json.loads(stdout)[str(path)]
            assert (
                metrics == clean_results["eval"]
                if isinstance(expect, Same)
                else metrics.keys() == {"accuracy", "f1", "f1_macro", "matthews_correlation"}
            )
    else:
        preds = tmp_path / "preds.jsonl"
        preds.write_text("earlier predictions\n")
        code, stdout, err = run_cli(capsys, "predict", bad_run, "--input", path, "--output", preds)
        if isinstance(expect, Error):
            assert_clean_error(code, err, f"{path}{expect.fragment}")
            assert preds.read_text() == "earlier predictions\n", "bad input must not truncate an existing output"
            assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("preds")) == ["preds.jsonl"]
        else:
            assert code == 0, err
            records = [json.loads(line) for line in preds.read_text().splitlines()]
            if isinstance(expect, Same):
                assert records == clean_results["predict"]
            else:
                assert len(records) == expect.n and [r["row"] for r in records] == list(range(expect.n))
    assert snapshot(bad_run) == before, "eval and predict never write into the run folder"


def test_regression_flag_names_the_bad_target(capsys, tiny_model_dir, tmp_path, monkeypatch):
    """With --regression the type is not guessed: a NaN or a word among the targets is named with its line."""
    monkeypatch.chdir(tmp_path)
    for name, line, value in (("nan_target.csv", 8, "NaN"), ("string_target.csv", 11, "high")):
        path = BAD / name
        code, _, err = run_cli(capsys, *_train_argv(path, tmp_path / "out", tiny_model_dir), "--regression")
        assert_clean_error(
            code,
            err,
            f"{path} line {line}: regression target {value!r} in column 'label' is not a number; fix the value or "
            "remove the row",
        )
        assert_nothing_written(tmp_path / "out")


def test_quoted_line_breaks_stay_inside_the_text():
    def texts(path: Path) -> list[str]:
        splits = _train_splits(path)
        return sorted(r["text"] for split in ("train", "validation") for r in splits[split])

    broken = texts(BAD / "quoted_newlines.csv")
    assert sum("\n" in t for t in broken) == 4
    assert sorted(t.replace("\n", " ") for t in broken) == texts(CLEAN)


def test_predict_bad_input_creates_no_output(capsys, bad_run, cached_runs, tmp_path):
    preds = tmp_path / "sub" / "preds.jsonl"
    code, _, err = run_cli(capsys, "predict", bad_run, "--input", BAD / "repeated_header.csv", "--output", preds)
    assert_clean_error(code, err, "repeats the header line")
    assert not (tmp_path / "sub").exists()


def test_eval_input_flags(capsys, bad_run, cached_runs, tmp_path):
    code, _, err = run_cli(capsys, "eval", bad_run, "--input", CLEAN, "--data-dir", tmp_path)
    assert_clean_error(code, err, "eval takes either --input FILE or --data-dir DIR, not both")
    code, _, err = run_cli(capsys, "eval", bad_run, "--input", CLEAN, "--max-eval-samples", 0)
    assert_clean_error(code, err, "--max-eval-samples 0: expected at least 1 row")
    code, out, err = run_cli(capsys, "eval", bad_run, "--input", CLEAN, "--max-eval-samples", 4)
    assert code == 0, err
    assert set(json.loads(out)[str(CLEAN)]) == {"accuracy", "f1", "f1_macro", "matthews_correlation"}


def test_corpus_is_small_and_complete():
    files = {p.name for p in BAD.iterdir() if p.name != "README.md" and not p.name.startswith(".")}
    assert files == set(CASES), "every corpus file needs an expectation in CASES (and the README)"
    assert sum((BAD / f).stat().st_size for f in files) < 100_000
    readme = (BAD / "README.md").read_text()
    assert all(f"`{f}`" in readme for f in [*files, *GENERATED])
