"""Read tabular text files (CSV, TSV, JSONL/JSON, Parquet) into rows, with errors that name the file and line.

Readers return `Table`: column names plus rows as dicts, each row remembering the line it came from so later
checks (empty text, unknown label) can point at it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqtune.errors import SeqtuneError

SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}

# GLUE's texts hold unbalanced quote characters, and so do many real TSV exports: a field never spans lines.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
_MAX_HEADER = 100_000  # characters of column names; longer means the "header" is really the whole file


@dataclass
class Table:
    """Rows read from one file. ``lines[i]`` is where row ``i`` starts (1-based, header included)."""

    path: Path
    columns: list[str]
    rows: list[dict[str, Any]]
    lines: list[int]
    unit: str = "line"
    """What ``lines`` count: file lines, Parquet rows, or records of a JSON array."""

    def where(self, i: int) -> str:
        """'file line N' for row ``i``, for error messages."""
        return f"{self.path} {self.unit} {self.lines[i]}"


def clip(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: a 10 MB cell or header must not become a 10 MB message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(text):,} characters)"


def _utf16_without_bom(sample: bytes) -> bool:
    """ASCII-heavy UTF-16 text: every other byte is NUL (odd bytes for little-endian, even for big-endian)."""
    if len(sample) < 4:
        return False
    even, odd = sample[0::2], sample[1::2]
    return (odd.count(0) > 0.9 * len(odd) and even.count(0) == 0) or (
        even.count(0) > 0.9 * len(even) and odd.count(0) == 0
    )


def _check_file(path: Path) -> None:
    if not path.exists():
        raise SeqtuneError(f"{path}: file not found; check the path (relative paths start at {Path.cwd()})")
    if path.is_dir():
        raise SeqtuneError(f"{path}: is a folder, expected a data file (.csv, .tsv, .jsonl, .parquet)")
    if path.stat().st_size == 0:
        raise SeqtuneError(f"{path}: file is empty; expected a header line and at least one row")


def read_text(path: Path) -> str:
    """UTF-8 text (BOM stripped). Binary or wrongly encoded files get one clear error."""
    data = path.read_bytes()
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise SeqtuneError(f"{path}: encoded as UTF-16, expected UTF-8 text; re-save the file as UTF-8")
    if _utf16_without_bom(data[:8192]):
        raise SeqtuneError(
            f"{path}: looks like UTF-16 text without a byte-order mark (every other byte is NUL), expected UTF-8; "
            "re-save the file as UTF-8"
        )
    if b"\x00" in data[:8192]:
        raise SeqtuneError(f"{path}: looks like a binary file (NUL bytes), expected UTF-8 text; export it as CSV/TSV")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SeqtuneError(
            f"{path} line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x}); re-save the file as UTF-8"
        ) from None


def _read_delimited(path: Path, delimiter: str, quoting: int) -> Table:
    # StringIO(newline="") splits on \n / \r only: str.splitlines would also break lines at \x0c, \x1c or \u2028
    # inside a text, shifting fields and line numbers.
    header, records = delimited_records(path, io.StringIO(read_text(path), newline=""), delimiter, quoting)
    rows, lines = [], []
    for line, row in records:
        rows.append(row)
        lines.append(line)
    return Table(path, header, rows, lines)


def delimited_records(
    path: Path, handle: Any, delimiter: str, quoting: int
) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """The header (checked) and a lazy stream of (line, row) of a CSV/TSV text stream: the one set of rules that
    reading a whole file and streaming a big one (`seqtune.predict_stream`) share."""
    reader = csv.reader(handle, delimiter=delimiter, quoting=quoting, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise SeqtuneError(f"{path}: file has no header line; expected column names on the first line") from None
    except csv.Error as exc:
        raise SeqtuneError(f"{path} line 1: cannot parse the header ({exc})") from None
    header = [h.strip() for h in header]
    if sum(map(len, header)) > _MAX_HEADER:
        raise SeqtuneError(
            f"{path} line 1: the header line holds {sum(map(len, header)):,} characters in "
            f"{len(header):,} column(s); expected a line of column names: the file has no line break after its "
            "header, or is not a delimited text export; check the file"
        )
    if not any(header):
        raise SeqtuneError(f"{path} line 1: header line is empty; expected column names on the first line")
    if len(header) == 1 and delimiter == "\t" and "," in header[0]:
        raise SeqtuneError(f"{path} line 1: header has no tab but has commas; it looks like CSV, rename it to .csv")
    if delimiter == "," and any("\t" in h for h in header):
        raise SeqtuneError(
            f"{path} line 1: header is separated by tabs, not commas; it looks like TSV, rename it to .tsv"
        )
    if len(header) == 1 and ";" in header[0]:
        raise SeqtuneError(
            f"{path} line 1: header {clip(header[0])} is one column separated by semicolons; expected "
            f"{'commas' if delimiter == ',' else 'tabs'}: re-export with that separator"
        )
    duplicated = sorted(h for h, n in Counter(header).items() if n > 1)
    if duplicated:
        raise SeqtuneError(
            f"{path} line 1: duplicated column name(s) {clip(duplicated, 200)}; give every column a unique name"
        )
    return header, _delimited_rows(path, reader, header, delimiter)


def _delimited_rows(path: Path, reader: Any, header: list[str], delimiter: str) -> Iterator[tuple[int, dict]]:
    line = reader.line_num
    while True:
        start = line + 1
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if "end of data" in str(exc):
                hint = "a quote opened on this line never closes"
            elif reader.line_num > start:
                hint = f"a quote opened on this line runs on to line {reader.line_num}"
            else:
                hint = "check quoting"
            raise SeqtuneError(
                f"{path} line {start}: cannot parse ({exc}); {hint}: quote fields that contain quotes, "
                'commas or line breaks as "..." and double inner quotes ("")'
            ) from None
        line = reader.line_num
        if not values or all(not v.strip() for v in values):
            continue  # blank lines carry no example
        if [v.strip() for v in values] == header:
            raise SeqtuneError(
                f"{path} line {start}: repeats the header line; the file looks like several exports joined together: "
                "remove the repeated header line"
            )
        if len(values) != len(header):
            raise SeqtuneError(
                f"{path} line {start}: expected {len(header)} fields as in the header, found {len(values)}; "
                f"check the delimiter ({'tab' if delimiter == chr(9) else 'comma'}) and quoting on that line"
            )
        yield start, dict(zip(header, values, strict=True))


def _read_jsonl(path: Path) -> Table:
    text = read_text(path)
    stripped = text.lstrip()
    unit = "line"
    if path.suffix.lower() == ".json" and stripped.startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SeqtuneError(f"{path} line {exc.lineno}: invalid JSON ({exc.msg})") from None
        numbered, unit = [(i + 1, r) for i, r in enumerate(records)], "record"
    else:
        # split("\n"), not splitlines(): JSON strings may hold a raw U+2028, which splitlines treats as a line end.
        numbered = list(jsonl_records(path, enumerate(text.split("\n"), start=1)))
    columns: list[str] = []
    for n, record in numbered:
        _check_object(path, unit, n, record)
        columns += [k for k in record if k not in columns]
    # Every row gets every column: a key missing from one record reads as null (an empty value), not a KeyError.
    rows = [{c: r.get(c) for c in columns} for _, r in numbered]
    return Table(path, columns, rows, [n for n, _ in numbered], unit)


def jsonl_records(path: Path, numbered_lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, Any]]:
    """(line, parsed value) of each non-blank JSON line: the rules reading a whole file and streaming share."""
    for n, raw in numbered_lines:
        if not raw.strip():
            continue
        try:
            yield n, json.loads(raw)
        except json.JSONDecodeError as exc:
            raise SeqtuneError(f"{path} line {n}: invalid JSON ({exc.msg}); expected one object per line") from None


def _check_object(path: Path, unit: str, n: int, record: Any) -> None:
    if not isinstance(record, dict):
        raise SeqtuneError(
            f'{path} {unit} {n}: expected a JSON object like {{"text": ..., "label": ...}}, '
            f"found {type(record).__name__}"
        )


def _read_parquet(path: Path) -> Table:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a broken file
        raise SeqtuneError(f"{path}: cannot read as Parquet ({type(exc).__name__}); check the file") from None
    rows = table.to_pylist()
    return Table(path, list(table.column_names), rows, list(range(1, len(rows) + 1)), "row")


def read_table(path: str | Path) -> Table:
    """Read a data file by its suffix.

    Example:
        >>> table = read_table("tickets.csv")  # doctest: +SKIP
        >>> table.columns
        ['body', 'team']
    """
    p = Path(path)
    kind = SUFFIXES.get(p.suffix.lower())
    if kind is None:
        raise SeqtuneError(f"{p}: unsupported file type '{p.suffix}'; expected one of {', '.join(SUFFIXES)}")
    _check_file(p)
    if kind == "csv":
        table = _read_delimited(p, ",", csv.QUOTE_MINIMAL)
    elif kind == "tsv":
        table = _read_delimited(p, "\t", csv.QUOTE_NONE)
    elif kind == "parquet":
        table = _read_parquet(p)
    else:
        table = _read_jsonl(p)
    if not table.rows:
        found = "only a header" if kind in ("csv", "tsv") else "no records"
        raise SeqtuneError(f"{p}: no data rows, {found}; expected at least one example, add examples")
    return table


def require_columns(table: Table, wanted: dict[str, str]) -> None:
    """Check that every wanted column exists. ``wanted`` maps column -> the flag that names it."""
    for column, flag in wanted.items():
        if column not in table.columns:
            raise SeqtuneError(
                f"{table.path}: missing column '{column}'; found columns {clip(table.columns, 300)}; "
                f"pass {flag} with one of them"
            )


def cell_text(table: Table, i: int, column: str) -> str:
    """Row ``i``'s text in ``column``: a non-empty string (numbers are taken as written), else one clear error."""
    value = table.rows[i][column]
    if isinstance(value, list | dict):
        raise SeqtuneError(
            f"{table.where(i)}: text in column '{column}' is a JSON {'list' if isinstance(value, list) else 'object'} "
            f"{clip(value)}, expected a string; write the text as one string"
        )
    if value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip():
        raise SeqtuneError(f"{table.where(i)}: empty text in column '{column}'; fill it or remove the row")
    return str(value)
