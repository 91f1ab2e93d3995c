"""--ema DECAY: the moving average of the weights is what is scored and kept (the live weights are scored beside
it), the run folder predicts what the kept evaluation scored, resume continues the average exactly, and a bad
decay is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_clean_error, make_rows, run_cli, write_csv
from safetensors.torch import load_file

from seqtune import load_config
from seqtune.averaging import WeightAverage
from seqtune.predict import load_run, predict
from seqtune.training import train


def _cfg(model: Path, out: Path, data: Path, *extra: str):
    return load_config(None, [f"model.name={model}", f"output={out}", "quiet=true", "model.max_length=32",
                              f"data.train_file={data}", "train.lr=2e-3", *extra])  # fmt: skip


def _history(out: Path) -> list[dict]:
    return json.loads((out / "metrics.json").read_text())["history"]


def test_the_average_follows_its_decay():
    layer = torch.nn.Linear(2, 1, bias=False)
    average = WeightAverage(layer, decay=0.75)
    for value in (4.0, 8.0, 0.0):
        with torch.no_grad():
            layer.weight.fill_(value)
        average.update(layer)
    expected = (4.0 * 0.75 + 8.0 * 0.25) * 0.75 + 0.0 * 0.25  # the first update copies the weights
    torch.testing.assert_close(average.model.weight, torch.full((1, 2), expected))
    assert average.model is not layer and layer.weight[0, 0].item() == 0.0


def test_frozen_weights_keep_their_copy_and_trained_ones_follow_the_decay():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 1, bias=False))
    model[0].weight.requires_grad_(False)  # as --train-layers leaves the bottom
    with torch.no_grad():
        model[0].weight.fill_(3.0)
    average = WeightAverage(model, decay=0.5)
    for value in (2.0, 6.0):
        with torch.no_grad():
            model[1].weight.fill_(value)
        average.update(model)
    torch.testing.assert_close(average.model[1].weight, torch.full((1, 2), 4.0))  # 0.5 * 2 + 0.5 * 6
    torch.testing.assert_close(average.model[0].weight, torch.full((2, 2), 3.0))
    assert int(average.averaged.n_averaged) == 2


def test_with_decay_zero_the_average_is_the_live_weights(tiny_model_dir, toy_csv, tmp_path):
    out = tmp_path / "run"
    train(_cfg(tiny_model_dir, out, toy_csv, "train.ema=0.0", "train.epochs=4", "train.eval_every=3"))
    history = _history(out)
    assert len(history) >= 3
    for entry in history:
        assert entry["live"]["metrics"] == entry["metrics"]


def test_the_run_folder_holds_the_average_that_was_scored(tiny_model_dir, tmp_path):
    train_csv = write_csv(tmp_path / "train.csv", make_rows(96))
    valid_rows = make_rows(32, seed=5)
    valid_csv = write_csv(tmp_path / "valid.csv", valid_rows)
    out = tmp_path / "run"
    result = train(_cfg(tiny_model_dir, out, train_csv, f"data.validation_file={valid_csv}", "train.ema=0.9",
                        "train.epochs=6", "train.eval_every=6"))  # fmt: skip
    history = _history(out)
    live = [h["live"]["metrics"]["validation"]["accuracy"] for h in history]
    averaged = [h["metrics"]["validation"]["accuracy"] for h in history]
    assert len(history) >= 4
    assert any(h["live"]["metrics"]["validation"] != h["metrics"]["validation"] for h in history), "same weights"
    assert result.best["score"] == max(averaged) and result.best["score"] != min(live + averaged)
    # what the run folder predicts is what the kept evaluation scored (the average, not the last live weights)
    kept_logits = np.load(out / "eval_predictions.npz")["validation/logits"]
    probabilities = predict(load_run(out), [r["text"] for r in valid_rows])
    names = json.loads((out / "task.json").read_text())["label_names"]
    got = np.array([[p["probabilities"][n] for n in names] for p in probabilities])
    want = torch.softmax(torch.as_tensor(kept_logits, dtype=torch.float32), -1).numpy()
    np.testing.assert_allclose(got, want, atol=2e-2)


def test_a_resumed_ema_run_continues_the_average_exactly(tiny_dropout_model_dir, toy_csv, tmp_path):
    common = ("train.batch_size=8", "train.epochs=2", "train.eval_every=4", "train.ema=0.8", "model.dropout=0.1")
    runs = {name: _cfg(tiny_dropout_model_dir, tmp_path / name, toy_csv, *common) for name in ("full", "resumed")}
    train(runs["full"], stop_after_steps=7)  # step 7's checkpoint, the average of 7 steps in one go
    assert not train(runs["resumed"], stop_after_steps=5).completed
    train(_cfg(tiny_dropout_model_dir, tmp_path / "resumed", toy_csv, *common, "resume=true"), stop_after_steps=2)
    averages = [load_file(tmp_path / r / "checkpoints" / "step-7" / "average.safetensors") for r in runs]
    assert averages[0].keys() == averages[1].keys() and "n_averaged" in averages[0]
    for key in averages[0]:
        torch.testing.assert_close(averages[0][key], averages[1][key], atol=1e-6, rtol=0, msg=key)
    for name in runs:
        train(_cfg(tiny_dropout_model_dir, tmp_path / name, toy_csv, *common, "resume=true"))
    full, resumed = (load_file(tmp_path / r / "model.safetensors") for r in runs)
    for key in full:
        torch.testing.assert_close(full[key], resumed[key], atol=1e-6, rtol=0, msg=key)
    history = [_history(tmp_path / r) for r in runs]
    assert [h["step"] for h in history[0]] == [h["step"] for h in history[1]]
    for a, b in zip(*history, strict=True):
        assert a["metrics"]["validation"] == pytest.approx(b["metrics"]["validation"], abs=1e-6)
        assert a["live"]["metrics"]["validation"] == pytest.approx(b["live"]["metrics"]["validation"], abs=1e-6)


def test_a_bad_decay_is_one_line(tiny_model_dir, toy_csv, tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--train-file", toy_csv, "--model", tiny_model_dir, "--ema", "1.5",
                           "--output", tmp_path / "run", "--quiet")  # fmt: skip
    assert_clean_error(code, err, "train.ema: expected a decay in [0, 1) or null (off), found 1.5")
    assert not (tmp_path / "run").exists()
