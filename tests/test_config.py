"""Tests for seqtune.config: defaults, YAML + overrides, type checks, every problem at once, shipped configs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from seqtune.config import RunConfig, load_config, parse_overrides
from seqtune.errors import ConfigError, SeqtuneError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "configs").glob("*.yaml"))


def _raises(fragment: str, exc: type[Exception] = SeqtuneError):
    return pytest.raises(exc, match=re.escape(fragment))


def test_defaults():
    cfg = load_config(None, ["task=mrpc"])
    assert cfg.task == "mrpc"
    assert cfg.model.name == "minilm"
    assert cfg.train.batch_size == 16
    assert cfg.train.lr is None  # auto: 8e-5, 2e-4 for multi-label (setup_steps resolves it per task)
    assert cfg.train.epochs is None  # auto: 3, more on small data (auto_epochs)
    assert cfg.data.text_column == "text"
    assert cfg.seed == 42
    assert cfg.overwrite is False


def test_yaml_then_overrides_override_wins(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("task: mrpc\nseed: 7\ntrain:\n  batch_size: 16\n  lr: 2.0e-5\nmodel:\n  max_length: 64\n")
    cfg = load_config(path, ["train.batch_size=8", "model.name=/some/folder"])
    assert cfg.train.batch_size == 8  # the override wins over the file
    assert cfg.train.lr == 2e-5  # from the file
    assert cfg.seed == 7
    assert cfg.model.max_length == 64
    assert cfg.model.name == "/some/folder"
    assert cfg.train.epochs is None  # untouched default (auto)


@pytest.mark.parametrize("text", ["3e-5", "3E-5", "3.0e-5", "0.00003"])
def test_scientific_notation_is_a_float(tmp_path, text):
    cfg = load_config(None, ["task=mrpc", f"train.lr={text}"])
    assert isinstance(cfg.train.lr, float) and cfg.train.lr == pytest.approx(3e-5)
    path = tmp_path / "c.yaml"
    path.write_text(f"task: mrpc\ntrain:\n  lr: {text}\n")  # YAML 1.1 reads "3e-5" as a string
    cfg = load_config(path)
    assert isinstance(cfg.train.lr, float) and cfg.train.lr == pytest.approx(3e-5)


def test_ints_accepted_for_float_fields(tmp_path):
    cfg = load_config(None, ["task=mrpc", "train.epochs=2", "train.lr=1"])
    assert cfg.train.epochs == 2.0 and isinstance(cfg.train.epochs, float)
    assert isinstance(cfg.train.lr, float)
    path = tmp_path / "c.yaml"
    path.write_text("task: mrpc\ntrain:\n  epochs: 5\n")
    assert load_config(path).train.epochs == 5.0


def test_numeric_looking_strings_stay_strings():
    cfg = load_config(None, ["task=mrpc", 'output="2024"', "data.text_column=1e5"])
    assert cfg.output == "2024"
    assert cfg.data.text_column == "1e5"


def test_bool_and_null_overrides():
    cfg = load_config(None, ["task=mrpc", "overwrite=true", "train.max_grad_norm=null", "model.max_length=128"])
    assert cfg.overwrite is True
    assert cfg.train.max_grad_norm is None
    assert cfg.model.max_length == 128


def test_unknown_key_suggests_the_right_one():
    with _raises("unknown key 'train.batch_szie' (did you mean 'train.batch_size'?)", ConfigError):
        load_config(None, ["task=mrpc", "train.batch_szie=3"])


def test_unknown_key_in_yaml_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: mrpc\nmodle:\n  name: minilm\n")
    with _raises("unknown key 'modle' (did you mean 'model'?)", ConfigError):
        load_config(path)


def test_wrong_type_names_the_key():
    with _raises("train.batch_size: expected int, found 'abc'", ConfigError):
        load_config(None, ["task=mrpc", "train.batch_size=abc"])


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("train.lr=fast", "train.lr: expected float | None, found 'fast'"),
        ("train.eval_every=abc", "train.eval_every: expected int, found 'abc'"),
        ("overwrite=maybe", "overwrite: expected bool, found 'maybe'"),
        ("train.batch_size=0", "train.batch_size: expected an integer >= 1, found 0"),
        ("train.precision=fp16", "train.precision: expected one of auto, bf16, fp32, found 'fp16'"),
        ("train=3", "train: expected a mapping of settings, found 3"),
        ("seed=null", "seed: expected a value, found null"),
    ],
)
def test_bad_values_name_the_key(override, fragment):
    with _raises(fragment, ConfigError):
        load_config(None, ["task=mrpc", override])


def test_every_problem_reported_at_once():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["task=mrpc", "train.batch_szie=3", "train.lr=abc", "seed=x"])
    message = str(info.value)
    assert "train.batch_szie" in message
    assert "train.lr: expected float" in message
    assert "seed: expected int" in message
    assert len(info.value.problems) == 3


def test_override_needs_key_value():
    with _raises("override 'train.lr': expected key=value", ConfigError):
        parse_overrides(["train.lr"])


def test_conflicting_overrides_are_an_error_not_a_crash():
    with _raises("override 'train.lr=1': 'train' was already set to a single value", ConfigError):
        load_config(None, ["task=mrpc", "train=3", "train.lr=1"])


def test_nothing_to_train_on():
    with _raises("nothing to train on: give a GLUE task name", ConfigError):
        load_config(None, [])


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("task: mrpc\ntrain:\n  lr: [1\n  batch_size: 2\n")
    with _raises(f"{path} line 4: not valid YAML; fix the syntax"):
        load_config(path)


def test_yaml_top_level_must_be_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- task\n- mrpc\n")
    with _raises(f"{path}: expected a mapping of settings at the top level, found list"):
        load_config(path)


def test_empty_yaml_file_means_defaults(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert load_config(path, ["task=rte"]).train.batch_size == 16


def test_missing_config_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with _raises(f"config file {path} not found: pass the path of a YAML file"):
        load_config(path)


def test_save_round_trips(tmp_path):
    cfg = load_config(
        None,
        [
            "data.train_file=tickets.csv",
            "data.text_column=body",
            "data.problem_type=multi_label",
            "train.lr=3e-5",
            "train.epochs=1.5",
            "train.max_steps=7",
            "train.max_grad_norm=null",
            "model.max_length=64",
            "seed=3",
            "quiet=true",
        ],
    )
    path = tmp_path / "config.yaml"
    cfg.save(path)
    again = load_config(path)
    assert again == cfg
    assert isinstance(again, RunConfig)
    assert again.train.lr == 3e-5


def test_default_config_round_trips(tmp_path):
    cfg = load_config(None, ["task=sst2"])
    cfg.save(tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


@pytest.mark.parametrize("path", SHIPPED or [None], ids=[p.name for p in SHIPPED] or ["none"])
def test_every_shipped_config_loads(path):
    if path is None:
        pytest.skip("no configs/*.yaml shipped yet")
    cfg = load_config(path)
    assert isinstance(cfg, RunConfig)


# ---------------------------------------------------------------- RunConfig.with_overrides


def test_with_overrides_from_strings_and_dicts_leaves_the_original():
    base = load_config(None, ["task=mrpc", "train.batch_size=16"])
    changed = base.with_overrides(["train.lr=3e-5", "seed=7"])
    assert changed.train.lr == pytest.approx(3e-5) and isinstance(changed.train.lr, float)
    assert changed.seed == 7 and changed.train.batch_size == 16 and changed.task == "mrpc"
    assert base.train.lr is None and base.seed == 42  # a copy: the original is untouched (lr: auto)
    assert changed.model is not base.model
    dotted = base.with_overrides({"train.lr": 3e-5, "seed": 7})
    nested = base.with_overrides({"train": {"lr": 3e-5}, "seed": 7})
    assert dotted == nested == changed


def test_with_overrides_equals_load_config_with_the_same_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: rte\ntrain:\n  batch_size: 4\n")
    overrides = ["train.epochs=2", "data.max_train_samples=100", "model.max_length=64", "output=runs/x"]
    assert load_config(path).with_overrides(overrides) == load_config(path, overrides)


def test_with_overrides_validates_and_reports_every_problem():
    base = load_config(None, ["task=mrpc"])
    with pytest.raises(ConfigError) as info:
        base.with_overrides({"train.batch_szie": 3, "train.lr": -1.0, "seed": "x"})
    assert info.value.problems == [
        "unknown key 'train.batch_szie' (did you mean 'train.batch_size'?)",
        "seed: expected int, found 'x'",
        "train.lr: expected a positive number, found -1.0",
    ]
    with pytest.raises(ConfigError, match="override 'train.lr': 'train' was already set to a single value"):
        base.with_overrides({"train": 1, "train.lr": 1e-4})


def test_a_config_built_in_python_is_checked_group_by_group():
    from seqtune.config import DataConfig, ModelConfig, TrainConfig
    from seqtune.errors import ConfigError
    from seqtune.training import train

    cfg = RunConfig(task="mrpc", model=ModelConfig(pooling="max", dropout=1.5), data=DataConfig(train_shard=2.0),
                    train=TrainConfig(batch_size=0, precision="fp16"))  # fmt: skip
    assert ModelConfig(pooling="max").problems() == []  # choices are checked over the whole config (Literal fields)
    assert DataConfig(train_shard=2.0).problems() == ["data.train_shard: expected a share in (0, 1], found 2.0"]
    expected = {
        "model.pooling: expected one of auto, cls, mean, found 'max'",
        "train.precision: expected one of auto, bf16, fp32, found 'fp16'",
        "model.dropout: expected a probability in [0, 1) or null, found 1.5",
        "data.train_shard: expected a share in (0, 1], found 2.0",
        "train.batch_size: expected an integer >= 1, found 0",
    }
    assert set(cfg.problems()) == expected
    with pytest.raises(ConfigError) as err:
        train(cfg)  # before anything is read or written
    assert set(err.value.problems) == expected
    assert RunConfig(task="mrpc").check().task == "mrpc"
