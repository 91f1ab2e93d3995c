"""The training loop's promises: accumulation and resume equivalence, run folder, problem types end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import interrupt_training, make_rows, run_cli, write_csv
from safetensors.torch import load_file

from seqtune import load_config
from seqtune.data import load_glue
from seqtune.errors import SeqtuneError
from seqtune.predict import evaluate_file, evaluate_run, glue_submission, predict
from seqtune.predict_stream import predict_file
from seqtune.runtime import load_run
from seqtune.tasks import get_task
from seqtune.training import train


def _cfg(model: Path, out: Path, *extra: str):
    return load_config(None, [f"model.name={model}", f"output={out}", "quiet=true", "model.max_length=32", *extra])


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "model.safetensors")


def _assert_same_weights(a: Path, b: Path, atol: float) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], atol=atol, rtol=0, msg=key)


def _accumulated_and_big(model: Path, data: Path, tmp_path: Path, precision: str) -> tuple[Path, Path]:
    common = (f"data.train_file={data}", "train.max_steps=3", "train.lr=1e-3", "train.warmup_ratio=0",
              f"train.precision={precision}")  # fmt: skip
    train(_cfg(model, tmp_path / "accum", *common, "train.batch_size=8", "train.grad_accum=2"))
    train(_cfg(model, tmp_path / "big", *common, "train.batch_size=16", "train.grad_accum=1"))
    return tmp_path / "accum", tmp_path / "big"


def test_accumulation_equals_one_big_batch(tiny_model_dir, toy_csv, tmp_path):
    """2 micro-batches of 8 == one batch of 16 (same examples, same step): same weights after training (fp32: exact
    arithmetic is what is compared, so it is pinned whatever the CPU would pick)."""
    accum, big = _accumulated_and_big(tiny_model_dir, toy_csv, tmp_path, "fp32")
    _assert_same_weights(accum, big, atol=1e-6)
    # and the run really trained: weights moved away from the starting point
    start = load_file(tiny_model_dir / "model.safetensors")
    moved = _weights(big)["bert.encoder.layer.0.attention.self.query.weight"]
    assert not torch.allclose(moved, start["bert.encoder.layer.0.attention.self.query.weight"])


def test_accumulation_in_bf16_matches_within_bf16_rounding(tiny_model_dir, toy_csv, tmp_path):
    """The bf16 path (what `auto` picks on AVX512-BF16/AMX CPUs): the same update up to bf16 rounding.

    Adam's first steps move a weight by about +-lr whatever its gradient's size, so a near-zero gradient whose sign
    bf16 rounding flips can differ by up to 2 x lr x steps (6e-3); nearly every weight must agree far closer
    (measured on an AVX512-BF16 CPU: worst 2.4e-4, 0.02% of a tensor's weights beyond 1e-4).
    """
    accum, big = _accumulated_and_big(tiny_model_dir, toy_csv, tmp_path, "bf16")
    wa, wb = _weights(accum), _weights(big)
    for key, weight in wb.items():
        torch.testing.assert_close(wa[key], weight, atol=6e-3, rtol=0, msg=key)
        assert ((wa[key] - weight).abs() > 1e-4).float().mean() < 0.01, key
    assert json.loads((big / "metrics.json").read_text())["precision"] == "bf16"


@pytest.mark.parametrize("frozen", [False, True], ids=["embeddings-trained", "embeddings-frozen"])
def test_resume_matches_uninterrupted_run(tiny_dropout_model_dir, toy_csv, tmp_path, frozen):
    """Interrupt after 5 steps, resume, and end exactly where an uninterrupted run ends (dropout on); with the word
    embeddings trained (the default: their AdamW state and reused gradient) and kept (`--freeze-embeddings`)."""
    common = (
        f"data.train_file={toy_csv}",
        "train.batch_size=8",
        "train.epochs=2",
        "train.eval_every=4",
        "train.lr=1e-3",
        "model.dropout=0.1",  # the checkpoint's own: auto turns it off
        *(["train.freeze_embeddings=true"] if frozen else []),
    )
    full = train(_cfg(tiny_dropout_model_dir, tmp_path / "full", *common))
    assert full.completed
    part = train(_cfg(tiny_dropout_model_dir, tmp_path / "resumed", *common), stop_after_steps=5)
    assert not part.completed
    assert not (tmp_path / "resumed" / "task.json").exists()  # not a finished run yet
    resumed = train(_cfg(tiny_dropout_model_dir, tmp_path / "resumed", *common, "resume=true"))
    assert resumed.completed
    _assert_same_weights(tmp_path / "full", tmp_path / "resumed", atol=1e-6)
    hist_full = json.loads((tmp_path / "full" / "metrics.json").read_text())["history"]
    hist_resumed = json.loads((tmp_path / "resumed" / "metrics.json").read_text())["history"]
    assert [h["step"] for h in hist_full] == [h["step"] for h in hist_resumed] == [4, 8, 12, 16, 20, 22]
    for a, b in zip(hist_full, hist_resumed, strict=True):
        assert a["metrics"]["validation"] == pytest.approx(b["metrics"]["validation"], abs=1e-6)
    logged = [json.loads(line)["step"] for line in (tmp_path / "resumed" / "train_log.jsonl").read_text().splitlines()]
    assert logged == sorted(set(logged))  # no step logged twice across the interruption


def test_resume_without_checkpoint_is_a_clear_error(tiny_model_dir, toy_csv, tmp_path):
    from seqtune.errors import SeqtuneError

    # "resume this folder" alone (no task, no data) cannot start anything
    with pytest.raises(SeqtuneError, match="none: no checkpoint to resume from; start the run without --resume"):
        train(load_config(None, [f"output={tmp_path / 'none'}", "quiet=true", "resume=true"]))


def test_one_command_starts_resumes_or_says_finished(tiny_model_dir, toy_csv, tmp_path, capsys):
    """`train --resume` with a full config is what a scheduler re-runs after a preemption: it starts a run with no
    checkpoint yet (clearing what a killed start left), continues from the newest checkpoint, and says a finished
    run is finished."""
    out = tmp_path / "run"
    common = (f"data.train_file={toy_csv}", "train.batch_size=8", "train.epochs=2", "train.eval_every=4",
              "train.lr=1e-3", "train.log_every=1", "resume=true")  # fmt: skip
    out.mkdir()
    _cfg(tiny_model_dir, out, *common).save(out / "config.yaml")  # what a start killed before step 1 leaves
    (out / "train_log.jsonl").write_text('{"step": 1, "loss": 9.9}\n')
    part = train(_cfg(tiny_model_dir, out, *common), stop_after_steps=5)  # starts afresh: no checkpoint there
    assert not part.completed and '"loss": 9.9' not in (out / "train_log.jsonl").read_text()
    done = train(_cfg(tiny_model_dir, out, *common))  # continues from step 5
    assert done.completed
    steps = [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 23))
    weights = (out / "model.safetensors").read_bytes()
    capsys.readouterr()
    again = train(_cfg(tiny_model_dir, out, *common))
    assert again.completed and again.best == done.best
    assert f"{out}: already finished; nothing to do" in capsys.readouterr().out
    assert (out / "model.safetensors").read_bytes() == weights
    other = tmp_path / "other"
    other.mkdir()
    _cfg(tiny_model_dir, other, *common).save(other / "config.yaml")  # a killed start of another configuration
    with pytest.raises(SeqtuneError, match=r"another configuration \(train\.lr: 0\.001 there, 0\.0003 now\)"):
        train(_cfg(tiny_model_dir, other, *common, "train.lr=3e-4"))
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_bytes(b"not a run")
    with pytest.raises(SeqtuneError, match="photos: not empty and not a seqtune run folder"):
        train(_cfg(tiny_model_dir, foreign, *common))
    assert (foreign / "cat.jpg").read_bytes() == b"not a run"  # nothing deleted


def test_run_folder_is_complete_and_loads_in_a_pipeline(tiny_model_dir, toy_csv, tmp_path):
    from transformers import pipeline

    out = tmp_path / "run"
    result = train(_cfg(tiny_model_dir, out, f"data.train_file={toy_csv}", "train.epochs=2", "train.lr=1e-3"))
    for name in (
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "config.yaml",
        "metrics.json",
        "train_log.jsonl",
        "README.md",
        "task.json",
    ):
        assert (out / name).is_file(), name
    assert not (out / "checkpoints").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 2  # evaluated once per epoch
    assert metrics["best"]["metrics"] == result.best["metrics"]
    assert "| validation | accuracy |" in (out / "README.md").read_text()
    clf = pipeline("text-classification", model=str(out), device=-1)
    assert clf("a happy dog")[0]["label"] in {"neg", "pos"}  # real label names, not LABEL_0
    # the config written into the run folder reloads
    assert load_config(out / "config.yaml").data.train_file == str(toy_csv)


def test_predict_api_and_file(tiny_model_dir, toy_csv, tmp_path):
    out = tmp_path / "run"
    train(_cfg(tiny_model_dir, out, f"data.train_file={toy_csv}", "train.epochs=1"))
    [record] = predict(out, "the happy cat")
    assert record["label"] in {"neg", "pos"}
    assert sum(record["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert record["score"] == max(record["probabilities"].values())
    many = predict(out, ["the happy cat", "a sad dog", "the happy cat"])
    assert many[0] == many[2]  # batched, length-sorted inference keeps the input order
    n = predict_file(out, toy_csv, tmp_path / "preds.jsonl")
    lines = (tmp_path / "preds.jsonl").read_text().splitlines()
    assert n == len(lines) == 96
    assert json.loads(lines[0])["row"] == 0


def test_multi_label_end_to_end(tiny_model_dir, tmp_path):
    rows = []
    for i, row in enumerate(make_rows(80)):
        labels = ["billing"] if "happy" in row["text"] else ["tech"]
        if i % 3 == 0:
            labels.append("urgent")
        rows.append({"body": row["text"], "tags": labels})
    path = tmp_path / "tickets.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    result = train(
        _cfg(
            tiny_model_dir,
            out,
            f"data.train_file={path}",
            "data.text_column=body",
            "data.label_column=tags",
            "train.epochs=2",
            "train.lr=1e-3",
        )
    )
    assert set(result.best["metrics"]["validation"]) == {"f1_micro", "f1_macro", "exact_match"}
    [record] = predict(out, "a happy cat")
    assert set(record["probabilities"]) == {"billing", "tech", "urgent"}
    assert set(record["labels"]) <= {"billing", "tech", "urgent"}
    scores = evaluate_file(out, path)  # any labeled file with the run's columns: label lists become multi-hot rows
    assert set(scores) == {"f1_micro", "f1_macro", "exact_match"} and 0 <= scores["exact_match"] <= 1


def test_regression_end_to_end(tiny_model_dir, tmp_path):
    rows = [
        {"a": r["text"], "b": r["text2"], "score": 4.5 if "happy" in r["text"] else 0.5}
        for r in make_rows(80, pair=True)
    ]
    path = write_csv(tmp_path / "sim.csv", rows)
    out = tmp_path / "run"
    result = train(
        _cfg(
            tiny_model_dir,
            out,
            f"data.train_file={path}",
            "data.text_column=a",
            "data.text_pair_column=b",
            "data.label_column=score",
            "train.epochs=2",
            "train.lr=1e-3",
            "train.precision=fp32",  # the tiny model's outputs differ by less than bf16 resolves near 2.5
        )
    )
    assert set(result.best["metrics"]["validation"]) == {"pearson", "spearmanr", "mse"}
    [record] = predict(out, "a happy cat", "the dog")
    assert isinstance(record["score"], float)
    assert set(evaluate_file(out, path)) == {"pearson", "spearmanr", "mse"}


def test_a_regression_head_trains_the_same_at_any_target_scale(tiny_model_dir, tmp_path):
    """Targets 100 y + 5 train like y (the head works in units of the targets' spread): the predictions are the
    same affine map of the other run's. Without it (model.prior_init=false) the head is still near 0 after
    training, far from targets around 5 to 455."""
    texts = [r["text"] for r in make_rows(64)]
    base = [len(t.split()) / 4 + (1.0 if "happy" in t else 0.0) for t in texts]

    def run(name: str, scale: float, *extra: str) -> np.ndarray:
        rows = [{"text": t, "score": scale * y + 5 * (scale != 1)} for t, y in zip(texts, base, strict=True)]
        out = tmp_path / name
        data = write_csv(tmp_path / f"{name}.csv", rows)
        train(_cfg(tiny_model_dir, out, f"data.train_file={data}", "data.label_column=score",
                   "data.problem_type=regression", "train.epochs=3", "train.lr=1e-3", "train.precision=fp32",
                   "train.max_grad_norm=null", *extra))  # fmt: skip
        return np.array([r["score"] for r in predict(load_run(out, precision="fp32"), texts[:8])])

    small, large = run("small", 1.0), run("large", 100.0)
    np.testing.assert_allclose(large, 100 * small + 5, rtol=1e-5)  # float32 rounding; 5e-4 without the head's rate
    unscaled = run("unscaled", 100.0, "model.prior_init=false")
    assert np.abs(unscaled - (100 * small + 5)).max() > 100


def test_in_memory_predict_matches_the_dataset_path(tiny_model_dir, tmp_path, monkeypatch):
    """`predict` (texts and files) skips Dataset.map; it must give what the Dataset path that `eval` scores gives,
    also for pairs cut at max_length and across the chunks it works in."""
    import seqtune.predict as predict_module

    rows = [{"a": r["text"], "b": r["text2"], "label": r["label"]} for r in make_rows(60, pair=True)]
    out = tmp_path / "run"
    train(_cfg(tiny_model_dir, out, f"data.train_file={write_csv(tmp_path / 'p.csv', rows)}", "data.text_column=a",
               "data.text_pair_column=b", "train.epochs=1"))  # fmt: skip
    texts = [r["a"] * (1 + i % 9) for i, r in enumerate(rows[:23])]  # up to ~9x longer: many cut at 32 tokens
    pairs = [r["b"] for r in rows[:23]]
    run = predict_module.load_run(out)
    via_dataset = predict_module.logits_for(run, predict_module.raw_dataset(run.task, texts, pairs))
    monkeypatch.setattr(predict_module, "PREDICT_CHUNK", 7)  # 23 texts -> chunks of 7, 7, 7, 2
    in_memory = predict(run, texts, pairs, batch_size=4)
    path = write_csv(tmp_path / "in.csv", [{"a": t, "b": p} for t, p in zip(texts, pairs, strict=True)])
    predict_file(run, path, tmp_path / "preds.jsonl")
    from_file = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert len(in_memory) == len(from_file) == 23
    assert [r.pop("row") for r in from_file] == list(range(23)) and from_file == in_memory
    for got, logits in zip(in_memory, via_dataset, strict=True):
        probs = np.exp(logits) / np.exp(logits).sum()
        assert got["label"] == run.task.label_names[int(logits.argmax())]
        assert list(got["probabilities"].values()) == pytest.approx(probs.tolist(), abs=1e-5)
    with pytest.raises(SeqtuneError, match="input 2: expected a string, got int"):
        predict(out, ["fine", 3], ["x", "y"])


def test_glue_run_eval_and_submission(tiny_model_dir, mini_glue, tmp_path):
    out = tmp_path / "mrpc"
    result = train(_cfg(tiny_model_dir, out, "task=mrpc", f"data.data_dir={mini_glue}", "train.epochs=1"))
    assert set(result.best["metrics"]["validation"]) == {"accuracy", "f1", "combined_score"}
    again = evaluate_run(out)
    assert again["validation"] == pytest.approx(result.best["metrics"]["validation"], abs=1e-6)
    # The same dev rows as an own file (label ids, as the hub's copy has them) give the same metrics.
    dev = load_glue(get_task("mrpc"), str(mini_glue))["validation"]
    rows = [{"sentence1": r["sentence1"], "sentence2": r["sentence2"], "label": r["label"]} for r in dev]
    scores = evaluate_file(out, write_csv(tmp_path / "dev.csv", rows))
    assert scores == pytest.approx(again["validation"], abs=1e-6)
    [path] = glue_submission(out, tmp_path / "submit")
    lines = path.read_text().splitlines()
    assert path.name == "MRPC.tsv" and lines[0] == "index\tprediction" and len(lines) == 11
    assert {line.split("\t")[1] for line in lines[1:]} <= {"0", "1"}


def test_early_stopping_stops(tiny_model_dir, toy_csv, tmp_path):
    # lr 0: nothing improves after the first evaluation, so patience 2 stops after 3 evaluations.
    result = train(
        _cfg(
            tiny_model_dir,
            tmp_path / "run",
            f"data.train_file={toy_csv}",
            "train.lr=1e-12",
            "train.batch_size=8",
            "train.eval_every=2",
            "train.early_stopping_patience=2",
            "train.epochs=3",
        )
    )
    assert [h["step"] for h in result.history] == [2, 4, 6]


def test_sigint_saves_a_checkpoint_and_says_how_to_resume(tiny_model_dir, tmp_path):
    """Ctrl-C mid-run: the loop stops after the step, saves a checkpoint, prints the resume command, exits 0."""
    import signal

    code, stdout, stderr, out = interrupt_training(tiny_model_dir, tmp_path, signal.SIGINT)
    assert code == 0, stderr
    assert "checkpoint saved. Continue with: seqtune train --resume --output" in stdout
    from seqtune.checkpoint import latest_checkpoint

    assert latest_checkpoint(out) is not None
    assert not (out / "task.json").exists()


def test_class_weights_are_inverse_frequency():
    from seqtune.losses import class_weights
    from seqtune.tasks import get_task

    # 6 examples: 4 of class 0, 2 of class 1 -> n / (k * count) = 6/8 and 6/4
    weights = class_weights(get_task("sst2"), [0, 0, 0, 0, 1, 1])
    assert weights.tolist() == pytest.approx([0.75, 1.5])


def test_pieces_plug_into_a_hugging_face_trainer(tiny_model_dir, mini_glue, tmp_path):
    """The tokenized DatasetDict, the collator and compute_metrics work with transformers' Trainer as is."""
    from transformers import Trainer, TrainingArguments

    from seqtune import Collator, get_task, load_glue, make_compute_metrics, tokenize
    from seqtune.modeling import load_model, load_tokenizer

    task = get_task("mrpc")
    tokenizer = load_tokenizer(str(tiny_model_dir))
    encoded = tokenize(load_glue(task, str(mini_glue)), task, tokenizer, max_length=64)
    trainer = Trainer(
        model=load_model(str(tiny_model_dir), task),
        args=TrainingArguments(
            str(tmp_path / "hf"),
            max_steps=2,
            report_to="none",
            use_cpu=True,
            remove_unused_columns=False,
            save_strategy="no",
        ),  # fmt: skip
        train_dataset=encoded["train"],
        eval_dataset=encoded["validation"],
        data_collator=Collator(tokenizer),
        processing_class=tokenizer,
        compute_metrics=make_compute_metrics(task),
    )
    trainer.train()
    metrics = trainer.evaluate()
    assert {"eval_accuracy", "eval_f1", "eval_combined_score"} <= set(metrics)


def test_report_to_tensorboard_writes_event_files(tiny_model_dir, toy_csv, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train(_cfg(tiny_model_dir, out, f"data.train_file={toy_csv}", "train.epochs=2", "train.log_every=2",
               "train.report_to=tensorboard"))  # fmt: skip
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/tokens_per_second", "validation/accuracy"} <= tags
    history = json.loads((out / "metrics.json").read_text())["history"]
    logged = [(e.step, e.value) for e in events.Scalars("validation/accuracy")]
    assert logged == [(h["step"], pytest.approx(h["metrics"]["validation"]["accuracy"])) for h in history]


def test_a_run_without_a_finite_score_still_finishes_and_says_why(tiny_model_dir, tmp_path, capsys):
    """Every validation target is the same, so Pearson is NaN at every evaluation: NaN never counts as better, early
    stopping counts it as no improvement, and the run still ends with the last weights, a card, a report and one
    warning line."""
    rows = [{"text": r["text"], "score": 2.5} for r in make_rows(40)]
    data, out = write_csv(tmp_path / "flat.csv", rows), tmp_path / "run"
    code, stdout, err = run_cli(capsys, "train", "--train-file", data, "--label-column", "score", "--regression",
                                "--model", tiny_model_dir, "--max-length", "32", "--batch-size", "8", "--epochs", "3",
                                "--early-stopping", "1", "--output", out, "--quiet")  # fmt: skip
    assert code == 0, err
    assert "custom done" in stdout
    reason = "every validation label is the same, so pearson is undefined"
    assert err.count("\n") == 1 and err.startswith("seqtune: warning: no evaluation produced a usable pearson"), err
    assert reason in err and "the last weights are kept" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best"] is None and len(metrics["history"]) == 1  # early stopping: patience 1, no improvement
    assert metrics["warnings"] == [err.removeprefix("seqtune: warning: ").strip()]
    assert (
        reason in (out / "README.md").read_text()
        and "Kept weights: the last evaluation's" in (out / "README.md").read_text()
    )
    assert reason in (out / "report.html").read_text()
    [record] = predict(out, "a happy cat")  # the kept weights load and predict like any run's
    assert isinstance(record["score"], float)


def test_a_model_that_learned_nothing_is_called_out(tiny_model_dir, tmp_path):
    """Every text is the same, so every prediction is too: no better than the majority class (60% 'a')."""
    rows = [{"text": "the same words", "label": "a" if i % 5 < 3 else "b"} for i in range(100)]
    data = write_csv(tmp_path / "same.csv", rows)
    result = train(_cfg(tiny_model_dir, tmp_path / "run", f"data.train_file={data}", "train.epochs=1"))
    [warning] = result.warnings
    assert "no better than predicting the training set's majority class" in warning
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["warnings"] == [warning]


def test_checkpoints_on_the_clock_and_on_steps_between_evaluations(tiny_dropout_model_dir, toy_csv, tmp_path):
    """With evaluation only once an epoch, a run still leaves checkpoints on the clock (here: every step, the
    interval being tiny) and every N steps, and resuming from one ends exactly where an uninterrupted run ends."""
    from seqtune import checkpoint as ckpt

    common = (f"data.train_file={toy_csv}", "train.batch_size=8", "train.epochs=2", "train.lr=1e-3",
              "train.keep_checkpoints=20", "train.save_every_minutes=null", "model.dropout=0.1")  # fmt: skip
    full = train(_cfg(tiny_dropout_model_dir, tmp_path / "full", *common))
    clock = train(_cfg(tiny_dropout_model_dir, tmp_path / "clock", *common, "train.save_every_minutes=1e-9"),
                  stop_after_steps=4)  # fmt: skip
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "clock")] == ["step-1", "step-2", "step-3", "step-4"]
    assert not clock.completed
    steps = train(_cfg(tiny_dropout_model_dir, tmp_path / "steps", *common, "train.save_every_steps=3"),
                  stop_after_steps=7)  # fmt: skip
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "steps")] == ["step-3", "step-6", "step-7"]
    assert not steps.completed
    resumed = train(_cfg(tiny_dropout_model_dir, tmp_path / "clock", *common, "resume=true"))
    assert resumed.completed
    assert [(h["step"], h["metrics"]) for h in resumed.history] == [(h["step"], h["metrics"]) for h in full.history]
    _assert_same_weights(tmp_path / "full", tmp_path / "clock", atol=1e-6)


