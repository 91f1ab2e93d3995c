"""Fast inference paths give the plain path's answers: length-sorted batches, bf16 autocast."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import DatasetDict
from transformers import AutoModelForSequenceClassification

from seqtune import inference
from seqtune.batching import Collator
from seqtune.encoding import tokenize
from seqtune.modeling import load_tokenizer
from seqtune.predict import raw_dataset
from seqtune.tasks import get_task

SENTENCES = [
    "a cat sat on the mat",
    "dogs",
    "the quick brown fox jumps over the lazy dog while the bird sings in the tall tree",
    "one two three four five",
    "short one",
    "a somewhat longer sentence with a few more words in it than most",
]


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    task = get_task("sst2")
    tokenizer = load_tokenizer(str(tiny_model_dir))
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).eval()
    raw = raw_dataset(task, SENTENCES * 4, None)
    encoded = tokenize(DatasetDict(x=raw), task, tokenizer, 64, cache=False, show_progress=False)["x"]
    return model, tokenizer, encoded


def test_sorted_padded_batches_equal_one_at_a_time(setup):
    model, tokenizer, encoded = setup
    batched = inference.infer_logits(model, encoded, Collator(tokenizer), 8, torch.device("cpu"))
    single = inference.infer_logits(model, encoded, Collator(tokenizer), 1, torch.device("cpu"))
    np.testing.assert_allclose(batched, single, atol=1e-5)  # padding and order change nothing
    assert not np.allclose(batched[0], batched[2])  # and the rows really differ


def test_bf16_autocast_agrees_with_fp32(setup):
    model, tokenizer, encoded = setup
    fp32 = inference.infer_logits(model, encoded, Collator(tokenizer), 8, torch.device("cpu"), "fp32")
    bf16 = inference.infer_logits(model, encoded, Collator(tokenizer), 8, torch.device("cpu"), "bf16")
    assert not np.array_equal(fp32, bf16)  # bf16 really ran
    np.testing.assert_allclose(bf16, fp32, atol=0.05)
    assert (bf16.argmax(-1) == fp32.argmax(-1)).mean() >= 0.9


def test_a_run_loaded_in_bf16_holds_bf16_weights_and_predicts_as_fp32_does(tiny_model_dir, tmp_path):
    """`seqtune predict`'s bf16 path casts the weights once (no per-batch re-casts); its labels match fp32's."""
    from conftest import make_rows, write_csv

    from seqtune.cli import main
    from seqtune.predict import load_run, predict

    csv = write_csv(tmp_path / "toy.csv", make_rows(60))
    code = main(["train", "--model", str(tiny_model_dir), "--train-file", str(csv), "--output", str(tmp_path / "run"),
                 "--epochs", "2", "--lr", "1e-3", "--quiet", "--precision", "fp32", "model.max_length=32"])  # fmt: skip
    assert code == 0
    fp32, bf16 = load_run(tmp_path / "run", precision="fp32"), load_run(tmp_path / "run", precision="bf16")
    assert {p.dtype for p in fp32.model.parameters()} == {torch.float32}
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}
    texts = [r["text"] for r in make_rows(40, seed=5)]
    a, b = predict(fp32, texts), predict(bf16, texts)
    pa = np.array([list(r["probabilities"].values()) for r in a])
    pb = np.array([list(r["probabilities"].values()) for r in b])
    assert not np.array_equal(pa, pb)  # bf16 really ran
    np.testing.assert_allclose(pb, pa, atol=0.03)
    assert np.mean([x["label"] == y["label"] for x, y in zip(a, b, strict=True)]) >= 0.9
