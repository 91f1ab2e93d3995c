"""Layer-wise learning-rate decay and re-initialised top layers: what the optimizer and the model really get."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import assert_clean_error, run_cli, tiny_bert_config
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from seqtune import load_config
from seqtune.param_groups import depths, param_groups, reinit_top_layers


def _model(path):
    return AutoModelForSequenceClassification.from_pretrained(path)


def test_each_layer_trains_a_factor_slower_than_the_one_above(tiny_model_dir):
    model = _model(tiny_model_dir)  # 2 layers: embeddings depth 0, layers 1-2, pooler and head 3
    lr_of = {}
    for group in param_groups(model, lr=1e-3, weight_decay=0.01, layer_decay=0.5):
        for p in group["params"]:
            lr_of[id(p)] = (group["lr"], group["weight_decay"])
    named = dict(model.named_parameters())
    assert lr_of[id(named["classifier.weight"])] == (1e-3, 0.01)
    assert lr_of[id(named["bert.pooler.dense.weight"])] == (1e-3, 0.01)
    assert lr_of[id(named["bert.encoder.layer.1.output.dense.weight"])] == (5e-4, 0.01)
    assert lr_of[id(named["bert.encoder.layer.1.output.LayerNorm.weight"])] == (5e-4, 0.0)
    assert lr_of[id(named["bert.encoder.layer.0.attention.self.query.bias"])] == (2.5e-4, 0.0)
    assert lr_of[id(named["bert.embeddings.word_embeddings.weight"])] == (1.25e-4, 0.01)
    assert len(lr_of) == sum(p.requires_grad for p in model.parameters())  # every parameter, once
    assert {depths(model)[n] for n in named} == {0, 1, 2, 3}


def test_without_layer_decay_two_groups_at_one_rate(tiny_model_dir):
    groups = param_groups(_model(tiny_model_dir), lr=1e-3, weight_decay=0.01)
    assert sorted((g["lr"], g["weight_decay"]) for g in groups) == [(1e-3, 0.0), (1e-3, 0.01)]


def test_reinit_draws_fresh_top_layers_and_keeps_the_rest(tiny_model_dir):
    model = _model(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():  # make the pretrained top layer recognisable: fresh weights cannot look like this
        model.bert.encoder.layer[1].attention.self.query.weight.fill_(0.5)
        model.bert.encoder.layer[1].output.LayerNorm.weight.fill_(3.0)
    assert reinit_top_layers(model, 1) == [1]
    after = dict(model.named_parameters())
    query = after["bert.encoder.layer.1.attention.self.query.weight"]
    assert query.std().item() == pytest.approx(model.config.initializer_range, rel=0.3)
    assert torch.equal(after["bert.encoder.layer.1.output.LayerNorm.weight"], torch.ones(32))
    for name, value in before.items():
        if ".layer.1." not in name:
            assert torch.equal(after[name], value), name


def test_a_run_with_layer_decay_and_reinit_trains_and_records_them(tiny_model_dir, toy_csv, tmp_path, capsys):
    from seqtune.cli import main

    out = tmp_path / "run"
    code = main(["train", "--train-file", str(toy_csv), "--model", str(tiny_model_dir), "--max-length", "32",
                 "--epochs", "1", "--layer-decay", "0.8", "--reinit-layers", "1",
                 "--output", str(out), "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    cfg = load_config(out / "config.yaml")
    assert cfg.train.layer_decay == 0.8 and cfg.model.reinit_layers == 1
    trained = load_file(out / "model.safetensors")
    start = _model(tiny_model_dir).state_dict()
    # the re-initialised layer left its pretrained weights far behind; the layer below only moved by training
    top = "bert.encoder.layer.1.attention.self.query.weight"
    low = "bert.encoder.layer.0.attention.self.query.weight"
    assert (trained[top] - start[top]).abs().mean() > 5 * (trained[low] - start[low]).abs().mean()
    assert json.loads((out / "metrics.json").read_text())["history"]


@pytest.fixture(scope="module")
def marked_checkpoints(tmp_path_factory):
    """A pretrained-encoder checkpoint (BertModel) and a sequence-classifier one, each with a recognisable top
    layer: its query weights are all 0.5, which neither fresh weights nor one epoch of training look like."""
    from transformers import AutoTokenizer, BertForSequenceClassification, BertModel

    from seqtune.modeling import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    config = tiny_bert_config(tokenizer.vocab_size)
    paths = {}
    for kind, cls in (("encoder", BertModel), ("classifier", BertForSequenceClassification)):
        torch.manual_seed(0)
        model = cls(config)
        encoder = model if kind == "encoder" else model.bert
        with torch.no_grad():
            encoder.encoder.layer[1].attention.self.query.weight.fill_(0.5)
        paths[kind] = tmp_path_factory.mktemp(kind)
        model.save_pretrained(paths[kind])
        tokenizer.save_pretrained(paths[kind])
    return paths


@pytest.mark.parametrize(
    "kind, flags, fresh",
    [("encoder", [], True),  # the default: a pretrained encoder's top layer starts afresh
     ("encoder", ["--reinit-layers", "0"], False),
     ("encoder", ["--lora", "4"], False),  # LoRA trains adapters only: a fresh layer would stay random
     ("encoder", ["--train-layers", "1"], False),
     ("classifier", [], False)],  # training on from a fine-tuned model keeps what it learnt
)  # fmt: skip
def test_the_top_layer_is_reinitialised_by_default_only_where_it_can_train(
    kind, flags, fresh, marked_checkpoints, toy_csv, tmp_path, capsys
):
    from seqtune.cli import main

    out = tmp_path / "run"
    code = main(["train", "--train-file", str(toy_csv), "--model", str(marked_checkpoints[kind]), "--max-length",
                 "32", "--epochs", "1", *flags, "--output", str(out), "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    explicit = int(flags[1]) if flags[:1] == ["--reinit-layers"] else None
    assert load_config(out / "config.yaml").model.reinit_layers == explicit  # auto is recorded as auto
    query = load_file(out / "model.safetensors")["bert.encoder.layer.1.attention.self.query.weight"]
    assert abs(query.mean().item()) < 0.1 if fresh else query.mean().item() == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize(
    "override, message",
    [("train.layer_decay=0", "train.layer_decay: expected a factor in (0, 1], found 0.0"),
     ("model.reinit_layers=-1", "model.reinit_layers: expected 0 or more, found -1")],
)  # fmt: skip
def test_bad_values_are_named(override, message):
    from seqtune.errors import SeqtuneError

    with pytest.raises(SeqtuneError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_config(None, [override]).check()


@pytest.mark.parametrize(
    "flags, message",
    [(["--lora", "4"], "--reinit-layers with --lora would leave fresh layers frozen at random weights (LoRA trains "
                       "adapters only); drop one of them"),
     (["--train-layers", "1"], "--reinit-layers 2 with --train-layers 1 would leave fresh layers frozen at random "
                               "weights; use --reinit-layers 1 or fewer")],
)  # fmt: skip
def test_reinit_layers_that_could_not_train_are_a_clear_error(
    flags, message, tiny_model_dir, toy_csv, tmp_path, capsys
):
    code, _, err = run_cli(capsys, "train", "--train-file", toy_csv, "--model", tiny_model_dir, "--reinit-layers", "2",
                           *flags, "--output", tmp_path / "run", "--quiet")  # fmt: skip
    assert_clean_error(code, err, message)
    assert not (tmp_path / "run").exists()
