"""Property-based tests of the readers and label parsing (hypothesis).

What the csv / json modules write, our readers read back unchanged; whatever bytes a file holds, reading it (and
turning it into training data) either works or raises `SeqtuneError` with a one-line message — never another
exception. Bounded and derandomized, so the module runs in seconds and fails the same way every time.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from seqtune.config import DataConfig
from seqtune.data import load_custom
from seqtune.errors import SeqtuneError
from seqtune.labels import infer_problem_type, label_items, label_key, label_names
from seqtune.readers import Table, read_table

PROPS = settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow], database=None
)

# Any text but NUL (a NUL in the first 8 KB marks a file as binary, by design) and surrogates (not encodable).
ANY_CHAR = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
TRICKY = st.sampled_from(['"', "'", ",", "\t", "\n", "\r", "\r\n", ";", " ", "\ufeff", "\u2028", "\x0c", "é", "😀"])
FIELD = st.lists(st.one_of(st.text(ANY_CHAR, max_size=8), TRICKY), max_size=6).map("".join)
NAME = st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd")), min_size=1, max_size=6)


def _tmp(suffix: str, data: bytes) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="seqtune-props-"))
    path = folder / f"data{suffix}"
    path.write_bytes(data)
    return path


@st.composite
def tables(draw, field=FIELD) -> tuple[list[str], list[list[str]]]:
    """A header of 2-4 unique names and 1-6 rows; no row blank (blank rows are skipped) or equal to the header."""
    header = draw(st.lists(NAME, min_size=2, max_size=4, unique=True))
    rows = draw(st.lists(st.lists(field, min_size=len(header), max_size=len(header)), min_size=1, max_size=6))
    assume(all(any(v.strip() for v in row) and [v.strip() for v in row] != header for row in rows))
    return header, rows


@PROPS
@given(tables(), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_csv_written_by_the_csv_module_reads_back(table, lineterminator, bom):
    header, rows = table
    if lineterminator == "\n":
        # Python 3.11's writer then leaves a bare \r unquoted, and "0\r" + "\n" is byte for byte a CRLF line end:
        # no reader can tell them apart (the csv module's own cannot either). With "\r\n" it quotes them.
        rows = [[v.replace("\r", "\u240d") for v in row] for row in rows]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=lineterminator)
    writer.writerow(header)
    writer.writerows(rows)
    path = _tmp(".csv", ("\ufeff" if bom else "").encode() + buf.getvalue().encode())
    read = read_table(path)
    assert read.columns == header
    assert read.rows == [dict(zip(header, row, strict=True)) for row in rows]
    assert read.lines[0] == 2 and read.lines == sorted(read.lines)


@PROPS
@given(tables(field=FIELD.map(lambda s: s.replace("\t", " ").replace("\r", " ").replace("\n", " "))))
def test_tsv_reads_back_with_quotes_taken_literally(table):
    header, rows = table
    text = "".join("\t".join(r) + "\n" for r in [header, *rows])
    read = read_table(_tmp(".tsv", text.encode()))
    assert read.rows == [dict(zip(header, row, strict=True)) for row in rows]
    assert read.lines == list(range(2, len(rows) + 2))


JSON_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(ANY_CHAR, max_size=10),
    st.lists(st.text(ANY_CHAR, max_size=5), max_size=3),
)
RECORD = st.dictionaries(st.text(ANY_CHAR, min_size=1, max_size=6), JSON_VALUE, max_size=4)


@PROPS
@given(st.lists(RECORD, min_size=1, max_size=6), st.booleans(), st.sampled_from([".jsonl", ".json"]))
def test_json_lines_and_arrays_read_back(records, ascii_only, suffix):
    if suffix == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=ascii_only) + "\n" for r in records)
    else:
        text = json.dumps(records, ensure_ascii=ascii_only, indent=1)
    read = read_table(_tmp(suffix, text.encode()))
    columns = list(dict.fromkeys(k for r in records for k in r))
    assert read.columns == columns
    assert read.rows == [{c: r.get(c) for c in columns} for r in records]  # a missing key reads as None


def _one_line_or_table(path: Path) -> Table | None:
    try:
        return read_table(path)
    except SeqtuneError as exc:
        assert "\n" not in str(exc) and str(exc), repr(exc)
        assert len(str(exc)) < 1000
        return None


SUFFIXES = st.sampled_from([".csv", ".tsv", ".jsonl", ".json", ".parquet"])


@PROPS
@given(st.binary(max_size=400), SUFFIXES)
def test_arbitrary_bytes_give_a_table_or_one_user_error(data, suffix):
    _one_line_or_table(_tmp(suffix, data))


JSONISH = st.sampled_from(["text", "label", "{", "}", "[", "]", ":", '"text"', "1.5", "NaN", "null"])
TEXTISH = st.lists(st.one_of(st.text(ANY_CHAR, max_size=6), TRICKY, JSONISH), max_size=40).map("".join)


@PROPS
@given(TEXTISH, st.sampled_from([".csv", ".tsv", ".jsonl"]), st.sampled_from(["auto", "multi_label", "regression"]))
def test_text_files_give_training_data_or_one_user_error(text, suffix, problem_type):
    """Past the reader too: columns, labels and problem types raise nothing but `SeqtuneError`."""
    header = {".csv": "text,label\n", ".tsv": "text\tlabel\n", ".jsonl": ""}[suffix]
    path = _tmp(suffix, (header + text).encode())
    try:
        load_custom(DataConfig(train_file=str(path), problem_type=problem_type))
    except SeqtuneError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 1000, repr(exc)


# ---------------------------------------------------------------- label parsing


@PROPS
@given(st.integers(-(10**6), 10**6))
def test_a_number_is_one_label_however_it_is_written(n):
    assert label_key(n) == label_key(str(n)) == label_key(float(n)) == label_key(f" {n}.0 ") == str(n)


LABEL = st.text(st.characters(blacklist_categories=("Cs", "Zs", "Cc")), min_size=1, max_size=5)


@PROPS
@given(st.lists(LABEL, min_size=1, max_size=5), st.sampled_from([",", "|", ";"]))
def test_multi_label_string_and_list_give_the_same_items(items, delimiter):
    assume(all(delimiter not in x and x.strip() == x for x in items))
    assert label_items(delimiter.join(items), delimiter) == items
    assert label_items(f" {delimiter} ".join(items) + delimiter, delimiter) == items
    assert label_items(items, delimiter) == items


def _table(labels: list) -> Table:
    rows = [{"text": "t", "label": v} for v in labels]
    return Table(Path("d.csv"), ["text", "label"], rows, list(range(2, len(rows) + 2)))


@PROPS
@given(st.lists(st.one_of(st.integers(-50, 50), LABEL), min_size=1, max_size=12))
def test_label_names_are_sorted_unique_and_cover_every_row(labels):
    names = label_names(_table(labels), "label", "single_label_classification", ",")
    assert len(set(names)) == len(names)
    assert {label_key(v) for v in labels} == set(names)
    numeric = [n for n in names if n.lstrip("-").isdecimal()]
    if len(numeric) == len(names):
        assert [int(n) for n in names] == sorted(int(n) for n in names)  # 2 before 10
    else:
        assert list(names) == sorted(names)


@PROPS
@given(
    st.lists(st.floats(-100, 100, allow_nan=False), min_size=1, max_size=10),
    st.sampled_from(["NaN", "high", "n/a", "inf"]),
    st.integers(0, 10),
)
def test_a_word_among_regression_targets_is_an_error_not_a_class(targets, word, at):
    assume(any(t != int(t) for t in targets))
    assert infer_problem_type(_table([str(t) for t in targets]), "label", "auto", ",") == "regression"
    values = [str(t) for t in targets]
    values.insert(min(at, len(values)), word)
    with pytest.raises(SeqtuneError, match=f"line {min(at, len(targets)) + 2}: '{word}' in column 'label' is not a"):
        infer_problem_type(_table(values), "label", "auto", ",")
    ints = [str(int(t)) for t in targets]
    assert infer_problem_type(_table([*ints, word]), "label", "auto", ",") == "single_label_classification"
