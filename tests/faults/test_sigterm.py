"""SIGTERM (what schedulers and `kill` send) stops like Ctrl-C: finish the step, save a checkpoint, exit 0."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from conftest import make_rows, write_csv

from seqtune.checkpoint import latest_checkpoint


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(tiny_model_dir, tmp_path):
    data = write_csv(tmp_path / "big.csv", make_rows(96) * 20)  # long enough that the signal lands mid-run
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "seqtune", "train", "--train-file", str(data), "--model", str(tiny_model_dir),
           "--max-length", "32", "--batch-size", "4", "--epochs", "5", "--output", str(out), "--quiet"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "train_log.jsonl"
    deadline = time.monotonic() + 120
    while not (log.is_file() and log.read_text().count("\n") >= 2):  # training is under way
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "stopped at step" in stdout and "(SIGTERM); checkpoint saved." in stdout
    assert f"Continue with: seqtune train --resume --output {out}" in stdout
    checkpoint = latest_checkpoint(out)
    assert checkpoint is not None and (checkpoint / "state.json").is_file()
    assert not (out / "task.json").exists()
    assert not list((out / "checkpoints").glob(".tmp-*"))
