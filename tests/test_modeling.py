"""Model resolution and loading: aliases, local folders, hub ids offline, re-heading, from scratch."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import build_tiny_bert

from seqtune.config import load_config
from seqtune.errors import ConfigError, SeqtuneError
from seqtune.modeling import load_model, resolve_model
from seqtune.tasks import get_task


def test_minilm_alias_is_the_packaged_folder():
    path = resolve_model("minilm")
    assert path.endswith("model")
    assert resolve_model("MiniLM") == path


def test_uncached_hub_id_offline_fails_fast_with_the_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SeqtuneError, match="not in the Hugging Face cache, and the hub is unreachable"):
        resolve_model("some-org/never-downloaded-model")


def test_folder_without_weights(tmp_path, tiny_model_dir):
    (tmp_path / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    with pytest.raises(SeqtuneError, match="has no weights"):
        resolve_model(str(tmp_path))
    assert resolve_model(str(tmp_path), need_weights=False) == str(tmp_path)  # fine for --from-scratch


def test_labels_are_written_into_the_config(tiny_model_dir):
    model = load_model(str(tiny_model_dir), get_task("mnli"))
    assert model.config.id2label == {0: "entailment", 1: "neutral", 2: "contradiction"}
    assert model.config.label2id["neutral"] == 1
    assert model.num_labels == 3


def test_different_head_size_is_reheaded_with_a_warning(tmp_path, caplog):
    two_label = build_tiny_bert(tmp_path / "two")  # saved as BertForSequenceClassification with 2 labels
    with caplog.at_level(logging.WARNING, logger="seqtune"):
        model = load_model(str(two_label), get_task("mnli"))
    assert model.classifier.out_features == 3
    assert "head for 2 labels; the task has 3" in caplog.text


def test_from_scratch_differs_from_pretrained_and_follows_the_seed(tiny_model_dir):
    task = get_task("sst2")
    pretrained = load_model(str(tiny_model_dir), task)
    a = load_model(str(tiny_model_dir), task, from_scratch=True, seed=1)
    b = load_model(str(tiny_model_dir), task, from_scratch=True, seed=1)
    key = "bert.encoder.layer.0.attention.self.query.weight"
    assert (a.state_dict()[key] == b.state_dict()[key]).all()
    assert not (a.state_dict()[key] == pretrained.state_dict()[key]).all()


def test_dropout_setting_reaches_every_dropout_layer(tmp_path):
    path = str(build_tiny_bert(tmp_path / "with-dropout", dropout=0.3))
    task = get_task("sst2")
    batch = {"input_ids": torch.tensor([[2, 5, 6, 7, 3]]), "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    kept = load_model(path, task).train()
    assert not torch.equal(kept(**batch).logits, kept(**batch).logits)  # the model's own dropout draws masks
    off = load_model(path, task, dropout=0.0).train()
    assert off.config.hidden_dropout_prob == off.config.attention_probs_dropout_prob == 0.0
    assert all(m.p == 0.0 for m in off.modules() if isinstance(m, torch.nn.Dropout))
    assert torch.equal(off(**batch).logits, off(**batch).logits)  # training mode, yet deterministic


def test_dropout_out_of_range_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r"model.dropout: expected a probability in \[0, 1\) or null, found 1.5"):
        load_config(None, ["task=mrpc", "model.dropout=1.5"])


def test_a_new_head_starts_at_the_label_prior(tiny_model_dir):
    """The new head's bias is the labels' log-odds (multi-label); a head the checkpoint already had for the same
    labels keeps its trained bias."""
    import numpy as np
    import torch

    from seqtune.modeling import load_model, output_layer
    from seqtune.tasks import custom_task

    task = custom_task(pair=False, problem_type="multi_label_classification", label_names=("a", "b", "c"))
    labels = np.array([[1, 0, 0], [0, 0, 1], [0, 0, 1], [1, 1, 1]])
    model = load_model(str(tiny_model_dir), task, label_prior=labels)
    rate = torch.tensor([0.5, 0.25, 0.75])
    torch.testing.assert_close(output_layer(model, 3).bias, torch.log(rate / (1 - rate)))
    binary = custom_task(pair=False, problem_type="single_label_classification", label_names=("x", "y"))
    kept = load_model(str(tiny_model_dir), binary, label_prior=np.array([0, 0, 0, 1]))  # the tiny model's 2-label head
    torch.testing.assert_close(output_layer(kept, 2).bias, torch.zeros(2))
