"""`seqtune glue`: every task with data, results over seeds, a complete leaderboard zip, reruns skip what is done."""

from __future__ import annotations

import json
import random
import zipfile
from pathlib import Path

import pytest
from conftest import WORDS, run_cli

from seqtune.glue import RESULTS_JSON, RESULTS_MD


def _rte(root: Path) -> None:
    rng = random.Random(2)
    folder = root / "RTE"
    folder.mkdir()
    for name, n in (("train", 48), ("dev", 16)):
        lines = ["index\tsentence1\tsentence2\tlabel"]
        for i in range(n):
            a = " ".join(rng.choices(WORDS, k=6))
            same = i % 2 == 0
            lines.append(f"{i}\t{a}\t{a if same else ' '.join(rng.choices(WORDS, k=4))}\t"
                         f"{'entailment' if same else 'not_entailment'}")  # fmt: skip
        (folder / f"{name}.tsv").write_text("\n".join(lines) + "\n")
    test = ["index\tsentence1\tsentence2"] + [f"{i}\t{' '.join(rng.choices(WORDS, k=5))}\tthe cat" for i in range(7)]
    (folder / "test.tsv").write_text("\n".join(test) + "\n")


@pytest.fixture
def two_tasks(mini_glue) -> Path:
    _rte(mini_glue)
    return mini_glue


