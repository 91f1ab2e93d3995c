"""`seqtune train --seeds N --ensemble`: one run folder that predicts with the mean of N models' probabilities, and
that predict, eval, serve, export and report treat like any run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import LiveServer, assert_clean_error, make_rows, run_cli, write_csv

from seqtune.metrics import compute_metrics
from seqtune.predict import evaluate_file, load_run, predict
from seqtune.runfolder import ENSEMBLE_FILE, EVAL_PREDICTIONS, load_task

TEXTS = ["the happy cat sat on the mat", "sad", "a quick blue fish ran by the big red log", "happy happy dog"]


@pytest.fixture(scope="module")
def ensemble_run(tiny_dropout_model_dir, tmp_path_factory) -> Path:
    from seqtune.cli import main

    tmp = tmp_path_factory.mktemp("ensemble")
    csv = write_csv(tmp / "toy.csv", make_rows(80))
    code = main(["train", "--model", str(tiny_dropout_model_dir), "--train-file", str(csv), "--output",
                 str(tmp / "ens"), "--seeds", "2", "--ensemble", "--epochs", "2", "--lr", "1e-3", "--quiet",
                 "--precision", "fp32", "--dropout", "0.1", "model.max_length=32"])  # fmt: skip
    assert code == 0
    return tmp / "ens"


def probabilities(run, texts) -> np.ndarray:
    records = predict(load_run(run, precision="fp32"), texts)
    names = list(records[0]["probabilities"])
    return np.array([[r["probabilities"][n] for n in names] for r in records])


def test_ensemble_predicts_the_mean_of_its_members(ensemble_run):
    members = json.loads((ensemble_run / ENSEMBLE_FILE).read_text())["members"]
    assert members == ["seed-42", "seed-43"]
    mine = probabilities(ensemble_run, TEXTS)
    each = [probabilities(ensemble_run / m, TEXTS) for m in members]
    assert not np.allclose(each[0], each[1], atol=1e-3)  # different seeds, different models
    np.testing.assert_allclose(mine, np.mean(each, axis=0), atol=2e-6)  # records are rounded to 6 digits


def test_members_share_the_validation_rows_and_the_ensemble_is_scored_on_them(ensemble_run):
    configs = [json.loads(json.dumps(load_run(ensemble_run / m).cfg.data.split_seed)) for m in ("seed-42", "seed-43")]
    assert configs == [42, 42]
    metrics = json.loads((ensemble_run / "metrics.json").read_text())
    ens = metrics["ensemble"]
    with np.load(ensemble_run / EVAL_PREDICTIONS) as saved:
        logits, labels = saved["validation/logits"], saved["validation/labels"]
    task = load_task(ensemble_run)
    assert ens["metrics"]["validation"] == pytest.approx(compute_metrics(task, logits, labels))
    acc = ens["metrics"]["validation"]["accuracy"]
    assert ens["gain_over_seed_mean"]["accuracy"] == pytest.approx(acc - metrics["summary"]["accuracy"]["mean"])
    assert "Ensemble of 2 runs (seed-42, seed-43)" in (ensemble_run / "README.md").read_text()
    page = (ensemble_run / "report.html").read_text()
    assert "Ensemble of 2 runs" in page and (ensemble_run / "report" / "confusion.png").is_file()


def test_eval_serve_and_export_take_the_ensemble_like_a_run(ensemble_run, tmp_path, capsys):
    rows = make_rows(24, seed=9)
    labeled = write_csv(tmp_path / "more.csv", rows)
    task = load_task(ensemble_run)
    mean = probabilities(ensemble_run, [r["text"] for r in rows])
    expected = compute_metrics(task, np.log(mean), np.array([task.label_names.index(r["label"]) for r in rows]))
    got = evaluate_file(load_run(ensemble_run, precision="fp32"), labeled)
    assert got["accuracy"] == pytest.approx(expected["accuracy"])
    code, out, err = run_cli(capsys, "eval", ensemble_run, "--input", labeled)
    assert code == 0, err

    httpx = pytest.importorskip("httpx")
    from seqtune.serve import create_app

    with LiveServer(create_app(ensemble_run)) as live:
        served = httpx.post(f"{live.url}/predict", json={"text": TEXTS}).json()["predictions"]
    for record, expected_probs in zip(served, probabilities(ensemble_run, TEXTS), strict=True):
        assert list(record["probabilities"].values()) == pytest.approx(list(expected_probs), abs=0.02)  # bf16 or not

    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from seqtune.export import export_run

    result = export_run(ensemble_run, output=tmp_path / "onnx")
    assert result.validation["label_agreement"] == 1.0 and result.validation["max_abs_logit_diff"] < 1e-4
    np.testing.assert_allclose(probabilities(result.output, TEXTS), probabilities(ensemble_run, TEXTS), atol=1e-4)


def test_a_multi_label_ensemble_tunes_its_own_threshold(tiny_model_dir, tmp_path, capsys):
    rows = [{"text": r["text"], "tags": json.dumps(["pos"] if r["label"] == "pos" else [])} for r in make_rows(60)]
    data = tmp_path / "tags.jsonl"
    data.write_text("".join(json.dumps({"text": r["text"], "tags": json.loads(r["tags"])}) + "\n" for r in rows))
    code, _, err = run_cli(capsys, "train", "--model", tiny_model_dir, "--train-file", data, "--label-column", "tags",
                           "--multi-label", "--seeds", "2", "--ensemble", "--max-steps", "6", "--quiet",
                           "--output", tmp_path / "ml")  # fmt: skip
    assert code == 0, err
    tuned = json.loads((tmp_path / "ml" / "metrics.json").read_text())["ensemble"]["threshold"]
    assert tuned is not None and tuned["split"] == "validation"
    assert load_task(tmp_path / "ml").threshold == tuned["value"]


def test_ensemble_needs_seeds(tiny_model_dir, toy_csv, tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--model", tiny_model_dir, "--train-file", toy_csv, "--ensemble",
                           "--output", tmp_path / "x")  # fmt: skip
    assert_clean_error(code, err, "--ensemble combines the runs of --seeds N (N >= 2); add e.g. --seeds 3")
    assert not (tmp_path / "x").exists()
