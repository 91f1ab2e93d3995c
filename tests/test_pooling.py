"""`model.pooling`: the mean-pooling head sentence-embedding checkpoints were trained with, chosen automatically from
the checkpoint, and a run folder that loads in seqtune, in plain transformers (trust_remote_code) and as ONNX."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import assert_clean_error, make_rows, run_cli, write_csv

from seqtune.mean_pooling import MODEL_TYPE, MeanPoolingForSequenceClassification, mean_pool
from seqtune.modeling import load_model, load_tokenizer, resolve_model, resolve_pooling
from seqtune.tasks import GLUE_TASKS

TEXTS = ["the happy cat sat on the mat", "sad", "a quick blue fish ran on a big red log by the tree"]


def with_pooling(source: Path, target: Path, mode: str) -> Path:
    """``source`` as a sentence-transformers folder (modules.json + a Pooling module) that pooled by ``mode``."""
    shutil.copytree(source, target)
    kinds = ("Transformer", "Pooling")
    modules = [{"idx": i, "name": str(i), "path": ("", "1_Pooling")[i], "type": f"sentence_transformers.models.{kind}"}
               for i, kind in enumerate(kinds)]  # fmt: skip
    (target / "modules.json").write_text(json.dumps(modules))
    (target / "1_Pooling").mkdir()
    pooling = {"pooling_mode_cls_token": mode == "cls", "pooling_mode_mean_tokens": mode == "mean"}
    (target / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return target


@pytest.fixture(scope="module")
def st_model(tiny_model_dir, tmp_path_factory) -> Path:
    return with_pooling(tiny_model_dir, tmp_path_factory.mktemp("st") / "model", "mean")


def test_auto_pooling_follows_the_checkpoint(tiny_model_dir, st_model, tmp_path):
    config = object()
    assert resolve_pooling("auto", resolve_model("minilm"), config) == "mean"  # the packaged MiniLM: 1_Pooling
    assert resolve_pooling("auto", str(st_model), config) == "mean"
    assert resolve_pooling("auto", str(tiny_model_dir), config) == "cls"  # no sentence-transformers files
    cls_st = with_pooling(tiny_model_dir, tmp_path / "cls-st", "cls")
    assert resolve_pooling("auto", str(cls_st), config) == "cls"
    assert resolve_pooling("mean", str(tiny_model_dir), config) == "mean"
    assert resolve_pooling("cls", str(st_model), config) == "cls"


def test_mean_head_keeps_the_pretrained_encoder_and_ignores_padding(st_model):
    from transformers import AutoModel

    model = load_model(str(st_model), GLUE_TASKS["sst2"]).eval()  # auto -> mean for this checkpoint
    assert isinstance(model, MeanPoolingForSequenceClassification) and model.config.model_type == MODEL_TYPE
    pretrained = AutoModel.from_pretrained(st_model).state_dict()
    mine = model.backbone.state_dict()
    assert set(mine) == {k for k in pretrained if not k.startswith("pooler.")}  # the unread pooler is gone
    assert all(torch.equal(mine[k], pretrained[k]) for k in mine)
    assert not any("pooler" in name for name, _ in model.named_parameters())

    tok = load_tokenizer(str(st_model))
    alone = tok(TEXTS[1:2], return_tensors="pt")
    padded = tok(TEXTS[1:], return_tensors="pt", padding=True)  # the short text padded to the long one's length
    with torch.no_grad():
        one, both = model(**alone).logits, model(**padded).logits
        hidden = model.backbone(**alone).last_hidden_state
        by_hand = model.classifier(hidden[0].mean(0, keepdim=True))
    torch.testing.assert_close(both[:1], one, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(one, by_hand, atol=1e-6, rtol=1e-6)
    assert mean_pool(torch.ones(1, 3, 2), torch.tensor([[1, 1, 0]])).tolist() == [[1.0, 1.0]]


LOAD_OUTSIDE_SEQTUNE = """
import json, sys
from transformers import pipeline
run, trust = sys.argv[1], sys.argv[2] == "trust"
try:
    clf = pipeline("text-classification", model=run, trust_remote_code=trust, top_k=None)
