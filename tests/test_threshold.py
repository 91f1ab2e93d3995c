"""Decision thresholds: tuned on validation by `--tune-threshold`, stored in the run folder, and applied by predict,
eval, serve and the report alike."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import LiveServer, assert_clean_error, make_rows, run_cli, write_csv

from seqtune import load_config
from seqtune.metrics import compute_metrics, probabilities, tune_threshold
from seqtune.predict import evaluate_file, logits_for, predict, raw_dataset
from seqtune.runfolder import load_task
from seqtune.runtime import load_run
from seqtune.tasks import GLUE_TASKS, custom_task
from seqtune.training import train

MULTI = custom_task(pair=False, problem_type="multi_label_classification", label_names=("a", "b", "c"))


def test_tune_threshold_maximises_the_selection_metric_and_prefers_0_5_on_ties():
    # label a is positive exactly when its probability is above 0.3: only a threshold in [0.30, 0.40) gets it all
    probs = np.array([[0.35, 0.9, 0.1], [0.25, 0.8, 0.2], [0.6, 0.1, 0.05], [0.4, 0.7, 0.1]])
    labels = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0]])
    logits = np.log(probs / (1 - probs))
    threshold, score = tune_threshold(MULTI, logits, labels)
    assert 0.25 <= threshold < 0.35 and score == 1.0
    assert compute_metrics(MULTI, logits, labels)["f1_micro"] < 1.0  # at 0.5 one positive is missed
    perfect = np.array([[3.0, -3.0, -3.0]] * 2)  # every threshold from 0.05 to 0.95 is perfect: keep 0.5
    assert tune_threshold(MULTI, perfect, np.array([[1, 0, 0]] * 2)) == (0.5, 1.0)
    with pytest.raises(ValueError, match="binary or multi-label"):
        tune_threshold(GLUE_TASKS["stsb"], np.zeros((2, 1)), np.zeros(2))


def test_a_binary_threshold_moves_the_decision_off_argmax():
    task = replace(GLUE_TASKS["rte"], threshold=0.2)
    logits = np.array([[0.0, -1.0], [0.0, -2.0]])  # p(class 1) = 0.27 and 0.12
    assert compute_metrics(task, logits, np.array([1, 0]))["accuracy"] == 1.0
    assert compute_metrics(GLUE_TASKS["rte"], logits, np.array([1, 0]))["accuracy"] == 0.5


@pytest.fixture(scope="module")
def tuned_run(tiny_model_dir, tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("threshold")
    rows = [
        {"body": r["text"], "tags": (["billing"] if "happy" in r["text"] else ["tech"]) + (["urgent"] * (i % 3 == 0))}
        for i, r in enumerate(make_rows(90))
    ]
    data = tmp / "tickets.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp / "run"
    train(load_config(None, [f"model.name={tiny_model_dir}", f"output={out}", "quiet=true", "model.max_length=32",
                             f"data.train_file={data}", "data.text_column=body", "data.label_column=tags",
                             "train.epochs=2", "train.lr=1e-3", "train.tune_threshold=true"]))  # fmt: skip
    return out, data


def test_the_tuned_threshold_is_recorded_in_the_run_folder(tuned_run):
    out, _ = tuned_run
    metrics = json.loads((out / "metrics.json").read_text())
    tuned = metrics["threshold"]
    assert 0.05 <= tuned["value"] <= 0.95 and tuned["metric"] == "f1_micro" and tuned["split"] == "validation"
    assert tuned["score"] >= tuned["score_at_0.5"]  # 0.5 is among the candidates
    assert load_task(out).threshold == tuned["value"]
    assert f"Decision threshold: {tuned['value']:.2f}" in (out / "README.md").read_text()
    assert "Decision threshold" in (out / "report.html").read_text()


def test_predict_eval_and_serve_apply_the_runs_threshold(tuned_run):
    """Set a threshold that surely changes decisions (the median probability) and check every consumer uses it."""
    out, data = tuned_run
    texts = [r["text"] for r in make_rows(12, seed=5)]
    run = load_run(out)
    probs = probabilities(run.task, logits_for(run, raw_dataset(run.task, texts, None)))
    threshold = round(float(np.median(probs)), 2)
    task_file = out / "task.json"
    saved = json.loads(task_file.read_text())
    task_file.write_text(json.dumps({**saved, "threshold": threshold}))
    try:
        names = list(run.task.label_names)
        expected = [[n for n, p in zip(names, row, strict=True) if p > threshold] for row in probs]
        assert expected != [[n for n, p in zip(names, row, strict=True) if p > 0.5] for row in probs]
        assert [r["labels"] for r in predict(out, texts)] == expected
        # eval: the file's metrics at the run's threshold
        rows = [json.loads(line) for line in data.read_text().splitlines()]
        rerun = load_run(out)
        assert rerun.task.threshold == threshold
        logits = logits_for(rerun, raw_dataset(rerun.task, [r["body"] for r in rows], None))
        labels = np.array([[int(n in r["tags"]) for n in names] for r in rows])
        assert evaluate_file(out, data) == pytest.approx(compute_metrics(rerun.task, logits, labels))
        httpx = pytest.importorskip("httpx")
        from seqtune.serve import create_app

        with LiveServer(create_app(out)) as live:
            served = httpx.post(f"{live.url}/predict", json={"text": texts}).json()["predictions"]
        assert [r["labels"] for r in served] == expected
    finally:
        task_file.write_text(json.dumps(saved))


def test_tune_threshold_on_a_multi_class_task_is_a_clear_error(tiny_model_dir, tmp_path, capsys):
    rows = [{"text": r["text"], "label": ["x", "y", "z"][i % 3]} for i, r in enumerate(make_rows(30))]
    data = write_csv(tmp_path / "three.csv", rows)
    code, _, err = run_cli(capsys, "train", "--train-file", data, "--model", tiny_model_dir, "--tune-threshold",
                           "--output", tmp_path / "run", "--quiet")  # fmt: skip
    assert code == 2 and err.count("\n") == 1
    assert "--tune-threshold: custom is 3-class single-label" in err and "drop --tune-threshold" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("metric", ["f1", "matthews_correlation"])
def test_metric_chooses_what_selects_the_checkpoint_and_tunes_the_threshold(tiny_model_dir, tmp_path, metric):
    # imbalanced binary own data: 'pos' in a third of the rows, so accuracy and F1 (or MCC) disagree about what is best
    rows = [{"text": r["text"], "label": "pos" if i % 3 == 0 else "neg"} for i, r in enumerate(make_rows(90))]
    data = write_csv(tmp_path / "rare.csv", rows)
    out = tmp_path / "run"
    train(load_config(None, [f"model.name={tiny_model_dir}", f"output={out}", "quiet=true", "model.max_length=32",
                             f"data.train_file={data}", "train.epochs=3", "train.lr=1e-3", f"train.metric={metric}",
                             "train.tune_threshold=true"]))  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["selection_metric"] == metric and metrics["threshold"]["metric"] == metric
    scores = [h["metrics"]["validation"][metric] for h in metrics["history"]]
    assert metrics["best"]["score"] == max(scores) == metrics["best"]["metrics"]["validation"][metric]
    assert load_task(out).selection_metric == metric


def test_an_unknown_metric_is_a_clear_error_naming_the_tasks_metrics(tiny_model_dir, tmp_path, capsys):
    data = write_csv(tmp_path / "two.csv", make_rows(30))
    code, _, err = run_cli(capsys, "train", "--train-file", data, "--model", tiny_model_dir, "--metric", "f2",
                           "--output", tmp_path / "run", "--quiet")  # fmt: skip
    assert_clean_error(code, err, "--metric f2: custom reports accuracy, f1, f1_macro, matthews_correlation; choose "
                                  "one of them (or drop --metric to select on accuracy)")  # fmt: skip
    assert not (tmp_path / "run").exists()
