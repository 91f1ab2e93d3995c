"""Tests for seqtune.metrics against hand-computed values (worked out in the comments)."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pytest
from transformers import EvalPrediction

from seqtune.metrics import (
    compute_metrics,
    is_better,
    logits_to_predictions,
    make_compute_metrics,
    trivial_baseline,
    undefined_reason,
)
from seqtune.tasks import GLUE_TASKS, custom_task

# --- A 6-example binary case, used for accuracy / f1 / MCC ------------------------------------------------
#   labels: 1 1 1 1 0 0
#   preds:  1 1 1 0 1 0
#   TP = 3 (idx 0,1,2)  FN = 1 (idx 3)  FP = 1 (idx 4)  TN = 1 (idx 5)
#   accuracy  = (TP + TN) / 6 = 4/6 = 2/3
#   precision = TP / (TP + FP) = 3/4;  recall = TP / (TP + FN) = 3/4;  F1 (positive = 1) = 3/4
#   MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (3 - 1) / sqrt(4*4*2*2) = 2/8 = 0.25
#   F1 for class 0: TP0 = 1, FP0 = 1 (idx 3), FN0 = 1 (idx 4) -> 2/(2+1+1) = 0.5;  macro F1 = (0.75 + 0.5)/2
BIN_LABELS = np.array([1, 1, 1, 1, 0, 0])
BIN_PREDS = np.array([1, 1, 1, 0, 1, 0])


def _logits_for(preds: np.ndarray, num_labels: int) -> np.ndarray:
    """Logits whose argmax is `preds`, with uneven values so argmax really has to pick."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0.0, 1.0, size=(len(preds), num_labels))
    logits[np.arange(len(preds)), preds] = 5.0 + rng.random(len(preds))
    return logits


BIN_LOGITS = _logits_for(BIN_PREDS, 2)

# --- A regression case: pearson differs from spearman ---------------------------------------------------
#   preds  = [1, 2, 3, 10]  (mean 4)    deviations -3, -2, -1, 6    sum of squares 50
#   labels = [1, 3, 2, 4]   (mean 2.5)  deviations -1.5, .5, -.5, 1.5  sum of squares 5
#   sum of products = 4.5 - 1 + 0.5 + 9 = 13  ->  pearson = 13 / sqrt(50 * 5) = 13 / sqrt(250)
#   ranks: preds 1 2 3 4, labels 1 3 2 4, d = 0 -1 1 0, sum d^2 = 2
#   spearman = 1 - 6 * 2 / (4 * (16 - 1)) = 1 - 12/60 = 0.8
#   mse = (0 + 1 + 1 + 36) / 4 = 9.5
REG_PREDS = np.array([1.0, 2.0, 3.0, 10.0])
REG_LABELS = np.array([1.0, 3.0, 2.0, 4.0])
PEARSON = 13 / math.sqrt(250)  # 0.8221921916...
SPEARMAN = 0.8
MSE = 9.5

# --- A multi-label case (3 examples, 3 labels) ----------------------------------------------------------
#   labels          preds (logit > 0)
#   [1, 0, 1]       [1, 0, 0]     wrong row
#   [0, 1, 0]       [0, 1, 0]     exact
#   [1, 1, 0]       [1, 1, 1]     wrong row
#   class 0: TP 2 FP 0 FN 0 -> F1 1;  class 1: TP 2 FP 0 FN 0 -> F1 1;  class 2: TP 0 FP 1 FN 1 -> F1 0
#   macro = (1 + 1 + 0)/3 = 2/3;  micro: TP 4 FP 1 FN 1 -> 2*4/(2*4 + 1 + 1) = 0.8;  exact match = 1/3
ML_LABELS = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]])
ML_LOGITS = np.array([[2.0, -1.0, -0.5], [-3.0, 0.7, -2.0], [1.5, 4.0, 0.1]])


def _multi_label_task():
    return custom_task(pair=False, problem_type="multi_label_classification", label_names=("a", "b", "c"))


def _regression_task():
    return custom_task(pair=False, problem_type="regression", label_names=None)


