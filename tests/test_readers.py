"""Tests for seqtune.readers: reading CSV/TSV/JSONL/JSON/Parquet into a Table, and the errors for broken files.

Every error test pins the key part of the message: the file, the 1-based file line (header = line 1) or row,
and the fix the user is told to make.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seqtune.errors import SeqtuneError
from seqtune.readers import read_table, require_columns


def _write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def _raises(fragment: str):
    return pytest.raises(SeqtuneError, match=re.escape(fragment))


# ---------------------------------------------------------------- reading what is there


def test_csv_rows_columns_and_lines(tmp_path):
    path = _write(tmp_path / "d.csv", 'text,label\nhello,pos\n"a, quoted ""text""",neg\n')
    table = read_table(path)
    assert table.columns == ["text", "label"]
    assert table.rows == [{"text": "hello", "label": "pos"}, {"text": 'a, quoted "text"', "label": "neg"}]
    assert table.lines == [2, 3]
    assert table.where(1) == f"{path} line 3"


def test_csv_multiline_field_and_blank_lines_keep_file_line_numbers(tmp_path):
    # line 1 header, 2-3 one record (quoted line break), 4 blank, 5 a record, 6 blank, 7 a record
    path = _write(tmp_path / "d.csv", 'text,label\n"two\nlines",a\n\nthree,b\n\r\nfour,a\n')
    table = read_table(path)
    assert [r["text"] for r in table.rows] == ["two\nlines", "three", "four"]
    assert table.lines == [2, 5, 7]


def test_crlf_and_bom_are_handled(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"\xef\xbb\xbftext,label\r\nhi,a\r\nho,b\r\n")
    table = read_table(path)
    assert table.columns == ["text", "label"]
    assert table.rows[1] == {"text": "ho", "label": "b"}


def test_unicode_line_separators_inside_text_do_not_split_rows(tmp_path):
    # str.splitlines() would break these lines at U+2028 / form feed and report a wrong field count.
    text = "text,label\nfirst\u2028part,a\nform\x0cfeed,b\n"
    table = read_table(_write(tmp_path / "d.csv", text))
    assert [r["text"] for r in table.rows] == ["first\u2028part", "form\x0cfeed"]
    assert table.lines == [2, 3]
    jsonl = _write(tmp_path / "d.jsonl", json.dumps({"text": "x\u2028y", "label": "a"}, ensure_ascii=False) + "\n")
    assert read_table(jsonl).rows == [{"text": "x\u2028y", "label": "a"}]


def test_tsv_reads_unbalanced_quotes_literally(tmp_path):
    # QUOTE_NONE: a quote never opens a field that runs over the following lines.
    path = _write(tmp_path / "d.tsv", 'text\tlabel\n"He said "hi\ta\nit \'s "odd\tb\nthird\ta\n')
    table = read_table(path)
    assert [r["text"] for r in table.rows] == ['"He said "hi', "it 's \"odd", "third"]
    assert table.lines == [2, 3, 4]


def test_txt_is_read_as_tsv(tmp_path):
    table = read_table(_write(tmp_path / "d.txt", "text\tlabel\nhi\ta\n"))
    assert table.rows == [{"text": "hi", "label": "a"}]


def test_jsonl_rows_lines_and_missing_keys(tmp_path):
    path = _write(tmp_path / "d.jsonl", '{"text": "a", "label": ["x", "y"]}\n\n{"text": "b", "extra": 1}\n')
    table = read_table(path)
    assert table.columns == ["text", "label", "extra"]
    # a key absent from a record reads as None (so later checks report an empty value, not a KeyError)
    assert table.rows == [
        {"text": "a", "label": ["x", "y"], "extra": None},
        {"text": "b", "label": None, "extra": 1},
    ]
    assert table.lines == [1, 3]


def test_json_array_counts_records(tmp_path):
    path = _write(tmp_path / "d.json", json.dumps([{"text": "a", "label": 1}, {"text": "b", "label": 0}], indent=2))
    table = read_table(path)
    assert [r["text"] for r in table.rows] == ["a", "b"]
    assert table.where(1) == f"{path} record 2"


def test_parquet_rows(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "label": [["x"], ["x", "y"]]}), path)
    table = read_table(path)
    assert table.columns == ["text", "label"]
    assert table.rows[1] == {"text": "b", "label": ["x", "y"]}
    assert table.where(0) == f"{path} row 1"


def test_require_columns_names_existing_columns_and_flag(tmp_path):
    path = _write(tmp_path / "d.csv", "body,team\nhi,a\n")
    table = read_table(path)
    require_columns(table, {"body": "--text-column"})
    with _raises(f"{path}: missing column 'text'; found columns ['body', 'team']; pass --text-column with one of them"):
        require_columns(table, {"text": "--text-column", "team": "--label-column"})


# ---------------------------------------------------------------- broken files


def test_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with _raises(f"{path}: file not found; check the path"):
        read_table(path)


def test_folder_instead_of_file(tmp_path):
    folder = tmp_path / "data.csv"
    folder.mkdir()
    with _raises(f"{folder}: is a folder, expected a data file"):
        read_table(folder)


