"""--lora R: only the adapters and the head train, the run folder holds the merged model (a plain transformers folder
that predicts what the adapted model predicted), resume is exact, and --lora with --train-layers is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import assert_clean_error, run_cli
from encoder_zoo import ARCHITECTURES, build_encoder
from safetensors.torch import load_file

from seqtune import load_config
from seqtune.lora import add_lora, head_modules, merged
from seqtune.modeling import load_model
from seqtune.predict import load_run, predict
from seqtune.tasks import GLUE_TASKS
from seqtune.training import train

pytest.importorskip("peft")


def _cfg(model: Path, out: Path, data: Path, *extra: str):
    return load_config(None, [f"model.name={model}", f"output={out}", "quiet=true", "model.max_length=32",
                              f"data.train_file={data}", "train.lr=1e-2", "model.lora_rank=4", *extra])  # fmt: skip


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_only_adapters_and_head_train_and_merging_keeps_the_outputs(model_type, tmp_path):
    folder = build_encoder(tmp_path / "model", model_type)
    model = load_model(str(folder), GLUE_TASKS["mrpc"], seed=0)
    heads = head_modules(model)
    lora = add_lora(model, rank=4)
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n or ".modules_to_save." in n for n in trainable), trainable
    assert any(".lora_" in n for n in trainable) and any(".modules_to_save." in n for n in trainable)
    assert not lora.get_input_embeddings().weight.requires_grad
    with torch.no_grad():  # adapters start as a no-op (B = 0): give them weights, as training would
        for name, param in lora.named_parameters():
            if ".lora_B." in name:
                param.normal_(0, 0.5)
    lora.eval()
    inputs = {"input_ids": torch.randint(5, 40, (2, 7)), "attention_mask": torch.ones(2, 7, dtype=torch.long)}
    adapted = lora(**inputs).logits
    plain = merged(lora)
    assert not any(".lora_" in n or "base_layer" in n for n in plain.state_dict()), "adapters left in the model"
    assert head_modules(plain) == heads
    torch.testing.assert_close(plain(**inputs).logits, adapted, atol=1e-5, rtol=1e-4)


def test_a_lora_run_folder_is_a_plain_model_with_the_encoder_changed_and_the_embeddings_not(
    tiny_model_dir, toy_csv, tmp_path
):
    from transformers import pipeline

    out = tmp_path / "run"
    result = train(_cfg(tiny_model_dir, out, toy_csv, "train.epochs=6"))
    saved, original = load_file(out / "model.safetensors"), load_file(tiny_model_dir / "model.safetensors")
    shared = [k for k in saved if k in original and "classifier" not in k]
    assert shared and saved.keys() <= original.keys() | {"classifier.weight", "classifier.bias"}
    assert all(torch.equal(saved[k], original[k]) for k in shared if "embeddings" in k or "LayerNorm" in k)
    query = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(saved[query], original[query]), "the adapters were not merged into the weights"
    assert result.best["score"] > 0.5
    texts = ["the happy cat", "a sad dog sat"]
    ours = predict(load_run(out, precision="fp32"), texts)
    theirs = pipeline("text-classification", model=str(out), top_k=None)(texts)
    for record, scores in zip(ours, theirs, strict=True):
        assert record["probabilities"] == pytest.approx({d["label"]: d["score"] for d in scores}, abs=1e-4)


def test_a_resumed_lora_run_matches_an_uninterrupted_one(tiny_dropout_model_dir, toy_csv, tmp_path):
    common = ("train.batch_size=8", "train.epochs=2", "train.eval_every=4")
    train(_cfg(tiny_dropout_model_dir, tmp_path / "full", toy_csv, *common))
    part = train(_cfg(tiny_dropout_model_dir, tmp_path / "resumed", toy_csv, *common), stop_after_steps=5)
    assert not part.completed
    train(_cfg(tiny_dropout_model_dir, tmp_path / "resumed", toy_csv, *common, "resume=true"))
    full, resumed = (
        load_file(tmp_path / "full" / "model.safetensors"),
        load_file(tmp_path / "resumed" / "model.safetensors"),
    )
    assert full.keys() == resumed.keys()
    for key in full:
        torch.testing.assert_close(full[key], resumed[key], atol=1e-6, rtol=0, msg=key)
    history = [json.loads((tmp_path / r / "metrics.json").read_text())["history"] for r in ("full", "resumed")]
    assert [h["step"] for h in history[0]] == [h["step"] for h in history[1]]
    for a, b in zip(*history, strict=True):
        assert a["metrics"]["validation"] == pytest.approx(b["metrics"]["validation"], abs=1e-6)


def test_lora_with_train_layers_is_a_clear_error(tiny_model_dir, toy_csv, tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--train-file", toy_csv, "--model", tiny_model_dir, "--lora", "4",
                           "--train-layers", "1", "--output", tmp_path / "run", "--quiet")  # fmt: skip
    assert_clean_error(code, err, "--lora and --train-layers are two ways to train part of the model; choose one")
    assert not (tmp_path / "run").exists()


def test_lora_gets_its_own_automatic_learning_rate(tiny_model_dir, toy_csv, tmp_path):
    from seqtune.recipe import DEFAULT_LR, LORA_LR

    rates = {}
    for name, lora in (("lora", "model.lora_rank=4"), ("full", "model.lora_rank=null")):
        cfg = load_config(None, [f"model.name={tiny_model_dir}", f"output={tmp_path / name}", "quiet=true",
                                 f"data.train_file={toy_csv}", "train.max_steps=1", lora])  # fmt: skip
        train(cfg)
        rates[name] = json.loads((tmp_path / name / "metrics.json").read_text())["distributed"]["lr"]
    assert rates == {"lora": LORA_LR, "full": DEFAULT_LR} and LORA_LR > DEFAULT_LR