def _glue(capsys, model: Path, data: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    return run_cli(capsys, "glue", "--data-dir", data, "--model", model, "--max-length", "32", "--batch-size", "8",
                   "--epochs", "1", "--output", out, *extra)  # fmt: skip


def test_glue_trains_every_task_with_data_and_writes_a_complete_submission(tiny_model_dir, two_tasks, tmp_path, capsys):
    out = tmp_path / "glue"
    code, stdout, err = _glue(capsys, tiny_model_dir, two_tasks, out, "--seeds", "2")
    assert code == 0, err
    for skipped in ("cola", "sst2", "stsb", "qqp", "mnli", "qnli", "wnli"):
        assert f"skip {skipped}: no " in stdout
    assert "[1/4] mrpc seed 42: accuracy=" in stdout and "[4/4] rte seed 43: accuracy=" in stdout
    results = json.loads((out / RESULTS_JSON).read_text())
    assert set(results["tasks"]) == {"mrpc", "rte"} and "qnli" in results["skipped"]
    mrpc = results["tasks"]["mrpc"]
    assert mrpc["seeds"] == [42, 43] and set(mrpc["metrics"]["validation"]) == {"accuracy", "f1", "combined_score"}
    per_seed = [json.loads((out / "mrpc" / f"seed-{s}" / "metrics.json").read_text())["best"] for s in (42, 43)]
    accuracies = [b["metrics"]["validation"]["accuracy"] for b in per_seed]
    assert mrpc["metrics"]["validation"]["accuracy"]["mean"] == pytest.approx(sum(accuracies) / 2)
    assert "| rte | validation | accuracy |" in (out / RESULTS_MD).read_text()
    with zipfile.ZipFile(out / "submission.zip") as zf:
        assert sorted(zf.namelist()) == ["MRPC.tsv", "RTE.tsv"]
        rte = zf.read("RTE.tsv").decode().splitlines()
    assert rte[0] == "index\tprediction" and len(rte) == 8
    assert all(line.split("\t")[1] in ("entailment", "not_entailment") for line in rte[1:])


def test_a_rerun_skips_finished_runs(tiny_model_dir, two_tasks, tmp_path, capsys):
    out = tmp_path / "glue"
    assert _glue(capsys, tiny_model_dir, two_tasks, out, "--tasks", "rte")[0] == 0
    weights = out / "rte" / "seed-42" / "model.safetensors"
    before = weights.stat().st_mtime_ns
    code, stdout, _ = _glue(capsys, tiny_model_dir, two_tasks, out, "--tasks", "rte,mrpc")
    assert code == 0
    assert weights.stat().st_mtime_ns == before  # not trained again
    assert (out / "mrpc" / "seed-42" / "task.json").is_file()
    assert set(json.loads((out / RESULTS_JSON).read_text())["tasks"]) == {"rte", "mrpc"}


def test_glue_without_data_is_a_clear_error(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = _glue(capsys, tiny_model_dir, tmp_path / "empty", tmp_path / "out", "--tasks", "rte")
    assert code == 2 and err.count("\n") == 1
    assert "none of rte has train and dev files; check --data-dir" in err


def test_glue_ensemble_makes_each_task_a_seed_ensemble_that_the_submission_predicts_with(
    tiny_model_dir, two_tasks, tmp_path, capsys
):
    import numpy as np

    from seqtune.predict import load_run, predict

    out = tmp_path / "glue"
    code, _, err = _glue(capsys, tiny_model_dir, two_tasks, out, "--tasks", "rte", "--seeds", "2", "--ensemble")
    assert code == 0, err
    ensemble = json.loads((out / "rte" / "metrics.json").read_text())["ensemble"]
    assert ensemble["members"] == ["seed-42", "seed-43"]
    members = [np.load(out / "rte" / f"seed-{s}" / "eval_predictions.npz") for s in (42, 43)]
    probs = np.mean([np.exp(m["validation/logits"]) / np.exp(m["validation/logits"]).sum(-1, keepdims=True)
                     for m in members], axis=0)  # fmt: skip
    accuracy = float(np.mean(probs.argmax(-1) == members[0]["validation/labels"]))
    results = json.loads((out / RESULTS_JSON).read_text())["tasks"]["rte"]
    assert results["ensemble"]["validation"]["accuracy"] == pytest.approx(accuracy)
    assert (
        f"| rte | validation | accuracy | {results['metrics']['validation']['accuracy']['mean']:.4f} |"
        in (out / RESULTS_MD).read_text()
    )
    test = [line.split("\t") for line in (two_tasks / "RTE" / "test.tsv").read_text().splitlines()[1:]]
    expected = [r["label"] for r in predict(load_run(out / "rte"), [a for _, a, _ in test], [b for _, _, b in test])]
    with zipfile.ZipFile(out / "submission.zip") as zf:
        submitted = [line.split("\t")[1] for line in zf.read("RTE.tsv").decode().splitlines()[1:]]
    assert submitted == expected
    # a rerun reads the ensemble back; --ensemble needs two seeds or more
    assert _glue(capsys, tiny_model_dir, two_tasks, out, "--tasks", "rte", "--seeds", "2", "--ensemble")[0] == 0
    code, _, err = _glue(capsys, tiny_model_dir, two_tasks, out, "--tasks", "rte", "--ensemble")
    assert code == 2 and "--ensemble combines the runs of --seeds N (N >= 2)" in err


def test_transfer_starts_each_seed_from_the_same_seed_of_its_source_trained_first(
    tiny_model_dir, two_tasks, tmp_path, capsys
):
    from seqtune.runfolder import load_run_config

    out = tmp_path / "glue"
    code, stdout, err = _glue(capsys, tiny_model_dir, two_tasks, out, "--seeds", "2", "--transfer", "mrpc=rte")
    assert code == 0, err
    # the source trains first, whatever GLUE's order
    assert "[1/4] rte seed 42: accuracy=" in stdout and "[3/4] mrpc seed 42 (from rte): accuracy=" in stdout
    for seed in (42, 43):
        assert load_run_config(out / "mrpc" / f"seed-{seed}").model.name == str(out / "rte" / f"seed-{seed}")
        assert load_run_config(out / "rte" / f"seed-{seed}").model.name == str(tiny_model_dir)
    assert f"Fine-tuned from `{out / 'rte' / 'seed-42'}`" in (out / "mrpc" / "seed-42" / "README.md").read_text()
    tasks = json.loads((out / RESULTS_JSON).read_text())["tasks"]
    assert tasks["mrpc"]["transfer_from"] == "rte" and tasks["rte"]["transfer_from"] is None
    assert "- mrpc: every seed started from the same seed's rte model (--transfer)" in (out / RESULTS_MD).read_text()


def test_a_transferred_run_of_the_packaged_model_names_it_in_its_card(two_tasks, tmp_path, capsys):
    """The path users take: `seqtune glue` from the packaged MiniLM (the default `--model`), RTE started from MRPC's
    run; the RTE run's card names the pretrained model and its licence, not the intermediate run folder."""
    out = tmp_path / "runs"
    code, _, err = _glue(capsys, Path("minilm"), two_tasks, out, "--transfer", "rte=mrpc", "--max-train-samples", "16")
    assert code == 0, err
    card = (out / "rte" / "seed-42" / "README.md").read_text()
    front = card.split("---")[1]
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in front and "license: apache-2.0" in front
    assert f"Fine-tuned from `{out / 'mrpc' / 'seed-42'}`" in card


def test_transfer_without_its_source_starts_from_the_model_and_says_why(tiny_model_dir, two_tasks, tmp_path, capsys):
    from seqtune.runfolder import load_run_config

    out = tmp_path / "glue"
    code, stdout, err = _glue(capsys, tiny_model_dir, two_tasks, out, "--tasks", "rte", "--transfer", "rte=mrpc")
    assert code == 0, err
    assert "[1/1] rte seed 42: accuracy=" in stdout
    assert (f"rte seed 42: starts from {tiny_model_dir}, not from mrpc (no finished {out / 'mrpc' / 'seed-42'}; "
            "add mrpc to --tasks)") in stdout  # fmt: skip
    assert load_run_config(out / "rte" / "seed-42").model.name == str(tiny_model_dir)
    assert json.loads((out / RESULTS_JSON).read_text())["tasks"]["rte"]["transfer_from"] is None
    # a source finished by an earlier command into the same folder is used
    later = tmp_path / "later"
    assert _glue(capsys, tiny_model_dir, two_tasks, later, "--tasks", "mrpc")[0] == 0
    code, stdout, _ = _glue(capsys, tiny_model_dir, two_tasks, later, "--tasks", "rte", "--transfer", "rte=mrpc")
    assert code == 0 and "[1/1] rte seed 42 (from mrpc): accuracy=" in stdout
    assert load_run_config(later / "rte" / "seed-42").model.name == str(later / "mrpc" / "seed-42")
    # the default (rte from stsb): this folder has no STS-B, so RTE starts from the model here too
    code, stdout, _ = _glue(capsys, tiny_model_dir, two_tasks, tmp_path / "default", "--tasks", "rte")
    assert code == 0 and "starts from" in stdout and "not from stsb" in stdout


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("rte", "--transfer rte: 'rte' is not TARGET=SOURCE; e.g. --transfer rte=stsb (or none)"),
        ("rte=rte", "--transfer rte=rte: rte cannot start from itself"),
        ("rte=mrpc,mrpc=stsb", "--transfer rte=mrpc,mrpc=stsb: mrpc is the source of rte and a target itself"),
        ("rte=foo", "unknown task 'foo'"),
    ],
)
def test_a_bad_transfer_is_a_clear_error_before_any_training(
    tiny_model_dir, two_tasks, tmp_path, capsys, value, message
):
    code, _, err = _glue(capsys, tiny_model_dir, two_tasks, tmp_path / "out", "--transfer", value)
    assert code == 2 and err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()


def test_a_transferred_run_loads_its_source_weights_under_from_scratch(tiny_model_dir, two_tasks, tmp_path, capsys):
    from seqtune.runfolder import load_run_config

    out = tmp_path / "glue"
    code, _, err = _glue(capsys, tiny_model_dir, two_tasks, out, "--from-scratch", "--transfer", "mrpc=rte")
    assert code == 0, err
    rte, mrpc = load_run_config(out / "rte" / "seed-42"), load_run_config(out / "mrpc" / "seed-42")
    assert rte.model.from_scratch and rte.model.name == str(tiny_model_dir)  # the source: random weights
    assert not mrpc.model.from_scratch and mrpc.model.name == str(out / "rte" / "seed-42")  # then the source's
