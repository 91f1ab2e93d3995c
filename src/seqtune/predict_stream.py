"""`seqtune predict --input FILE --output FILE` for files of any size: read, tokenize and predict in chunks of rows,
so memory stays flat; each chunk's predictions are written as a numbered part, so an interrupted prediction
continues where it stopped (``--resume``); under ``torchrun`` each process takes every N-th chunk and the first
process joins the parts, in input order, into one output.

- Files up to `STREAM_BYTES` are read whole (with every check of `seqtune.readers`), then cut into chunks; larger
  CSV/TSV/JSONL files stream through the same row rules (`readers.delimited_records`, `readers.jsonl_records`), and
  Parquet streams by record batches.
- The output format follows its suffix: ``.jsonl`` (one JSON object per row: ``row`` plus what `predict` returns),
  ``.csv`` or ``.parquet`` (columns ``row``, ``label`` / ``labels`` / ``score``, and ``p:<label>`` per label).
- Parts live in ``<output>.parts/`` until the output is written (then they are deleted); ``parts.json`` there records
  which input, run and chunk size they belong to, so ``--resume`` never mixes two predictions.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seqtune.errors import SeqtuneError
from seqtune.readers import (
    SUFFIXES,
    Table,
    cell_text,
    delimited_records,
    jsonl_records,
    read_table,
    require_columns,
)

CHUNK_ROWS = 8192
STREAM_BYTES = 32 * 2**20  # larger input files are read in chunks instead of whole
OUTPUTS = (".jsonl", ".json", ".csv", ".parquet")


def predict_file(
    run: Any,
    input_path: str | Path,
    output_path: str | Path,
    resume: bool = False,
    chunk_rows: int = CHUNK_ROWS,
    progress: bool = True,
) -> int:
    """Predict every row of ``input_path`` into ``output_path``; returns the number of rows.

    Example:
        >>> predict_file("runs/mrpc", "pairs.parquet", "preds.parquet")  # doctest: +SKIP
        2000000
    """
    from seqtune.predict import _as_run, predict

    out = Path(output_path)
    if out.suffix.lower() not in OUTPUTS:
        raise SeqtuneError(f"--output {out}: unsupported type '{out.suffix}'; use one of {', '.join(OUTPUTS)}")
    loaded = _as_run(run)
    rank, size = _world()
    parts = out.with_name(out.name + ".parts")
    source = Path(input_path)
    size_bytes = source.stat().st_size if source.is_file() else None
    job = {"input": str(source.resolve()), "input_bytes": size_bytes, "run": str(loaded.run_dir.resolve()),
           "chunk_rows": chunk_rows}  # fmt: skip
    created = [d for d in out.parents if not d.exists()]  # deepest first
    _prepare_parts(parts, job, resume, rank, size)
    clock = _Progress(progress and rank == 0, _row_estimate(source))
    try:
        rows = _predict_parts(loaded, input_path, chunk_rows, parts, job, rank, size, clock, predict)
    except SeqtuneError:  # bad input: nothing written (an interruption, by contrast, keeps its parts for --resume)
        if rank == 0:
            shutil.rmtree(parts, ignore_errors=True)
            for folder in created:
                with contextlib.suppress(OSError):
                    folder.rmdir()
        raise
    _barrier(size)
    if rank == 0:
        _join(parts, out, loaded.task)
        shutil.rmtree(parts, ignore_errors=True)
    _barrier(size)
    return rows


def _predict_parts(
    loaded: Any,
    input_path: str | Path,
    chunk_rows: int,
    parts: Path,
    job: dict,
    rank: int,
    size: int,
    clock: Any,
    predict: Any,
) -> int:
    """Predict this process's chunks that have no part yet; returns the rows read."""
    rows = 0
    for index, (start, table, columns) in enumerate(read_chunks(loaded, input_path, chunk_rows)):
        rows = start + len(table.rows)
        # every process checks every row, so a bad cell stops them all alike (none waits for the others forever)
        texts = [cell_text(table, i, columns[0]) for i in range(len(table.rows))]
        pairs = [cell_text(table, i, columns[1]) for i in range(len(table.rows))] if len(columns) > 1 else None
        part = parts / f"part-{index:07d}.jsonl"
        if index % size != rank or part.is_file():  # another process's chunk, or done before the interruption
            continue
        records = predict(loaded, texts, pairs)
        if not parts.is_dir():  # made with the first part: a bad input file leaves no folder behind
            parts.mkdir(parents=True, exist_ok=True)
            (parts / "parts.json").write_text(json.dumps(job, indent=1))
        tmp = part.with_name(part.name + ".tmp")
        tmp.write_text("".join(json.dumps({"row": start + i, **r}) + "\n" for i, r in enumerate(records)))
        tmp.replace(part)  # a part exists whole or not at all
        clock.update(rows, len(records) * size)
    return rows