except ValueError as exc:
    print(json.dumps({"error": str(exc)}))
    sys.exit(0)
print(json.dumps({"loaded": type(clf.model).__name__, "seqtune": "seqtune" in sys.modules,
                  "scores": [{d["label"]: d["score"] for d in out} for out in clf(json.loads(sys.argv[3]))]}))
"""


def outside(run: Path, trust: bool) -> dict:
    """The run folder loaded by a fresh interpreter that never imports seqtune."""
    args = [sys.executable, "-c", LOAD_OUTSIDE_SEQTUNE, str(run), "trust" if trust else "no", json.dumps(TEXTS)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=run.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def mean_run(st_model, tmp_path_factory) -> Path:
    from seqtune import load_config, train

    tmp = tmp_path_factory.mktemp("mean-run")
    csv = write_csv(tmp / "toy.csv", make_rows(64))
    overrides = [f"model.name={st_model}", f"output={tmp / 'run'}", "quiet=true", f"data.train_file={csv}",
                 "train.epochs=2", "train.lr=1e-3", "train.precision=fp32"]  # fmt: skip
    train(load_config(None, overrides))
    return tmp / "run"


def test_the_run_folder_loads_in_seqtune_and_in_plain_transformers(mean_run, capsys):
    from seqtune.predict import load_run, predict

    config = json.loads((mean_run / "config.json").read_text())
    assert config["model_type"] == MODEL_TYPE and config["auto_map"]["AutoModelForSequenceClassification"]
    assert (mean_run / "mean_pooling.py").is_file()
    ours = predict(load_run(mean_run, precision="fp32"), TEXTS)  # fp32 on both sides

    theirs = outside(mean_run, trust=True)
    assert theirs["loaded"] == "MeanPoolingForSequenceClassification" and not theirs["seqtune"]
    for mine, other in zip(ours, theirs["scores"], strict=True):
        for label, p in mine["probabilities"].items():
            assert other[label] == pytest.approx(p, abs=1e-4)
    # Without trust_remote_code transformers refuses the folder instead of loading a [CLS] head that predicts
    # something else.
    assert "trust_remote_code=True" in outside(mean_run, trust=False)["error"]

    card = (mean_run / "README.md").read_text()
    assert "trust_remote_code=True)" in card and "mean pooling over the last hidden states" in card


def test_a_mean_pooling_run_trains_on_with_its_head(mean_run, tmp_path, capsys):
    csv = write_csv(tmp_path / "more.csv", make_rows(32, seed=3))
    common = ["train", "--model", mean_run, "--train-file", csv, "--max-steps", "2", "--quiet"]
    code, _, err = run_cli(capsys, *common, "--output", tmp_path / "more")
    assert code == 0, err
    assert json.loads((tmp_path / "more" / "config.json").read_text())["model_type"] == MODEL_TYPE
    code, _, err = run_cli(capsys, *common, "--output", tmp_path / "cls", "--pooling", "cls")
    assert_clean_error(code, err, "already has a mean-pooling head; drop model.pooling=cls")
    assert not (tmp_path / "cls").exists()


def test_unknown_pooling_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "mrpc", "--pooling", "max", "--output", tmp_path / "x")
    assert_clean_error(code, err, "model.pooling: expected one of auto, cls, mean, found 'max'")


def test_the_mean_head_exports_to_onnx(mean_run):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from seqtune.export import EXPORT_INFO, export_run
    from seqtune.predict import load_run, logits_for, raw_dataset

    result = export_run(mean_run, output=mean_run.parent / "onnx")
    v = json.loads((result.output / EXPORT_INFO).read_text())["validation"]
    assert v["label_agreement"] == 1.0 and v["max_abs_logit_diff"] < 1e-4
    torch_run, onnx_run = load_run(mean_run, precision="fp32"), load_run(result.output)
    raw = raw_dataset(torch_run.task, TEXTS, None)
    np.testing.assert_allclose(logits_for(onnx_run, raw), logits_for(torch_run, raw), atol=1e-4)
