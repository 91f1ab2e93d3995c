"""Other encoders than BERT: RoBERTa-type position limits, and --dropout reaching every dropout of each architecture
(and its automatic value)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import make_rows, run_cli, write_csv
from encoder_zoo import ARCHITECTURES, tiny_sizes

from seqtune.modeling import load_model, model_max_length, position_limit, resolve_model
from seqtune.tasks import GLUE_TASKS


def tiny_model(path, model_type: str, **extra):
    """A random tiny model of ``model_type`` with a 100-token vocabulary, saved like any HF model folder."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    sizes = tiny_sizes(model_type)
    if model_type == "modernbert":  # its defaults name ids beyond a 100-token vocabulary
        sizes.update(pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2)
    config = AutoConfig.for_model(model_type, **{"vocab_size": 100, **sizes, **extra})
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(path)
    return path


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_dropout_zero_reaches_every_dropout(model_type, tmp_path):
    path = tiny_model(tmp_path / model_type, model_type)
    model = load_model(str(path), GLUE_TASKS["mrpc"], dropout=0.0)
    modules = {n: m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert all(p == 0.0 for p in modules.values()), {n: p for n, p in modules.items() if p}
    # dropout a model applies as a function reads its config: every such setting is 0 too
    config = model.config.to_dict()
    left = {k: v for k, v in config.items() if "dropout" in k and isinstance(v, float) and v > 0}
    assert not left, left


@pytest.mark.parametrize(
    "flags, want",
    [([], 0.0),  # auto: off where every weight of a pretrained encoder trains
     (["--dropout", "0.2"], 0.2),
     (["--train-layers", "1"], 0.1)],  # only the top trains: the checkpoint's own
)  # fmt: skip
def test_dropout_is_off_by_default_only_where_every_weight_trains(
    flags, want, tiny_dropout_model_dir, toy_csv, tmp_path, capsys
):
    from seqtune.config import load_config

    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--train-file", toy_csv, "--model", tiny_dropout_model_dir,
                           "--max-length", "32", "--epochs", "1", *flags, "--output", out, "--quiet")  # fmt: skip
    assert code == 0, err
    config = json.loads((out / "config.json").read_text())
    assert config["hidden_dropout_prob"] == config["attention_probs_dropout_prob"] == want
    assert load_config(out / "config.yaml").model.dropout == (want if "--dropout" in flags else None)  # auto stays auto


def test_roberta_type_positions_start_after_padding(tmp_path, capsys):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    tok.model_max_length = int(1e30)  # no limit of its own: the model's positions decide
    path = tiny_model(tmp_path / "roberta", "roberta", vocab_size=tok.vocab_size, max_position_embeddings=40,
                      pad_token_id=tok.pad_token_id, type_vocab_size=1)  # fmt: skip
    tok.save_pretrained(path)
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    assert position_limit(config) == 40 - tok.pad_token_id - 1
    assert model_max_length(tok, config) == position_limit(config)

    long_rows = [{"text": " ".join([r["text"]] * 8), "label": r["label"]} for r in make_rows(24)]  # ~60+ tokens
    data = write_csv(tmp_path / "long.csv", long_rows)
    code, _, err = run_cli(capsys, "train", "--model", path, "--train-file", data, "--max-steps", "2", "--quiet",
                           "--max-length", "100", "--output", tmp_path / "run")  # fmt: skip
    assert code == 0, err
    assert err.count("seqtune: warning:") == 1 and "model.max_length=100 is more than" in err, err
    assert f"inputs are cut at {position_limit(config)}" in err
    code, out, err = run_cli(capsys, "predict", tmp_path / "run", "--text", long_rows[0]["text"] * 3)
    assert code == 0, err
    assert json.loads(out)[0]["label"] in {"pos", "neg"}
