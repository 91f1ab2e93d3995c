"""The run folder's README.md is a model card the Hub renders: YAML metadata that huggingface_hub parses, with a
model-index holding every dev metric of the kept checkpoint."""

from __future__ import annotations

import json

from conftest import run_cli


def test_the_card_train_writes_parses_as_a_hub_model_card(tiny_model_dir, mini_glue, tmp_path, capsys):
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    out = tmp_path / "mrpc"
    code, _, err = run_cli(capsys, "train", "mrpc", "--data-dir", mini_glue, "--model", tiny_model_dir, "--epochs",
                           "1", "--quiet", "--output", out)  # fmt: skip
    assert code == 0, err
    card = ModelCard.load(out / "README.md")
    data = card.data.to_dict()
    assert (data["library_name"], data["pipeline_tag"]) == ("transformers", "text-classification")
    assert data["datasets"] == ["nyu-mll/glue"] and data["language"] == ["en"]
    assert "seqtune" in data["tags"] and "base_model" not in data  # a local folder is no hub id: nothing guessed
    name, results = model_index_to_eval_results(data["model-index"])
    assert name == "mrpc"
    best = json.loads((out / "metrics.json").read_text())["best"]["metrics"]["validation"]
    shown = {r.metric_type: r.metric_value for r in results}
    assert shown == {k: round(v, 6) for k, v in best.items()}
    assert {(r.dataset_type, r.dataset_config, r.dataset_split) for r in results} == {
        ("nyu-mll/glue", "mrpc", "validation")
    }
    assert "## Results" in card.text and "## Use" in card.text


def test_the_packaged_model_is_named_with_its_hub_id_and_licence():
    from seqtune.config import RunConfig
    from seqtune.model_card import card_metadata
    from seqtune.tasks import GLUE_TASKS

    meta = card_metadata("run", RunConfig(task="rte"), GLUE_TASKS["rte"], {"validation": {"accuracy": 0.6}})
    assert (meta["base_model"], meta["license"]) == ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0")
    own = RunConfig()
    own.data.train_file = "tickets.csv"
    own.model.name = "bert-base-uncased"
    meta = card_metadata("run", own, GLUE_TASKS["rte"], {})
    assert meta["base_model"] == "bert-base-uncased" and "license" not in meta and "datasets" not in meta
    assert "model-index" not in meta  # no scores, no results block


def test_a_run_started_from_another_run_names_the_pretrained_model_at_the_root(tmp_path):
    from seqtune.config import RunConfig
    from seqtune.model_card import card_metadata
    from seqtune.tasks import GLUE_TASKS

    stsb = RunConfig(task="stsb")  # trained from the packaged MiniLM
    (tmp_path / "stsb").mkdir()
    stsb.save(tmp_path / "stsb" / "config.yaml")
    rte = RunConfig(task="rte")
    rte.model.name = str(tmp_path / "stsb")  # seqtune glue --transfer rte=stsb
    meta = card_metadata("run", rte, GLUE_TASKS["rte"], {})
    assert (meta["base_model"], meta["license"]) == ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0")
    plain = RunConfig(task="rte")
    plain.model.name = str(tmp_path)  # a local model folder that is not a run: nothing guessed
    assert "base_model" not in card_metadata("run", plain, GLUE_TASKS["rte"], {})