def test_automatic_length_learning_rate_and_threshold(tiny_model_dir, tmp_path):
    """Defaults that follow the data: 3 epochs, more when that would be under train.min_steps optimizer steps; lr
    8e-5, 2e-4 for multi-label; a decision threshold tuned for multi-label only. Explicit values win."""
    from seqtune.recipe import DEFAULT_LR, MULTI_LABEL_LR, auto_epochs

    assert auto_epochs(230, 600, 20) == 3  # MRPC: 3,668 rows / 16
    assert auto_epochs(156, 600, 20) == 4  # RTE: 2,490 rows / 16
    assert auto_epochs(29, 600, 20) == 20  # NLU++ hotels: 453 rows / 16, capped
    rows = [{"text": r["text"], "tags": ["a"] if "happy" in r["text"] else ["b", "c"][: 1 + i % 2]}
            for i, r in enumerate(make_rows(60))]  # fmt: skip
    data = tmp_path / "tags.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = (f"data.train_file={data}", "data.label_column=tags", "train.batch_size=18", "train.min_steps=9")
    multi = train(_cfg(tiny_model_dir, tmp_path / "multi", *common))
    metrics = json.loads((tmp_path / "multi" / "metrics.json").read_text())
    assert metrics["distributed"]["lr"] == MULTI_LABEL_LR
    assert [h["step"] for h in multi.history] == [3, 6, 9]  # 54 rows / 18 = 3 steps an epoch: 3 epochs
    assert all("threshold" in h for h in multi.history) and metrics["threshold"] is not None
    toy = write_csv(tmp_path / "toy.csv", make_rows(60))
    single = train(_cfg(tiny_model_dir, tmp_path / "single", f"data.train_file={toy}", "train.batch_size=18",
                        "train.min_steps=15"))  # fmt: skip
    assert [h["step"] for h in single.history] == [3, 6, 9, 12, 15]  # 5 epochs to reach 15 steps
    assert json.loads((tmp_path / "single" / "metrics.json").read_text())["distributed"]["lr"] == DEFAULT_LR
    assert "threshold" not in single.history[0]


def test_freeze_embeddings_keeps_the_word_embeddings_as_pretrained(tiny_model_dir, toy_csv, tmp_path, capsys):
    """By default every weight trains, the word-embedding matrix included; `--freeze-embeddings` keeps the matrix as
    it was pretrained while the rest trains."""
    key, moved_key = "bert.embeddings.word_embeddings.weight", "bert.encoder.layer.0.attention.self.query.weight"
    start = load_file(tiny_model_dir / "model.safetensors")
    common = (f"data.train_file={toy_csv}", "train.max_steps=3", "train.lr=1e-3", "train.warmup_ratio=0")
    train(_cfg(tiny_model_dir, tmp_path / "default", *common))
    assert not torch.allclose(_weights(tmp_path / "default")[key], start[key])
    code, _, err = run_cli(capsys, "train", "--freeze-embeddings", f"model.name={tiny_model_dir}",
                           f"output={tmp_path / 'frozen'}", "quiet=true", "model.max_length=32", *common)  # fmt: skip
    assert code == 0, err
    kept = _weights(tmp_path / "frozen")
    torch.testing.assert_close(kept[key], start[key], atol=0, rtol=0)
    assert not torch.allclose(kept[moved_key], start[moved_key])
