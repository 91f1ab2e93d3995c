"""The `seqtune` command: bad input gives exit code 2 and one clean line (and writes nothing); a tiny run end to end."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_clean_error, assert_nothing_written, make_rows, run_cli, snapshot, write_csv

from seqtune.cli import build_parser, main, train_overrides
from seqtune.config import load_config


@pytest.fixture
def out(tmp_path, monkeypatch) -> Path:
    """The --output folder of a failing run; cwd is tmp_path so a stray default runs/ would show up there too."""
    monkeypatch.chdir(tmp_path)
    return tmp_path / "out"


def _train(capsys, model: Path, out: Path, *args) -> tuple[int, str, str]:
    return run_cli(
        capsys, "train", "--model", model, "--output", out, "--max-length", 32, "--epochs", 1, "--quiet", *args
    )


# ---------------------------------------------------------------- bad input: exit 2, one line, nothing written


def test_unknown_task(capsys, tiny_model_dir, out):
    code, _, err = _train(capsys, tiny_model_dir, out, "mrcp")
    assert_clean_error(code, err, "unknown task 'mrcp': expected one of cola, sst2, mrpc,")
    assert "pass --train-file" in err
    assert_nothing_written(out)


def test_missing_train_file(capsys, tiny_model_dir, out, tmp_path):
    missing = tmp_path / "missing.csv"
    code, _, err = _train(capsys, tiny_model_dir, out, "--train-file", missing)
    assert_clean_error(code, err, f"{missing}: file not found; check the path")
    assert_nothing_written(out)


def test_missing_column_lists_the_columns(capsys, tiny_model_dir, out, toy_csv):
    code, _, err = _train(capsys, tiny_model_dir, out, "--train-file", toy_csv, "--text-column", "body")
    assert_clean_error(
        code, err, f"{toy_csv}: missing column 'body'; found columns ['text', 'label']; pass --text-column"
    )
    assert_nothing_written(out)


def test_validation_label_not_in_training_labels(capsys, tiny_model_dir, out, toy_csv, tmp_path):
    rows = make_rows(8, seed=5)
    rows[3]["label"] = "maybe"  # data row 4 -> file line 5 (after the header)
    val = write_csv(tmp_path / "val.csv", rows)
    code, _, err = _train(capsys, tiny_model_dir, out, "--train-file", toy_csv, "--validation-file", val)
    assert_clean_error(
        code,
        err,
        f"{val} line 5: label 'maybe' is not in the label set from the training file ['neg', 'pos']; "
        "fix the label or add training examples for it",
    )
    assert_nothing_written(out)


def test_empty_text(capsys, tiny_model_dir, out, tmp_path):
    rows = make_rows(20)
    rows[6]["text"] = ""  # file line 8
    data = write_csv(tmp_path / "data.csv", rows)
    code, _, err = _train(capsys, tiny_model_dir, out, "--train-file", data)
    assert_clean_error(code, err, f"{data} line 8: empty text in column 'text'; fill it or remove the row")
    assert_nothing_written(out)


def test_non_numeric_regression_target(capsys, tiny_model_dir, out, tmp_path):
    rows = [{"text": r["text"], "label": f"{i / 10:.1f}"} for i, r in enumerate(make_rows(20))]
    rows[9]["label"] = "high"  # file line 11
    data = write_csv(tmp_path / "scores.csv", rows)
    code, _, err = _train(capsys, tiny_model_dir, out, "--train-file", data, "--regression")
    assert_clean_error(
        code,
        err,
        f"{data} line 11: regression target 'high' in column 'label' is not a number; fix the value or remove the row",
    )
    assert_nothing_written(out)


def test_binary_file(capsys, tiny_model_dir, out, tmp_path):
    data = tmp_path / "data.csv"
    data.write_bytes(b"PK\x03\x04\x00\x00\x08\x00" + bytes(range(256)) * 4)
    code, _, err = _train(capsys, tiny_model_dir, out, "--train-file", data)
    assert_clean_error(
        code, err, f"{data}: looks like a binary file (NUL bytes), expected UTF-8 text; export it as CSV/TSV"
    )
    assert_nothing_written(out)


def test_model_folder_without_weights(capsys, out, toy_csv, tiny_model_dir, tmp_path):
    model = tmp_path / "no-weights"
    model.mkdir()
    shutil.copy(tiny_model_dir / "config.json", model / "config.json")
    code, _, err = _train(capsys, model, out, "--train-file", toy_csv)
    assert_clean_error(
        code,
        err,
        f"{model}: has no weights (expected model.safetensors or pytorch_model.bin); "
        "pass a folder saved with save_pretrained, or add --from-scratch",
    )
    assert_nothing_written(out)


def test_existing_run_folder_without_overwrite(capsys, tiny_model_dir, out, toy_csv):
    out.mkdir()
    (out / "notes.txt").write_text("keep me\n")
    (out / "sub").mkdir()
    (out / "sub" / "model.safetensors").write_bytes(b"\x01\x02")
    before = snapshot(out)
    code, _, err = _train(capsys, tiny_model_dir, out, "--train-file", toy_csv)
    assert_clean_error(
        code,
        err,
        f"{out}: run folder exists and is not empty; pass --overwrite to replace it, --resume to continue it, "
        "or choose another --output",
    )
    assert snapshot(out) == before


def test_unknown_config_key_override(capsys, tiny_model_dir, out, toy_csv):
    code, _, err = _train(capsys, tiny_model_dir, out, "--train-file", toy_csv, "train.batch_szie=3")
    assert_clean_error(code, err, "unknown key 'train.batch_szie' (did you mean 'train.batch_size'?)")
    assert_nothing_written(out)


def test_overrides_after_a_task_and_flags_still_apply(capsys, out):
    code, _, err = run_cli(capsys, "train", "mrpc", "--epochs", "1", "train.batch_szie=3", "--output", out)
    assert_clean_error(code, err, "unknown key 'train.batch_szie' (did you mean 'train.batch_size'?)")
    assert_nothing_written(out)


def test_unrecognized_argument_points_at_the_right_help(capsys, tmp_path):
    code, _, err = run_cli(capsys, "predict", tmp_path, "--text", "hi", "a=b")
    assert_clean_error(code, err, "unrecognized arguments: a=b (see seqtune --help)")
    code, _, err = run_cli(capsys, "train", "--epochs", "x")
    assert_clean_error(code, err, "argument --epochs: invalid float value: 'x' (see seqtune train --help)")


def test_several_config_problems_in_one_line(capsys, tiny_model_dir, out, toy_csv):
    code, _, err = _train(capsys, tiny_model_dir, out, "--train-file", toy_csv, "train.batch_szie=3", "seed=x")
    assert_clean_error(
        code, err, "unknown key 'train.batch_szie' (did you mean 'train.batch_size'?); seed: expected int"
    )
    assert_nothing_written(out)


def test_dropout_out_of_range(capsys, tiny_model_dir, out, toy_csv):
    code, _, err = _train(capsys, tiny_model_dir, out, "--train-file", toy_csv, "--dropout", "1.2")
    assert_clean_error(code, err, "model.dropout: expected a probability in [0, 1) or null, found 1.2")
    assert_nothing_written(out)


def test_missing_config_file(capsys, tiny_model_dir, out, toy_csv, tmp_path):
    code, _, err = _train(capsys, tiny_model_dir, out, "--train-file", toy_csv, "--config", tmp_path / "nope.yaml")
    assert_clean_error(code, err, f"config file {tmp_path / 'nope.yaml'} not found")
    assert_nothing_written(out)


def test_two_task_names(capsys, tiny_model_dir, out):
    code, _, err = _train(capsys, tiny_model_dir, out, "mrpc", "rte")
    assert_clean_error(code, err, "unexpected argument 'rte': give one task name, then key=value overrides")
    assert_nothing_written(out)


def test_predict_on_a_folder_that_is_not_a_run(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello\n")
    preds = tmp_path / "preds.jsonl"
    code, _, err = run_cli(capsys, "predict", folder, "--input", folder / "notes.txt", "--output", preds)
    assert_clean_error(code, err, f"{folder}: not a finished seqtune run (no task.json / config.json)")
    assert not preds.exists()
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]

    code, _, err = run_cli(capsys, "predict", tmp_path / "nowhere", "--text", "hi")
    assert_clean_error(code, err, f"{tmp_path / 'nowhere'}: run folder not found")


def test_predict_needs_one_mode(capsys, tmp_path):
    code, _, err = run_cli(capsys, "predict", tmp_path)
    assert_clean_error(code, err, "predict needs exactly one of --text, --input FILE or --split test")
    code, _, err = run_cli(capsys, "predict", tmp_path, "--text", "hi", "--split", "test")
    assert_clean_error(code, err, "predict needs exactly one of --text, --input FILE or --split test")


def test_real_process_exit_code_and_one_line(tmp_path):
    """The console entry point really exits 2 with one stderr line and no traceback."""
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SEQTUNE_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-m", "seqtune", "train", "mrcp", "--output", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert_clean_error(proc.returncode, proc.stderr, "unknown task 'mrcp': expected one of")
    assert proc.stdout == ""
    assert_nothing_written(out)


# ---------------------------------------------------------------- flags -> config


def test_flags_become_typed_config_values(tmp_path):
    ns = build_parser().parse_args(
        ["train", "--train-file", "2024.csv", "--text-column", "1e5", "--output", "runs/😀 é",
         "--lr", "3e-5", "--epochs", "1", "--batch-size", "8", "--regression", "--quiet", "--dropout", "0", "seed=3"]
    )  # fmt: skip
    task, overrides = train_overrides(ns)
    assert task is None
    cfg = load_config(None, overrides)
    assert cfg.data.train_file == "2024.csv"
    assert cfg.data.text_column == "1e5"  # a string flag stays the string typed, even when it looks like a number
    assert cfg.output == "runs/😀 é"
    assert cfg.train.lr == pytest.approx(3e-5) and isinstance(cfg.train.lr, float)
    assert cfg.train.epochs == 1.0 and cfg.train.batch_size == 8
    assert cfg.data.problem_type == "regression" and cfg.quiet is True and cfg.seed == 3
    assert cfg.model.dropout == 0.0 and isinstance(cfg.model.dropout, float)


def test_flags_override_the_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("task: rte\ntrain:\n  batch_size: 4\n  lr: 5e-5\n")
    ns = build_parser().parse_args(["train", "--config", str(path), "--batch-size", "16"])
    _, overrides = train_overrides(ns)
    cfg = load_config(ns.config, overrides)
    assert cfg.task == "rte" and cfg.train.batch_size == 16 and cfg.train.lr == pytest.approx(5e-5)


def test_non_ascii_column_name_in_the_message(capsys, tiny_model_dir, out, toy_csv):
    code, _, err = _train(capsys, tiny_model_dir, out, "--train-file", toy_csv, "--text-column", "tëxt 😀")
    assert_clean_error(code, err, f"{toy_csv}: missing column 'tëxt 😀'; found columns ['text', 'label']")
    assert_nothing_written(out)


# ---------------------------------------------------------------- a tiny run, end to end


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, tmp_path_factory) -> tuple[int, str, Path, Path]:
    """Train once for the module: (exit code, stdout, run folder, the training CSV)."""
    root = tmp_path_factory.mktemp("cli-run")
    data = write_csv(root / "toy.csv", make_rows(96))
    run_dir = root / "OUT"
    stdout = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
        mp.setenv("SEQTUNE_CACHE", str(root / "cache"))
        mp.chdir(root)
        code = main(
            ["train", "--train-file", str(data), "--model", str(tiny_model_dir), "--epochs", "1",
             "--max-length", "32", "--output", str(run_dir), "--quiet"]
        )  # fmt: skip
    return code, stdout.getvalue(), run_dir, data


def test_train_writes_the_run_folder(tiny_run):
    code, stdout, run_dir, _ = tiny_run
    assert code == 0
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout
    assert lines[0].startswith("custom done in ") and lines[0].endswith(f"-> {run_dir}")
    for name in ("config.yaml", "metrics.json", "model.safetensors", "README.md", "task.json", "train_log.jsonl"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "checkpoints").exists()
    task = json.loads((run_dir / "task.json").read_text())
    assert task["label_names"] == ["neg", "pos"]


def test_predict_text(capsys, tiny_run):
    run_dir = tiny_run[2]
    code, stdout, err = run_cli(capsys, "predict", run_dir, "--text", "a happy cat")
    assert code == 0, err
    records = json.loads(stdout)
    assert len(records) == 1
    first = records[0]
    assert first["label"] in {"neg", "pos"}
    assert set(first["probabilities"]) == {"neg", "pos"}
    assert sum(first["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)


def test_predict_file(capsys, tiny_run, tmp_path):
    run_dir, data = tiny_run[2], tiny_run[3]
    preds = tmp_path / "preds.jsonl"
    code, stdout, err = run_cli(capsys, "predict", run_dir, "--input", data, "--output", preds)
    assert code == 0, err
    assert stdout.strip() == f"wrote 96 predictions to {preds}"
    lines = preds.read_text().splitlines()
    assert len(lines) == 96
    records = [json.loads(line) for line in lines]
    assert [r["row"] for r in records] == list(range(96))
    assert all(r["label"] in {"neg", "pos"} for r in records)


def test_predict_errors_on_a_real_run(capsys, tiny_run, tmp_path):
    run_dir, data = tiny_run[2], tiny_run[3]
    code, _, err = run_cli(capsys, "predict", run_dir, "--input", data)
    assert_clean_error(code, err, "--input needs --output FILE (JSON lines are written there)")
    code, _, err = run_cli(capsys, "predict", run_dir, "--text", "a", "--text-pair", "b")
    assert_clean_error(code, err, "this model takes a single text, not a pair: drop --text-pair")
    code, _, err = run_cli(capsys, "predict", run_dir, "--text", "  ")
    assert_clean_error(code, err, "input 1: empty text; every input needs some text")
    bad = write_csv(tmp_path / "bad.csv", [{"body": "x"}])
    preds = tmp_path / "preds.jsonl"
    code, _, err = run_cli(capsys, "predict", run_dir, "--input", bad, "--output", preds)
    assert_clean_error(code, err, f"{bad}: missing column 'text'; found columns ['body']")
    assert not preds.exists()


def test_every_flag_comes_from_a_config_field_and_sets_it():
    """The flags of train and search are generated from the config: each sets its own key, with the value given."""
    from seqtune.cli import FLAGS, build_parser, train_overrides
    from seqtune.config import RunConfig

    defaults = RunConfig().to_dict()
    samples = {int: "7", float: "0.25", str: "auto"}
    for f in FLAGS:
        group, _, name = f.key.rpartition(".")
        assert name in (defaults[group] if group else defaults), f.key  # a real config key
        assert f.help, f.flag
        argv = ["train", f.flag] if f.type is None else ["train", f.flag, samples[f.type]]
        _, overrides = train_overrides(build_parser().parse_args(argv))
        expected = json.dumps(f.value) if f.type is None else samples[f.type]
        assert overrides == [f"{f.key}={json.dumps(expected) if f.type is str else expected}"], f.flag
    assert {"--lr", "--pooling", "--multi-label", "--no-group-by-length", "--resume"} <= {f.flag for f in FLAGS}
    switch = next(f for f in FLAGS if f.flag == "--no-group-by-length")
    assert (switch.key, switch.value) == ("train.group_by_length", False)