def test_unsupported_suffix(tmp_path):
    path = _write(tmp_path / "d.xlsx", "x")
    with _raises(f"{path}: unsupported file type '.xlsx'; expected one of .csv, .tsv"):
        read_table(path)


def test_empty_file(tmp_path):
    path = _write(tmp_path / "d.csv", "")
    with _raises(f"{path}: file is empty; expected a header line and at least one row"):
        read_table(path)


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_header_only(tmp_path, suffix):
    path = _write(tmp_path / f"d{suffix}", "text,label\n" if suffix == ".csv" else "text\tlabel\n\n")
    with _raises(f"{path}: no data rows, only a header; expected at least one example"):
        read_table(path)


def test_jsonl_with_only_blank_lines(tmp_path):
    path = _write(tmp_path / "d.jsonl", "\n  \n")
    with _raises(f"{path}: no data rows, no records"):
        read_table(path)


def test_blank_first_line_is_not_a_header(tmp_path):
    path = _write(tmp_path / "d.csv", "\ntext,label\nhi,a\n")
    with _raises(f"{path} line 1: header line is empty; expected column names on the first line"):
        read_table(path)


def test_binary_file(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"PK\x03\x04\x00\x00\x08\x00binary")
    with _raises(f"{path}: looks like a binary file (NUL bytes), expected UTF-8 text"):
        read_table(path)


def test_utf16_file(tmp_path):
    path = _write(tmp_path / "d.csv", "\ufefftext,label\nhi,a\n", encoding="utf-16-le")
    with _raises(f"{path}: encoded as UTF-16, expected UTF-8 text; re-save the file as UTF-8"):
        read_table(path)


def test_invalid_utf8_names_the_line(tmp_path):
    path = _write(tmp_path / "d.csv", "text,label\nfine,a\ncaf\u00e9 cr\u00e8me,b\n", encoding="latin-1")
    with _raises(f"{path} line 3: not valid UTF-8 (byte 0xe9); re-save the file as UTF-8"):
        read_table(path)


@pytest.mark.parametrize(
    ("name", "text", "line", "found", "delimiter"),
    [
        ("d.csv", "text,label\nok,a\nhello, world,b\n", 3, 3, "comma"),
        ("d.tsv", "text\tlabel\nok\ta\n\nonly one field\n", 4, 1, "tab"),
        ("d.csv", 'text,label\n"multi\nline",a\nbad\n', 4, 1, "comma"),
    ],
)
def test_wrong_field_count_names_the_line(tmp_path, name, text, line, found, delimiter):
    path = _write(tmp_path / name, text)
    with _raises(
        f"{path} line {line}: expected 2 fields as in the header, found {found}; check the delimiter ({delimiter})"
    ):
        read_table(path)


def test_unclosed_quote_names_the_line_where_it_opens(tmp_path):
    path = _write(tmp_path / "d.csv", 'text,label\nok,a\n"never closed,b\nmore,a\n')
    with _raises(f"{path} line 3: cannot parse (unexpected end of data); a quote opened on this line never closes"):
        read_table(path)


def test_invalid_json_line(tmp_path):
    path = _write(tmp_path / "d.jsonl", '{"text": "a", "label": 1}\n\n{"text": "b", "label": }\n')
    with _raises(f"{path} line 3: invalid JSON (Expecting value); expected one object per line"):
        read_table(path)


def test_json_line_that_is_not_an_object(tmp_path):
    path = _write(tmp_path / "d.jsonl", '{"text": "a"}\n["b", 1]\n')
    with _raises(f"{path} line 2: expected a JSON object"):
        read_table(path)


def test_invalid_json_array(tmp_path):
    path = _write(tmp_path / "d.json", '[\n  {"text": "a"},\n  {"text": }\n]\n')
    with _raises(f"{path} line 3: invalid JSON (Expecting value)"):
        read_table(path)


def test_csv_that_is_really_tab_separated(tmp_path):
    path = _write(tmp_path / "d.csv", "text\tlabel\nhi\ta\n")
    with _raises(f"{path} line 1: header is separated by tabs, not commas; it looks like TSV, rename it to .tsv"):
        read_table(path)


def test_tsv_that_is_really_comma_separated(tmp_path):
    path = _write(tmp_path / "d.tsv", "text,label\nhi,a\n")
    with _raises(f"{path} line 1: header has no tab but has commas; it looks like CSV, rename it to .csv"):
        read_table(path)


def test_semicolon_separated_csv(tmp_path):
    path = _write(tmp_path / "d.csv", "text;label\nhi;a\n")
    with _raises(f"{path} line 1: header 'text;label' is one column separated by semicolons; expected commas"):
        read_table(path)


def test_duplicated_header(tmp_path):
    path = _write(tmp_path / "d.csv", "text,label,text\nhi,a,ho\n")
    with _raises(f"{path} line 1: duplicated column name(s) ['text']; give every column a unique name"):
        read_table(path)


def test_broken_parquet(tmp_path):
    path = _write(tmp_path / "d.parquet", "not parquet at all")
    with _raises(f"{path}: cannot read as Parquet"):
        read_table(path)