# ---------------------------------------------------------------------------------------------------------
# Single-label classification
# ---------------------------------------------------------------------------------------------------------


def test_cola_matthews_and_accuracy_hand_computed():
    result = compute_metrics(GLUE_TASKS["cola"], BIN_LOGITS, BIN_LABELS)
    assert list(result) == ["matthews_correlation", "accuracy"]
    assert result["matthews_correlation"] == pytest.approx(0.25)
    assert result["accuracy"] == pytest.approx(2 / 3)


def test_mrpc_f1_is_binary_positive_class_and_combined_is_mean():
    result = compute_metrics(GLUE_TASKS["mrpc"], BIN_LOGITS, BIN_LABELS)
    assert list(result) == ["accuracy", "f1", "combined_score"]
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(0.75)
    # (2/3 + 3/4) / 2 = 17/24
    assert result["combined_score"] == pytest.approx(17 / 24)


def test_custom_binary_reports_f1_macro_f1_and_matthews():
    """Own binary data reports Matthews' correlation too (by hand: TP 3, FN 1, FP 1, TN 1 -> (3 - 1) / sqrt(4 x 4 x 2
    x 2)), so imbalanced binary data can select and tune its threshold on it (`--metric matthews_correlation`)."""
    task = custom_task(pair=True, problem_type="single_label_classification", label_names=("no", "yes"))
    result = compute_metrics(task, BIN_LOGITS, BIN_LABELS)
    assert result == pytest.approx({"accuracy": 2 / 3, "f1": 0.75, "f1_macro": 0.625, "matthews_correlation": 0.25})


def test_custom_multiclass_macro_f1_hand_computed():
    #   labels: 0 0 1 1 2 2
    #   preds:  0 1 1 1 2 0
    #   class 0: TP 1, FP 1 (idx 5), FN 1 (idx 1) -> 2/(2+1+1) = 0.5
    #   class 1: TP 2, FP 1 (idx 1), FN 0         -> 4/(4+1)   = 0.8
    #   class 2: TP 1, FP 0, FN 1 (idx 5)         -> 2/(2+1)   = 2/3
    #   macro = (0.5 + 0.8 + 2/3) / 3;  accuracy = 4/6
    task = custom_task(pair=False, problem_type="single_label_classification", label_names=("a", "b", "c"))
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 1, 2, 0])
    result = compute_metrics(task, _logits_for(preds, 3), labels)
    assert list(result) == ["accuracy", "f1_macro"]
    assert result["accuracy"] == pytest.approx(4 / 6)
    assert result["f1_macro"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


def test_float_label_ids_are_accepted_for_classification():
    result = compute_metrics(GLUE_TASKS["sst2"], BIN_LOGITS, BIN_LABELS.astype(np.float32))
    assert result == {"accuracy": pytest.approx(2 / 3)}


# ---------------------------------------------------------------------------------------------------------
# Regression
# ---------------------------------------------------------------------------------------------------------


def test_stsb_pearson_spearman_combined_mse_hand_computed():
    result = compute_metrics(GLUE_TASKS["stsb"], REG_PREDS.reshape(-1, 1), REG_LABELS)
    assert list(result) == ["pearson", "spearmanr", "combined_score", "mse"]
    assert result["pearson"] == pytest.approx(PEARSON)
    assert result["spearmanr"] == pytest.approx(SPEARMAN)
    # combined_score averages only the correlations; mse (an error) stays out.
    assert result["combined_score"] == pytest.approx((PEARSON + SPEARMAN) / 2)
    assert result["mse"] == pytest.approx(MSE)


def test_custom_regression_task_with_1d_logits():
    result = compute_metrics(_regression_task(), REG_PREDS, REG_LABELS)
    assert list(result) == ["pearson", "spearmanr", "mse"]
    assert result == pytest.approx({"pearson": PEARSON, "spearmanr": SPEARMAN, "mse": MSE})


def test_constant_predictions_give_nan_correlations_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any scipy/numpy warning fails the test
        result = compute_metrics(GLUE_TASKS["stsb"], np.full((4, 1), 2.0), REG_LABELS)
    assert math.isnan(result["pearson"])
    assert math.isnan(result["spearmanr"])
    assert math.isnan(result["combined_score"])
    # mse is still defined: (1 + 1 + 0 + 4) / 4 = 1.5
    assert result["mse"] == pytest.approx(1.5)


# ---------------------------------------------------------------------------------------------------------
# Multi-label
# ---------------------------------------------------------------------------------------------------------


def test_multi_label_micro_macro_exact_hand_computed():
    result = compute_metrics(_multi_label_task(), ML_LOGITS, ML_LABELS)
    assert list(result) == ["f1_micro", "f1_macro", "exact_match"]
    assert result["f1_micro"] == pytest.approx(0.8)
    assert result["f1_macro"] == pytest.approx(2 / 3)
    assert result["exact_match"] == pytest.approx(1 / 3)


def test_multi_label_shape_mismatch_raises():
    with pytest.raises(ValueError, match="multi-hot"):
        compute_metrics(_multi_label_task(), ML_LOGITS, ML_LABELS[:, :2])


# ---------------------------------------------------------------------------------------------------------
# Every GLUE task
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(GLUE_TASKS))
def test_every_glue_task_returns_exactly_its_metrics(name):
    task = GLUE_TASKS[name]
    if task.is_regression:
        logits, labels = REG_PREDS.reshape(-1, 1), REG_LABELS
    else:
        labels = np.arange(8) % task.num_labels
        logits = _logits_for((labels + np.array([0, 0, 0, 1, 0, 0, 0, 0])) % task.num_labels, task.num_labels)
    result = compute_metrics(task, logits, labels)
    assert list(result) == list(task.metrics)
    assert all(type(v) is float for v in result.values())
    if "accuracy" in result:
        assert result["accuracy"] == pytest.approx(7 / 8)  # exactly one of eight is wrong


