"""`data.swap_pairs`: symmetric pair tasks train on each pair in one of its two orders per epoch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import assert_clean_error, assert_nothing_written, make_rows, run_cli, write_csv
from safetensors.torch import load_file

from seqtune import load_config
from seqtune.batching import length_grouped_order
from seqtune.data import load_glue
from seqtune.errors import ConfigError
from seqtune.pair_order import SWAPPED, draw_orders, rows_of, swap_pairs, with_swapped
from seqtune.tasks import TaskSpec, get_task
from seqtune.training import setup_data, train


@pytest.fixture
def pair_csv(tmp_path) -> Path:
    return write_csv(tmp_path / "pairs.csv", make_rows(96, pair=True))


def _cfg(model: Path, out: Path, data: Path, *extra: str):
    return load_config(None, [f"model.name={model}", f"output={out}", "quiet=true", "model.max_length=32",
                              f"data.train_file={data}", "data.text_pair_column=text2", *extra])  # fmt: skip


def test_an_epoch_reads_every_pair_once_in_an_order_drawn_from_seed_and_epoch(mini_glue):
    task = get_task("mrpc")
    raw = with_swapped(load_glue(task, mini_glue), task)
    train_rows, swapped = raw["train"], raw[SWAPPED]
    assert swapped["sentence1"] == train_rows["sentence2"] and swapped["sentence2"] == train_rows["sentence1"]
    assert swapped["label"] == train_rows["label"]
    n = len(train_rows)
    order = length_grouped_order([1] * n, 8, seed=42, epoch=0)
    drawn = draw_orders(order, n, seed=42, epoch=0)
    assert [len(b) for b in drawn] == [len(b) for b in order]
    flat = [i for b in drawn for i in b]
    assert sorted(i % n for i in flat) == list(range(n))  # every example once, in one order or the other
    turned = {i - n for i in flat if i >= n}
    assert 0.25 * n < len(turned) < 0.75 * n
    fetched = rows_of(train_rows, swapped, flat)
    for i, row in zip(flat, fetched, strict=True):
        source = swapped if i >= n else train_rows
        assert row == source[i % n]
    assert drawn == draw_orders(order, n, seed=42, epoch=0)  # a resumed run draws the same orders
    other = {i - n for b in draw_orders(order, n, seed=42, epoch=1) for i in b if i >= n}
    assert other != turned  # and the next epoch draws again
    assert rows_of(train_rows, None, [3, 1]) == [train_rows[3], train_rows[1]]


def test_auto_is_on_for_glue_paraphrase_tasks_only():
    def resolved(*overrides: str, task: str = "mrpc") -> bool:
        return swap_pairs(load_config(None, [f"task={task}", *overrides]), get_task(task))

    assert resolved() and resolved(task="qqp")
    assert not resolved(task="stsb")  # symmetric too, but it did not gain there
    assert not resolved(task="rte") and not resolved(task="mnli") and not resolved(task="cola")
    assert not resolved("data.swap_pairs=false")
    assert not resolved("train.train_layers=2")  # it gained nothing on the top layers alone
    assert resolved("data.swap_pairs=true", task="rte")  # a user who knows their pairs are symmetric
    own = TaskSpec(name="custom", text_columns=("a", "b"), label_names=("no", "yes"))  # a user's own pairs
    assert not swap_pairs(load_config(None, ["data.train_file=own.csv", "data.text_pair_column=b"]), own)


def test_own_pairs_are_swapped_only_when_asked(pair_csv):
    plain = load_config(None, [f"data.train_file={pair_csv}", "data.text_pair_column=text2"])
    assert SWAPPED not in setup_data(plain)[1]
    task, raw = setup_data(plain.with_overrides({"data.swap_pairs": True}))
    first, second = task.text_columns
    assert raw[SWAPPED][first] == raw["train"][second] and raw[SWAPPED][second] == raw["train"][first]


def test_resume_with_swapped_pairs_matches_an_uninterrupted_run(tiny_dropout_model_dir, pair_csv, tmp_path):
    common = ("data.swap_pairs=true", "train.batch_size=8", "train.epochs=2", "train.eval_every=4", "train.lr=1e-3",
              "model.dropout=0.1")  # fmt: skip
    full = train(_cfg(tiny_dropout_model_dir, tmp_path / "full", pair_csv, *common))
    part = train(_cfg(tiny_dropout_model_dir, tmp_path / "resumed", pair_csv, *common), stop_after_steps=5)
    assert full.completed and not part.completed
    resumed = train(_cfg(tiny_dropout_model_dir, tmp_path / "resumed", pair_csv, *common, "resume=true"))
    assert resumed.completed
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0, msg=key)
    # the same steps as without swapping, but other inputs: the weights differ from a run in the files' order
    train(_cfg(tiny_dropout_model_dir, tmp_path / "plain", pair_csv, *common[1:]))
    plain = load_file(tmp_path / "plain" / "model.safetensors")
    history = json.loads((tmp_path / "plain" / "metrics.json").read_text())["history"]
    assert [h["step"] for h in history] == [h["step"] for h in full.history]
    key = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.allclose(plain[key], a[key])


def test_swapping_a_single_text_is_a_clear_error(tiny_model_dir, tmp_path, capsys):
    data = write_csv(tmp_path / "single.csv", make_rows(32))
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "train", "--swap-pairs", "--train-file", data, "--model", tiny_model_dir,
                           "--output", out, "--quiet")  # fmt: skip
    assert_clean_error(code, err, "--swap-pairs: custom has one text per example, and swapping needs a pair "
                                  "(--text-pair-column); drop --swap-pairs")  # fmt: skip
    assert_nothing_written(out)


def test_swapping_windows_is_refused():
    message = "--swap-pairs with --long-inputs windows: windows follow one order; drop one"
    with pytest.raises(ConfigError, match=message):
        load_config(None, ["task=mrpc", "data.swap_pairs=true", "data.long_inputs=windows"])


def test_the_feature_cache_holds_both_orders(tiny_model_dir, pair_csv, tmp_path):
    """`--train-layers` with `--swap-pairs`: cache row n + i is the frozen bottom's output on pair i swapped, so
    whichever order an epoch draws, the top layers get what the whole model computes for it."""
    from seqtune.setup_steps import setup

    cfg = _cfg(tiny_model_dir, tmp_path / "run", pair_csv, "data.swap_pairs=true", "train.train_layers=1",
               "train.precision=fp32")  # fmt: skip
    ctx, _ = setup(cfg)
    train_rows, swapped = ctx.encoded["train"], ctx.encoded[SWAPPED]
    n = len(train_rows)
    assert len(ctx.features.offsets) == 2 * n + 1
    idxs = [0, 5, n, n + 5, n + 7]
    assert train_rows[5]["input_ids"] != swapped[5]["input_ids"]  # the two orders are different inputs
    batch = ctx.collator(rows_of(train_rows, swapped, idxs))
    batch.pop("labels")
    ctx.unwrapped.eval()
    with torch.no_grad():
        cached = ctx.features.logits(ctx.unwrapped, ctx.unwrapped, idxs, batch)
        whole = ctx.unwrapped(**batch).logits
    torch.testing.assert_close(cached, whole, atol=1e-5, rtol=0)
