"""Freeze-and-cache (``--train-layers K``): the top layers trained on the frozen bottom's cached output compute what
the whole model computes, for every architecture that has separate layers; the bottom never changes."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from conftest import assert_clean_error, assert_nothing_written, make_rows, run_cli, write_csv
from encoder_zoo import ARCHITECTURES, build_encoder
from safetensors.torch import load_file

SPLITTABLE = [a for a in ARCHITECTURES if a != "albert"]


def _model_and_rows(folder: Path, n: int = 12):
    from datasets import Dataset, DatasetDict
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from seqtune.data import features_for
    from seqtune.encoding import tokenize
    from seqtune.modeling import set_dropout
    from seqtune.tasks import custom_task

    config = AutoConfig.from_pretrained(folder)
    set_dropout(config, 0.0)  # the cached bottom runs in eval mode; without dropout both paths are deterministic
    model = AutoModelForSequenceClassification.from_pretrained(folder, config=config)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    task = custom_task(pair=False, problem_type="single_label_classification", label_names=("neg", "pos"))
    rows = make_rows(n)
    raw = Dataset.from_dict({"text": [r["text"] for r in rows], "label": [int(r["label"] == "pos") for r in rows],
                             "idx": list(range(n))}, features=features_for(task))  # fmt: skip
    encoded = tokenize(DatasetDict(train=raw), task, tokenizer, 64, folder / "cache", show_progress=False)["train"]
    return model, tokenizer, encoded


def _steps(model, ref, cache, encoded, collator, precision: str, atol: float) -> None:
    from seqtune.batching import take_rows
    from seqtune.precision import autocast

    cpu = torch.device("cpu")
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt_a = torch.optim.AdamW(trainable, lr=1e-2)
    opt_b = torch.optim.AdamW([p for p in ref.parameters() if p.requires_grad], lr=1e-2)
    for idxs in ([0, 3, 5, 7], [1, 2, 11], [4, 6, 8, 9, 10]):
        batch = collator(take_rows(encoded, idxs))
        labels = batch.pop("labels")
        with autocast(cpu, precision):
            cached = cache.logits(model, model, idxs, batch)
            whole = ref(**batch).logits
        loss_a = torch.nn.functional.cross_entropy(cached.float(), labels)
        loss_b = torch.nn.functional.cross_entropy(whole.float(), labels)
        assert loss_a.item() == pytest.approx(loss_b.item(), abs=atol)
        for opt, loss in ((opt_a, loss_a), (opt_b, loss_b)):
            opt.zero_grad()
            loss.backward()
            opt.step()


@pytest.mark.parametrize("model_type", SPLITTABLE)
def test_cached_top_layers_train_like_the_whole_model(model_type, tmp_path):
    from seqtune.batching import Collator
    from seqtune.frozen import build_cache, encoder_layers, freeze_bottom

    model, tokenizer, encoded = _model_and_rows(build_encoder(tmp_path / "m", model_type))
    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    ref = copy.deepcopy(model)
    assert freeze_bottom(model, 1) == freeze_bottom(ref, 1) == 2
    collator = Collator(tokenizer)
    ran = []  # the layers whose forward completed during the cache pass
    hooks = [layer.register_forward_hook(lambda m, a, o, i=i: ran.append(i))
             for i, layer in enumerate(encoder_layers(model).layers)]  # fmt: skip
    cache = build_cache(model, encoded, collator, 1, tmp_path / "features", torch.device("cpu"), "fp32", 5)
    for hook in hooks:
        hook.remove()
    assert cache.build_seconds > 0
    assert set(ran) == {0}, "the cache pass runs the frozen bottom and nothing above it"
    _steps(model, ref, cache, encoded, collator, "fp32", 1e-5)
    bottom = {id(p) for p in encoder_layers(model).layers[0].parameters()}
    bottom |= {id(p) for p in model.base_model.embeddings.parameters()}
    for name, param in model.named_parameters():
        if id(param) in bottom:
            assert not param.requires_grad and torch.equal(param, initial[name]), name
    top = encoder_layers(model).layers[1]
    assert all(p.requires_grad for p in top.parameters())
    assert any(not torch.equal(p, initial[n]) for n, p in model.named_parameters() if p.requires_grad)
    # a complete cache is read back, not recomputed (a resumed run)
    again = build_cache(model, encoded, collator, 1, tmp_path / "features", torch.device("cpu"), "fp32", 5)
    assert again.build_seconds == 0 and (again.array == cache.array).all()


def test_bf16_cache_stays_close_to_the_whole_model(tmp_path):
    from seqtune.batching import Collator
    from seqtune.frozen import build_cache, freeze_bottom

    model, tokenizer, encoded = _model_and_rows(build_encoder(tmp_path / "m", "bert"))
    ref = copy.deepcopy(model)
    freeze_bottom(model, 1)
    freeze_bottom(ref, 1)
    collator = Collator(tokenizer)
    cache = build_cache(model, encoded, collator, 1, tmp_path / "features", torch.device("cpu"), "bf16", 5)
    assert cache.array.dtype.itemsize == 2  # bf16 bits
    _steps(model, ref, cache, encoded, collator, "bf16", 0.05)


def test_albert_shares_its_layers_and_says_so(tmp_path):
    from seqtune.errors import SeqtuneError
    from seqtune.frozen import freeze_bottom

    model, _, _ = _model_and_rows(build_encoder(tmp_path / "m", "albert"))
    with pytest.raises(SeqtuneError, match="--train-layers: albert has no list of separate encoder layers"):
        freeze_bottom(model, 1)


def test_train_layers_from_the_cli(tiny_model_dir, tmp_path, capsys):
    data = write_csv(tmp_path / "d.csv", make_rows(64))
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--model", tiny_model_dir, "--train-file", data, "--train-layers", "1",
                           "--epochs", "2", "--quiet", "--output", out)  # fmt: skip
    assert code == 0, err
    saved, initial = load_file(out / "model.safetensors"), load_file(tiny_model_dir / "model.safetensors")
    frozen = [k for k in initial if ".embeddings." in k or ".layer.0." in k]
    assert frozen and all(torch.equal(saved[k], initial[k]) for k in frozen)
    assert not torch.equal(saved["bert.encoder.layer.1.output.dense.weight"],
                           initial["bert.encoder.layer.1.output.dense.weight"])  # fmt: skip
    assert not (out / "checkpoints").exists()  # the cache went with the checkpoints
    assert "train_layers: 1" in (out / "config.yaml").read_text()


def test_train_layers_beyond_the_model(tiny_model_dir, tmp_path, capsys):
    data = write_csv(tmp_path / "d.csv", make_rows(16))
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--model", tiny_model_dir, "--train-file", data, "--train-layers", "3",
                           "--quiet", "--output", out)  # fmt: skip
    assert_clean_error(code, err, "--train-layers 3: bert has 2 encoder layers; pass a number from 1 to 2")
    assert_nothing_written(out)


def test_train_layers_gets_its_own_automatic_learning_rate_and_an_explicit_one_wins(tiny_model_dir, tmp_path, capsys):
    from seqtune.recipe import DEFAULT_LR, TRAIN_LAYERS_LR

    data = write_csv(tmp_path / "d.csv", make_rows(32))
    rates = {}
    for name, extra in (("auto", []), ("given", ["--lr", "3e-5"]), ("full", None)):
        layers = [] if extra is None else ["--train-layers", "1", *extra]
        code, _, err = run_cli(capsys, "train", "--model", tiny_model_dir, "--train-file", data, *layers,
                               "--max-steps", "1", "--quiet", "--output", tmp_path / name)  # fmt: skip
        assert code == 0, err
        rates[name] = json.loads((tmp_path / name / "metrics.json").read_text())["distributed"]["lr"]
    assert rates == {"auto": TRAIN_LAYERS_LR, "given": 3e-5, "full": DEFAULT_LR} and TRAIN_LAYERS_LR > DEFAULT_LR