# ---------------------------------------------------------------------------------------------------------
# logits_to_predictions
# ---------------------------------------------------------------------------------------------------------


def test_predictions_single_label_is_argmax():
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 2.9, 0.0], [-5.0, -4.0, -3.0]])
    np.testing.assert_array_equal(logits_to_predictions(GLUE_TASKS["mnli"], logits), [1, 0, 2])


def test_predictions_multi_label_thresholds_logits_at_zero():
    # sigmoid(0) = 0.5 is not > 0.5, so a zero logit is a negative.
    logits = np.array([[0.2, -0.2, 0.0], [-10.0, 1e4, 3.0]])
    preds = logits_to_predictions(_multi_label_task(), logits)
    np.testing.assert_array_equal(preds, [[1, 0, 0], [0, 1, 1]])
    assert np.issubdtype(preds.dtype, np.integer)


@pytest.mark.parametrize("shape", [(3, 1), (3,)])
def test_predictions_regression_squeezes_to_1d_float(shape):
    logits = np.array([0.5, 1, 4], dtype=np.float32).reshape(shape)
    preds = logits_to_predictions(GLUE_TASKS["stsb"], logits)
    assert preds.shape == (3,)
    assert preds.dtype == np.float64
    np.testing.assert_allclose(preds, [0.5, 1.0, 4.0])


def test_predictions_wrong_shape_raises():
    with pytest.raises(ValueError):
        logits_to_predictions(GLUE_TASKS["stsb"], np.zeros((3, 2)))
    with pytest.raises(ValueError):
        logits_to_predictions(GLUE_TASKS["sst2"], np.zeros(3))


# ---------------------------------------------------------------------------------------------------------
# make_compute_metrics with a Trainer EvalPrediction
# ---------------------------------------------------------------------------------------------------------


def test_make_compute_metrics_with_eval_prediction():
    fn = make_compute_metrics(GLUE_TASKS["mrpc"])
    result = fn(EvalPrediction(predictions=BIN_LOGITS, label_ids=BIN_LABELS))
    assert result == pytest.approx({"accuracy": 2 / 3, "f1": 0.75, "combined_score": 17 / 24})


