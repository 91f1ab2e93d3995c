"""Run folder helpers: trimming the training log on resume."""

from __future__ import annotations

import json
import re

import pytest

from seqtune.errors import SeqtuneError
from seqtune.runfolder import trim_log


def _log(tmp_path, steps: list[int], tail: bytes = b"") -> bytes:
    data = b"".join(json.dumps({"step": s, "loss": 0.5}).encode() + b"\n" for s in steps) + tail
    (tmp_path / "train_log.jsonl").write_bytes(data)
    return data


def _steps(tmp_path) -> list[int]:
    return [json.loads(line)["step"] for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]


def test_trim_keeps_lines_up_to_the_checkpoint(tmp_path):
    _log(tmp_path, [10, 20, 30, 40])
    trim_log(tmp_path, 20)
    assert _steps(tmp_path) == [10, 20]
    assert not (tmp_path / "train_log.jsonl.tmp").exists()


@pytest.mark.parametrize(
    "tail",
    [b'{"step": 50, "lo', b'{"step": 5', b"{", '{"step": 50, "note": "\u00e9'.encode()[:-1], b"\x00\x00\x00"],
    ids=["mid-key", "mid-number", "brace", "mid-utf8", "nul-bytes"],
)
def test_a_torn_last_line_from_a_kill_is_dropped(tmp_path, tail):
    _log(tmp_path, [10, 20, 30], tail=tail)
    trim_log(tmp_path, 20)
    assert _steps(tmp_path) == [10, 20]
    _log(tmp_path, [10, 20], tail=tail)
    trim_log(tmp_path, 100)  # nothing after the checkpoint: only the torn line goes
    assert _steps(tmp_path) == [10, 20]


def test_a_damaged_middle_line_is_an_error_and_the_log_stays(tmp_path):
    data = b'{"step": 10}\n{"step": 2\n{"step": 30}\n'
    (tmp_path / "train_log.jsonl").write_bytes(data)
    log = tmp_path / "train_log.jsonl"
    with pytest.raises(SeqtuneError, match=re.escape(f"{log} line 2: not a log record")):
        trim_log(tmp_path, 20)
    assert log.read_bytes() == data


def test_no_log_is_fine(tmp_path):
    trim_log(tmp_path, 5)
    assert not (tmp_path / "train_log.jsonl").exists()
