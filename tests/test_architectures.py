"""The architecture matrix: nine encoders (tiny, random, each with a tokenizer of its real kind) through what a user
does with seqtune: single-text, pair and regression training, predict, eval, transformers' pipeline(), ONNX export
and serve; and the model receives only inputs its forward takes."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import LiveServer, make_rows, run_cli, write_csv
from encoder_zoo import ARCHITECTURES, build_encoder

TEXTS = ["the happy cat sat on the mat", "sad", "a quick blue fish ran by the big red log", "happy happy dog"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("arch-data")
    rows = make_rows(48, pair=True)
    scores = [{"text": r["text"], "text2": r["text2"], "label": 1.0 + (r["label"] == "pos") * 2.5} for r in rows]
    single = [{"text": r["text"], "label": r["label"]} for r in rows]
    return {"single": write_csv(root / "single.csv", single), "pair": write_csv(root / "pair.csv", rows),
            "regression": write_csv(root / "scores.csv", scores)}  # fmt: skip


def _train(capsys, model: Path, out: Path, data: Path, *extra: str) -> None:
    code, _, err = run_cli(capsys, "train", "--model", model, "--train-file", data, "--max-steps", "4", "--quiet",
                           "--precision", "fp32", "--lr", "1e-3", "--output", out, *extra)  # fmt: skip
    assert code == 0, err


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_an_architecture_goes_through_everything(model_type, data, tmp_path, capsys):
    from transformers import pipeline

    from seqtune.predict import evaluate_file, load_run, predict

    model = build_encoder(tmp_path / "model", model_type)
    run = tmp_path / "single"
    _train(capsys, model, run, data["single"])
    loaded = load_run(run, precision="fp32")

    received: list[set[str]] = []
    hook = loaded.model.register_forward_pre_hook(lambda m, a, kw: received.append(set(kw)), with_kwargs=True)
    ours = predict(loaded, TEXTS)
    hook.remove()
    accepted = set(inspect.signature(loaded.model.forward).parameters)
    assert received and all(keys <= accepted for keys in received), (received, accepted)
    assert ("token_type_ids" in received[0]) == ("token_type_ids" in loaded.tokenizer.model_input_names)

    clf = pipeline("text-classification", model=str(run), top_k=None)
    for record, theirs in zip(ours, clf(TEXTS), strict=True):
        expected = {d["label"]: d["score"] for d in theirs}
        assert record["probabilities"] == pytest.approx(expected, abs=1e-4)
    assert set(evaluate_file(loaded, data["single"])) >= {"accuracy", "f1"}

    httpx = pytest.importorskip("httpx")
    from seqtune.serve import create_app

    with LiveServer(create_app(run)) as live:
        served = httpx.post(f"{live.url}/predict", json={"text": TEXTS}).json()["predictions"]
    assert [r["label"] for r in served] == [r["label"] for r in predict(run, TEXTS)]

    _train(capsys, model, tmp_path / "pair", data["pair"], "--text-pair-column", "text2")
    [pair] = predict(tmp_path / "pair", TEXTS[0], TEXTS[1])
    assert pair["label"] in {"pos", "neg"}
    long_text = " ".join(TEXTS * 1250)  # 10,000 words: more tokens than any position table holds
    [cut] = predict(loaded, long_text)
    assert cut["label"] in {"pos", "neg"}
    _train(capsys, model, tmp_path / "windows", data["pair"], "--text-pair-column", "text2", "--long-inputs",
           "windows", "--max-length", "24")  # fmt: skip
    [windowed] = predict(tmp_path / "windows", long_text, long_text[:2000])
    assert windowed["label"] in {"pos", "neg"}
    _train(capsys, model, tmp_path / "regression", data["regression"], "--regression")
    assert all(np.isfinite(r["score"]) for r in predict(tmp_path / "regression", TEXTS))

    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from seqtune.export import export_run

    result = export_run(run, output=tmp_path / "onnx")
    assert result.validation["label_agreement"] == 1.0
    exported = predict(result.output, TEXTS)
    for a, b in zip(exported, ours, strict=True):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-4)


def test_the_zoo_has_every_tokenizer_kind(tmp_path):
    from transformers import AutoTokenizer

    kinds = {}
    for model_type in ("bert", "roberta", "xlm-roberta"):
        tok = AutoTokenizer.from_pretrained(build_encoder(tmp_path / model_type, model_type))
        kinds[model_type] = json.loads(tok.backend_tokenizer.to_str())["model"]["type"]
    assert kinds == {"bert": "WordPiece", "roberta": "BPE", "xlm-roberta": "Unigram"}
