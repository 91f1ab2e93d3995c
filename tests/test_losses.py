"""Training losses: label smoothing (`train.label_smoothing`) moves the targets, and only for class labels."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import assert_clean_error, assert_nothing_written, make_rows, run_cli, write_csv

from seqtune.errors import ConfigError
from seqtune.losses import loss_sum
from seqtune.tasks import TaskSpec

SINGLE = TaskSpec(name="custom", text_columns=("text",), label_names=("a", "b", "c"))
MULTI = TaskSpec(name="custom", text_columns=("text",), label_names=("a", "b"),
                 problem_type="multi_label_classification")  # fmt: skip


def test_single_label_smoothing_spreads_a_share_of_the_target_over_the_classes():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    labels = torch.tensor([0, 2])
    logp = torch.log_softmax(logits, -1)
    eps = 0.1
    target = torch.full((2, 3), eps / 3)
    target[0, 0] += 1 - eps
    target[1, 2] += 1 - eps
    expected = -(target * logp).sum()
    torch.testing.assert_close(loss_sum(SINGLE, logits, labels, None, eps), expected)
    torch.testing.assert_close(loss_sum(SINGLE, logits, labels, None), -logp[[0, 1], [0, 2]].sum())


def test_multi_label_smoothing_moves_each_label_towards_one_half():
    logits = torch.tensor([[3.0, -3.0]])
    labels = torch.tensor([[1.0, 0.0]])
    eps = 0.2
    p = torch.sigmoid(logits)
    target = torch.tensor([[1 - eps / 2, eps / 2]])
    expected = -(target * p.log() + (1 - target) * (1 - p).log()).mean()
    torch.testing.assert_close(loss_sum(MULTI, logits, labels, None, eps), expected)
    # the smoothed loss is lowest at the smoothed target, not at an ever more confident logit
    at_target = loss_sum(MULTI, torch.tensor([[math.log(9), -math.log(9)]]), labels, None, eps)
    assert at_target < loss_sum(MULTI, torch.tensor([[6.0, -6.0]]), labels, None, eps)


def test_label_smoothing_outside_zero_to_one_is_a_config_error():
    from seqtune import load_config

    with pytest.raises(ConfigError, match=r"train.label_smoothing: expected a share in \[0, 1\), found 1.5"):
        load_config(None, ["task=rte", "train.label_smoothing=1.5"])


def test_label_smoothing_on_regression_is_a_clear_error(tiny_model_dir, tmp_path, capsys):
    rows = [{"text": r["text"], "score": i / 10} for i, r in enumerate(make_rows(24))]
    data = write_csv(tmp_path / "scores.csv", rows)
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "train", "--label-smoothing", "0.1", "--train-file", data, "--label-column",
                           "score", "--regression", "--model", tiny_model_dir, "--output", out, "--quiet")  # fmt: skip
    assert_clean_error(code, err, "--label-smoothing: custom is regression, and smoothing applies to class labels "
                                  "only; drop --label-smoothing")  # fmt: skip
    assert_nothing_written(out)
