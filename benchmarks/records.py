"""Benchmark results as they finish: append one record to the JSON list and re-render its Markdown table, so an
interrupted benchmark keeps what it measured and a rerun skips it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def append(out: Path, records: list[dict], record: dict, render: Callable[[list[dict]], str]) -> None:
    print(json.dumps(record), flush=True)
    records.append(record)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=1))
    out.with_suffix(".md").write_text(render(records))
