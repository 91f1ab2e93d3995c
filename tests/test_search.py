"""Hyperparameter search (Optuna) and multi-seed runs, on the tiny model."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml

from seqtune import load_config
from seqtune.cli import main
from seqtune.errors import SeqtuneError
from seqtune.search import DEFAULT_SPACE, baseline_params, check_space, load_space, search
from seqtune.seeds import bootstrap_ci, seed_summary

SPACE = {"train.lr": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True}}


def _cfg(tiny_model_dir, toy_csv, out, *extra):
    return load_config(None, [f"model.name={tiny_model_dir}", f"data.train_file={toy_csv}", f"output={out}",
                              "quiet=true", "model.max_length=32", "train.epochs=2", *extra])  # fmt: skip


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"train.lrr": {"type": "float", "low": 1, "high": 2}}, "unknown parameter 'train.lrr'"),
        ({"train.lr": {"type": "float", "low": 0.1, "high": 0.01}}, "'train.lr' has low 0.1 > high 0.01; swap them"),
        ({"train.batch_size": {"type": "categorical", "choices": []}}, "'train.batch_size' has no choices"),
        ({"train.lr": {"type": "gaussian"}}, "'train.lr' needs a type, one of float, int, categorical"),
        ({"train.lr": {"type": "float", "low": 0, "high": 1, "log": True}}, "log-scaled, so low must be > 0"),
    ],
)
def test_bad_search_spaces_name_the_key(space, message):
    with pytest.raises(SeqtuneError, match=re.escape(message)):
        check_space(space)


def test_bad_space_file_through_the_cli_exits_2(tmp_path, capsys):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"train.epochs": {"type": "int", "low": 5, "high": 2}}))
    assert main(["search", "mrpc", "--space", str(path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'train.epochs' has low 5 > high 2" in err[0]
    assert load_space(None)["train.lr"]["log"] is True


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("journal:{tmp}/missing/study.log", "--storage journal:{tmp}/missing/study.log: cannot open the journal file "
         "(No such file or directory); create its folder or pick another path"),
        ("sqlite:///{tmp}/missing/study.db", "--storage sqlite:///{tmp}/missing/study.db: cannot open the study "
         "(unable to open database file); check the URL, that its folder exists and is writable"),
        ("bogus://x", "--storage bogus://x: not a storage seqtune can open (Can't load plugin: sqlalchemy.dialects:"
         "bogus); use sqlite:///PATH, postgresql://USER@HOST/DATABASE or journal:PATH"),
    ],
)  # fmt: skip
def test_a_storage_that_cannot_be_opened_is_one_line(storage, message, tiny_model_dir, toy_csv, tmp_path, capsys):
    from conftest import assert_clean_error, run_cli

    code, _, err = run_cli(capsys, "search", "--train-file", toy_csv, "--model", tiny_model_dir, "--trials", "1",
                           "--storage", storage.format(tmp=tmp_path), "--output", tmp_path / "search")  # fmt: skip
    assert_clean_error(code, err, message.format(tmp=tmp_path))
    assert not (tmp_path / "search" / "trials").exists() and not (tmp_path / "missing").exists()


def test_seed_summary_mean_std_and_bootstrap():
    summary = seed_summary([{"acc": 0.80}, {"acc": 0.84}, {"acc": 0.82}])
    acc = summary["acc"]
    assert acc["mean"] == pytest.approx(0.82)
    assert acc["std"] == pytest.approx(0.02)  # sample std: sqrt((0.02^2 + 0.02^2 + 0) / 2)
    low, high = acc["ci95"]
    assert 0.80 <= low < 0.82 < high <= 0.84
    assert bootstrap_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)
    wide = bootstrap_ci(list(np.linspace(0, 1, 5)))
    assert wide[1] - wide[0] > 0.3


def test_baseline_params_are_the_settings_that_lie_inside_the_space():
    cfg = load_config(None, ["task=mrpc", "train.lr=5e-5", "train.batch_size=24", "train.epochs=3", "seed=42"])
    params = baseline_params(cfg, DEFAULT_SPACE)
    # batch 24 is not one of the choices, so the sampler picks it; epochs 3.0 becomes the int 3
    assert params == {"train.lr": 5e-5, "train.epochs": 3, "train.warmup_ratio": cfg.train.warmup_ratio,
                      "train.weight_decay": cfg.train.weight_decay, "seed": 42}  # fmt: skip
    assert isinstance(params["train.epochs"], int)
    assert baseline_params(load_config(None, ["task=mrpc", "train.lr=1e-3"]), DEFAULT_SPACE).get("train.lr") is None


def test_search_returns_a_trained_model_and_resumes(tiny_model_dir, toy_csv, tmp_path):
    out = tmp_path / "search"
    cfg = _cfg(tiny_model_dir, toy_csv, out, "train.lr=2e-4")  # inside SPACE, so trial 0 is these settings
    result = search(cfg, n_trials=3, space=SPACE, train_shard=0.5)
    assert len(result.trials) == 3 and {t["state"] for t in result.trials} <= {"COMPLETE", "PRUNED"}
    assert (result.best_run / "model.safetensors").is_file() and (result.best_run / "task.json").is_file()
    assert result.retrain_completed is True
    record = json.loads((result.best_run / "search.json").read_text())
    assert record["best_params"] == result.best_params and record["train_shard"] == 0.5
    assert record["best_value"] == max(t["value"] for t in record["trials"] if t["state"] == "COMPLETE")
    # the first trial is the run's own settings: the search can't return worse on its score
    assert record["trials"][0]["baseline"] and record["trials"][0]["params"] == {"train.lr": cfg.train.lr}
    assert not any(t["baseline"] for t in record["trials"][1:])
    # the retrained model used the best lr on the full data
    best_cfg = load_config(result.best_run / "config.yaml")
    assert best_cfg.train.lr == pytest.approx(result.best_params["train.lr"])
    assert best_cfg.data.train_shard is None
    assert not (out / "trials").exists() or not any((out / "trials").iterdir())  # trial weights cleaned up
    # the same command again (a scheduler re-running it after a preemption): the finished retrain is kept
    weights = result.best_run / "model.safetensors"
    before = weights.stat().st_mtime_ns
    assert search(cfg, n_trials=3, space=SPACE, train_shard=0.5).best_run == result.best_run
    assert weights.stat().st_mtime_ns == before
    # a retrain of other settings (here: edited) is replaced by the study's best
    best_cfg.train.lr = 0.5
    best_cfg.save(result.best_run / "config.yaml")
    search(cfg, n_trials=3, space=SPACE, train_shard=0.5)
    assert weights.stat().st_mtime_ns != before
    assert load_config(result.best_run / "config.yaml").train.lr == pytest.approx(result.best_params["train.lr"])
    # an interrupted/extended search resumes: only the missing trial runs
    again = search(cfg, n_trials=4, space=SPACE, train_shard=0.5, retrain=False)
    assert [t["number"] for t in again.trials] == [0, 1, 2, 3]


def test_two_workers_share_one_study_without_running_a_trial_twice(tiny_model_dir, toy_csv, tmp_path):
    import optuna

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(study_name="seqtune", storage=storage, direction="maximize")  # as the README advises
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "seqtune",
                "search",
                "--train-file",
                str(toy_csv),
                "--model",
                str(tiny_model_dir),
                "--max-length",
                "32",
                "--epochs",
                "1",
                "--trials",
                "5",
                "--storage",
                storage,
                "--no-retrain",
                "--output",
                str(tmp_path / f"worker{i}"),
                "--quiet",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    study = optuna.load_study(study_name="seqtune", storage=storage)
    ran = [t for t in study.trials if not t.user_attrs.get("over_budget")]
    assert len(ran) == 5  # the budget, exactly
    assert len({t.number for t in ran}) == 5
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in ran)
    by_worker = [json.loads((tmp_path / f"worker{i}" / "search.json").read_text()) for i in range(2)]
    assert all(len(r["trials"]) == 5 for r in by_worker)  # both see the whole study at the end


def test_a_baseline_enqueued_by_two_workers_runs_once(tiny_model_dir, toy_csv, tmp_path):
    """Workers starting together on an empty study each enqueue the baseline (the storage has no lock for "enqueue if
    empty"): the lowest-numbered copy trains, the other steps aside without using a slot of the budget."""
    import optuna

    out = tmp_path / "search"
    cfg = _cfg(tiny_model_dir, toy_csv, out, "train.lr=2e-4")
    storage = f"sqlite:///{tmp_path / 'race.db'}"
    study = optuna.create_study(study_name="seqtune", storage=storage, direction="maximize")
    for _ in range(2):  # what two racing workers leave behind
        study.enqueue_trial(baseline_params(cfg, SPACE), user_attrs={"baseline": True})
    result = search(cfg, n_trials=3, space=SPACE, storage=storage, retrain=False)
    assert [(t["number"], t["baseline"]) for t in result.trials] == [(0, True), (2, False), (3, False)]
    twin = optuna.load_study(study_name="seqtune", storage=storage).trials[1]
    assert twin.state.name == "PRUNED" and twin.user_attrs["over_budget"] and not twin.intermediate_values


def test_train_with_seeds_reports_mean_std_ci(tiny_model_dir, toy_csv, tmp_path, capsys):
    out = tmp_path / "seeds"
    code = main(["train", "--train-file", str(toy_csv), "--model", str(tiny_model_dir), "--max-length", "32",
                 "--epochs", "1", "--output", str(out), "--quiet", "--seeds", "3"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert re.search(r"accuracy: \d\.\d{4} \+- \d\.\d{4} \(95% CI \d\.\d{4}-\d\.\d{4}\)", printed)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["seeds"] == 3 and len(metrics["runs"]) == 3
    per_seed = [json.loads((out / f"seed-{s}" / "metrics.json").read_text())["best"]["metrics"]["validation"]
                for s in (42, 43, 44)]  # fmt: skip
    assert metrics["summary"]["accuracy"]["values"] == [m["accuracy"] for m in per_seed]


def test_seeds_stop_at_a_signal_without_a_summary(tmp_path, monkeypatch, capsys):
    """A signal that stops one seed's training stops the whole --seeds run: exit 130, no averaged summary."""
    from types import SimpleNamespace

    import seqtune.training

    calls = []

    def fake_train(cfg):
        calls.append(cfg.seed)
        stopped = len(calls) == 2
        return SimpleNamespace(completed=not stopped, task=SimpleNamespace(eval_splits=("validation",)),
                               best=None if stopped else {"metrics": {"validation": {"accuracy": 0.5}}},
                               run_dir=tmp_path / "out" / f"seed-{cfg.seed}")  # fmt: skip

    monkeypatch.setattr(seqtune.training, "train", fake_train)
    code = main(["train", "mrpc", "--output", str(tmp_path / "out"), "--seeds", "3", "--quiet"])
    assert code == 130 and calls == [42, 43]
    assert "interrupted" in capsys.readouterr().err
    assert not (tmp_path / "out" / "metrics.json").exists()
