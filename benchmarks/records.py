"""Benchmark results as they finish: append one record to the JSON list and re-render its Markdown table, so an
interrupted benchmark keeps what it measured and a rerun skips it."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path


def append(out: Path, records: list[dict], record: dict, render: Callable[[list[dict]], str]) -> None:
    """Add ``record`` to ``records`` and to the file, keeping what other processes appended to the same file since
    ``records`` was read (benchmarks run side by side with ``--threads 1``)."""
    print(json.dumps(record), flush=True)
    on_disk = json.loads(out.read_text()) if out.is_file() else []
    records[:] = [*records, *(r for r in on_disk if r not in records), record]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=1))
    out.with_suffix(".md").write_text(render(records))


def write(stem: Path, record: dict, render: Callable[[dict], str]) -> None:
    """One benchmark's result: ``stem.json`` and its Markdown rendering ``stem.md``, printed too."""
    stem.with_suffix(".json").write_text(json.dumps(record, indent=1))
    stem.with_suffix(".md").write_text(render(record))
    print(render(record))


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of per-seed results.

    Example:
        >>> mean_std([0.5, 0.7]), mean_std([0.5])
        ((0.6, 0.14142135623730948), (0.5, 0.0))
    """
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def mean_pm(values: list[float]) -> str:
    """``mean ± std`` over seeds, to four places: ``0.6000 ± 0.1414``."""
    mean, std = mean_std(values)
    return f"{mean:.4f} ± {std:.4f}"


def replace_named(out: Path, record: dict, render: Callable[[list[dict]], str]) -> list[dict]:
    """Put ``record`` into the JSON list at ``out`` in place of the one with its ``name`` (a data set measured
    again), then re-render the Markdown table; returns the records."""
    records = json.loads(out.read_text()) if out.is_file() else []
    records = [r for r in records if r["name"] != record["name"]] + [record]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=1))
    out.with_suffix(".md").write_text(render(records))
    return records