def read_chunks(loaded: Any, input_path: str | Path, chunk_rows: int) -> Iterator[tuple[int, Table, list[str]]]:
    """(first row number, rows, the input columns) per chunk of ``chunk_rows`` rows of the input file."""
    path = Path(input_path)
    kind = SUFFIXES.get(path.suffix.lower())
    if not path.is_file() or kind is None or path.stat().st_size <= STREAM_BYTES or kind == "json":
        table = read_table(path)  # small (or not a streamable kind): read whole, every check, then cut
        columns = _columns(loaded, table)
        for start in range(0, len(table.rows), chunk_rows):
            stop = start + chunk_rows
            yield (
                start,
                Table(path, table.columns, table.rows[start:stop], table.lines[start:stop], table.unit),
                columns,
            )
        return
    stream = _parquet_rows(path, chunk_rows) if kind == "parquet" else _text_rows(path, kind)
    columns: list[str] | None = None
    start, buffer = 0, None
    for header, unit, line, row in stream:
        if buffer is None:
            buffer = Table(path, header, [], [], unit)
            columns = _columns(loaded, buffer)
        buffer.rows.append(row)
        buffer.lines.append(line)
        if len(buffer.rows) == chunk_rows:
            yield start, buffer, columns  # type: ignore[misc]
            start += chunk_rows
            buffer = Table(path, header, [], [], unit)
    if buffer is not None and buffer.rows:
        yield start, buffer, columns  # type: ignore[misc]
    if buffer is None:
        raise SeqtuneError(f"{path}: no data rows; expected at least one row to predict")


def _columns(loaded: Any, table: Table) -> list[str]:
    """The run's input columns as this file names them (its own names, or the task's for GLUE files)."""
    wanted = loaded.input_columns()
    if not all(c in table.columns for c in wanted) and all(c in table.columns for c in loaded.task.text_columns):
        wanted = list(loaded.task.text_columns)
    require_columns(table, {c: f"a file with the column '{c}' (the run's input)" for c in wanted})
    return wanted


