"""SIGTERM (what schedulers and `kill` send) stops like Ctrl-C: finish the step, save a checkpoint, exit 0."""

from __future__ import annotations

import signal

from conftest import interrupt_training

from seqtune.checkpoint import latest_checkpoint


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(tiny_model_dir, tmp_path):
    code, stdout, stderr, out = interrupt_training(tiny_model_dir, tmp_path, signal.SIGTERM)
    assert code == 0, stderr
    assert "stopped at step" in stdout and "(SIGTERM); checkpoint saved." in stdout
    assert f"Continue with: seqtune train --resume --output {out}" in stdout
    checkpoint = latest_checkpoint(out)
    assert checkpoint is not None and (checkpoint / "state.json").is_file()
    assert not (out / "task.json").exists()
    assert not list((out / "checkpoints").glob(".tmp-*"))