def test_make_compute_metrics_takes_first_element_of_tuple_predictions():
    fn = make_compute_metrics(GLUE_TASKS["stsb"])
    hidden = np.zeros((4, 7, 3))  # e.g. hidden states returned alongside the logits
    result = fn(EvalPrediction(predictions=(REG_PREDS.reshape(-1, 1), hidden), label_ids=REG_LABELS))
    assert result["pearson"] == pytest.approx(PEARSON)
    assert result["mse"] == pytest.approx(MSE)


# ---------------------------------------------------------------------------------------------------------
# is_better
# ---------------------------------------------------------------------------------------------------------


def test_is_better_higher_is_better():
    task = GLUE_TASKS["mrpc"]
    assert is_better(task, 0.8, 0.7)
    assert not is_better(task, 0.7, 0.8)
    assert not is_better(task, 0.8, 0.8)  # ties keep the earlier checkpoint


def test_is_better_nan_and_none():
    task = GLUE_TASKS["stsb"]
    assert is_better(task, 0.1, None)
    assert not is_better(task, float("nan"), None)
    assert not is_better(task, float("nan"), 0.1)
    assert is_better(task, 0.1, float("nan"))


def test_is_better_lower_is_better_for_mse():
    task = replace(GLUE_TASKS["stsb"], selection_metric="mse")
    assert not task.greater_is_better
    assert is_better(task, 0.5, 1.0)
    assert not is_better(task, 1.0, 0.5)
    assert is_better(task, 2.0, None)
    assert not is_better(task, float("nan"), 1.0)


# ---------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------


def test_mismatched_lengths_raise_naming_both():
    with pytest.raises(ValueError, match=r"6 predictions.*5 labels"):
        compute_metrics(GLUE_TASKS["mrpc"], BIN_LOGITS, BIN_LABELS[:5])
    with pytest.raises(ValueError, match=r"4 predictions.*3 labels"):
        compute_metrics(GLUE_TASKS["stsb"], REG_PREDS, REG_LABELS[:3])


def test_empty_input_raises():
    with pytest.raises(ValueError, match="empty"):
        compute_metrics(GLUE_TASKS["sst2"], np.zeros((0, 2)), np.zeros(0, dtype=int))


def test_metric_not_defined_for_problem_type_raises():
    task = replace(GLUE_TASKS["sst2"], metrics=("accuracy", "pearson"))
    with pytest.raises(ValueError, match="pearson"):
        compute_metrics(task, BIN_LOGITS, BIN_LABELS)


def test_trivial_baselines_per_problem_type():
    multi = custom_task(pair=False, problem_type="multi_label_classification", label_names=("a", "b", "c"))
    what, score = trivial_baseline(multi, np.zeros((4, 3)), np.array([[1, 0, 0], [0, 0, 0], [0, 1, 1], [0, 0, 0]]))
    assert (what, score) == ("the empty label set for every input", 0.0)  # micro-F1 of predicting nothing
    reg = custom_task(pair=False, problem_type="regression", label_names=None)
    what, score = trivial_baseline(reg, np.array([1.0, 3.0]), np.array([0.0, 5.0, 2.0]))
    assert what == "the mean training target 2 for every input" and score == 0.0  # Pearson of a constant: 0
    cola = GLUE_TASKS["cola"]  # majority class 'acceptable' (1) from train; MCC of a constant prediction is 0
    assert trivial_baseline(cola, np.array([1, 1, 0]), np.array([0, 1, 1]))[1] == 0.0


def test_undefined_reason_names_constant_predictions_or_labels():
    reg = custom_task(pair=False, problem_type="regression", label_names=None)
    constant = undefined_reason(reg, np.full((3, 1), 2.5), np.array([1.0, 2.0, 3.0]))
    assert "same value for every validation input (constant predictions)" in constant
    assert "every validation label is the same" in undefined_reason(reg, np.array([[1.0], [2.0]]), np.array([3.0, 3.0]))