def _text_rows(path: Path, kind: str) -> Iterator[tuple[list[str], str, int, dict]]:
    with path.open("rb") as raw:
        head = raw.read(8192)
        if head[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in head:
            raise SeqtuneError(f"{path}: not UTF-8 text (UTF-16 or binary); re-save the file as UTF-8")
        raw.seek(0)
        handle = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        try:
            if kind in ("csv", "tsv"):
                delimiter = "," if kind == "csv" else "\t"
                import csv

                quoting = csv.QUOTE_MINIMAL if kind == "csv" else csv.QUOTE_NONE
                header, records = delimited_records(path, handle, delimiter, quoting)
                for line, row in records:
                    yield header, "line", line, row
            else:
                # lines end at \n only, as whole-file reading splits them (a JSON string may hold U+2028)
                numbered = ((n, line.rstrip("\r\n")) for n, line in enumerate(handle, start=1))
                for line, record in jsonl_records(path, numbered):
                    if not isinstance(record, dict):
                        raise SeqtuneError(f"{path} line {line}: expected a JSON object, found {type(record).__name__}")
                    yield list(record), "line", line, record
        except UnicodeDecodeError as exc:
            raise SeqtuneError(
                f"{path}: not valid UTF-8 (byte 0x{exc.object[exc.start]:02x}); re-save as UTF-8"
            ) from None


def _parquet_rows(path: Path, chunk_rows: int) -> Iterator[tuple[list[str], str, int, dict]]:
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a broken file
        raise SeqtuneError(f"{path}: cannot read as Parquet ({type(exc).__name__}); check the file") from None
    header, row = list(file.schema_arrow.names), 0
    for batch in file.iter_batches(batch_size=chunk_rows):
        for record in batch.to_pylist():
            row += 1
            yield header, "row", row, record


def _prepare_parts(parts: Path, job: dict, resume: bool, rank: int, size: int) -> None:
    """Start over (parts of an earlier run removed), or with ``resume`` keep the parts of this same prediction."""
    manifest = parts / "parts.json"
    if rank == 0:
        if parts.exists() and not resume:
            shutil.rmtree(parts)
        if resume and manifest.is_file() and json.loads(manifest.read_text()) != job:
            raise SeqtuneError(
                f"{parts}: holds parts of another prediction (other input, run or chunk size); remove it or drop "
                "--resume"
            )
    _barrier(size)


def _join(parts: Path, out: Path, task: Any) -> None:
    """The parts, in row order, as one output file (written whole, then moved into place)."""
    files = sorted(parts.glob("part-*.jsonl"))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    suffix = out.suffix.lower()
    if suffix in (".jsonl", ".json"):
        with tmp.open("wb") as sink:
            for file in files:
                with file.open("rb") as source:
                    shutil.copyfileobj(source, sink)
    else:
        _write_table(files, tmp, suffix, list(task.label_names or ()))
    tmp.replace(out)


def _flat(record: dict, labels: list[str]) -> dict:
    row = {"row": record["row"]}
    for key in ("label", "labels", "score"):
        if key in record:
            row[key] = record[key]
    for label in labels:
        row[f"p:{label}"] = record.get("probabilities", {}).get(label)
    return row


def _write_table(files: list[Path], tmp: Path, suffix: str, labels: list[str]) -> None:
    if suffix == ".csv":
        import csv

        with tmp.open("w", newline="") as sink:
            writer = None
            for file in files:
                for line in file.open():
                    row = _flat(json.loads(line), labels)
                    if "labels" in row:
                        row["labels"] = json.dumps(row["labels"])
                    if writer is None:
                        writer = csv.DictWriter(sink, fieldnames=list(row))
                        writer.writeheader()
                    writer.writerow(row)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for file in files:  # one row group per part: flat memory
            batch = pa.Table.from_pylist([_flat(json.loads(line), labels) for line in file.open()])
            if writer is None:
                writer = pq.ParquetWriter(tmp, batch.schema)
            writer.write_table(batch)
    finally:
        if writer is not None:
            writer.close()


def _world() -> tuple[int, int]:
    """(rank, size) under torchrun (a gloo process group is started when there is none), else (0, 1)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return dist.get_rank(), dist.get_world_size()


def _barrier(size: int) -> None:
    if size > 1:
        import torch.distributed as dist

        dist.barrier()


def _row_estimate(path: Path) -> int | None:
    """About how many rows the input has, for the ETA: Parquet's metadata, else its line count (one pass at disk
    speed; quoted line breaks make it an over-estimate)."""
    kind = SUFFIXES.get(path.suffix.lower())
    if not path.is_file() or kind is None:
        return None
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            return pq.ParquetFile(path).metadata.num_rows
        except Exception:  # noqa: BLE001 - a broken file is reported when it is read
            return None
    lines = 0
    with path.open("rb") as f:
        while block := f.read(2**24):
            lines += block.count(b"\n")
    return max(lines - (1 if kind in ("csv", "tsv") else 0), 1)


class _Progress:
    """One line per chunk on stderr: rows done, rows/s, and the ETA."""

    def __init__(self, enabled: bool, total: int | None):
        self.enabled, self.total, self.started, self.rows = enabled, total, time.perf_counter(), 0

    def update(self, rows_seen: int, predicted: int) -> None:
        self.rows += predicted
        if not self.enabled:
            return
        elapsed = time.perf_counter() - self.started
        rate = self.rows / elapsed if elapsed > 0 else 0.0
        eta = ""
        if self.total and rate > 0:
            left = max(self.total - rows_seen, 0) / rate
            eta = f", ETA {int(left // 60)}:{int(left % 60):02d}"
        of = f"/{self.total:,}" if self.total else ""
        print(f"predict: {rows_seen:,}{of} rows, {rate:,.0f} rows/s{eta}", file=sys.stderr, flush=True)
