"""The real packaged MiniLM on a slice of real GLUE MRPC: the model learns, end to end through the CLI."""

from __future__ import annotations

import json

import pytest
from conftest import GLUE_DIR

from seqtune.cli import main

pytestmark = pytest.mark.integration

MRPC_MAJORITY = 279 / 408  # 0.684: always answering "equivalent" on the dev set


@pytest.mark.skipif(not (GLUE_DIR / "MRPC" / "train.tsv").is_file(), reason=f"GLUE MRPC not found at {GLUE_DIR}")
def test_minilm_learns_mrpc_slice(tmp_path, capsys):
    out = tmp_path / "mrpc"
    code = main(
        [
            "train", "mrpc", "--data-dir", str(GLUE_DIR), "--output", str(out), "--quiet",
            "--max-train-samples", "1200", "--epochs", "2", "--max-length", "128", "--batch-size", "16",
        ]
    )  # fmt: skip
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    dev = metrics["best"]["metrics"]["validation"]
    assert dev["accuracy"] > MRPC_MAJORITY + 0.03, dev  # clearly above always-"equivalent"
    assert "mrpc done" in capsys.readouterr().out
    # the saved run predicts with real label names
    assert main(["predict", str(out), "--text", "A cat sat.", "--text-pair", "A cat was sitting."]) == 0
    record = json.loads(capsys.readouterr().out)[0]
    assert record["label"] in {"equivalent", "not_equivalent"}
