"""Long inputs: truncate, head_tail and windows, from the tokenizer to the run folder's predictions."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import LiveServer, assert_clean_error, run_cli, write_csv
from transformers import AutoTokenizer

from seqtune.long_inputs import LongInputs, aggregate, doc_labels, encode
from seqtune.modeling import resolve_model

WORDS = [f"w{i}" for i in range(60)]  # "w17" is two WordPiece tokens: "w", "##17"


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(resolve_model("minilm"))


def _tokens(tok, ids) -> list[str]:
    return [t for t in tok.convert_ids_to_tokens(ids) if t not in ("[CLS]", "[SEP]")]


def test_windows_cover_every_token_and_overlap_by_the_stride(tok):
    text = " ".join(WORDS)
    everything = tok.tokenize(text)
    enc = encode(tok, [[text, "short"]], 16, LongInputs("windows", stride=4))
    windows = [_tokens(tok, ids) for ids, d in zip(enc["input_ids"], enc["doc"], strict=True) if d == 0]
    assert enc["doc"] == [0] * len(windows) + [1] and len(windows) > 1
    assert all(len(ids) <= 16 for ids in enc["input_ids"]) and enc["length"] == [len(i) for i in enc["input_ids"]]
    rebuilt = windows[0] + [t for w in windows[1:] for t in w[4:]]  # each window repeats the last 4 of the previous
    assert rebuilt == everything
    assert all(a[-4:] == b[:4] for a, b in zip(windows, windows[1:], strict=False))


def test_training_keeps_at_most_max_windows_evenly_spaced(tok):
    text = " ".join(WORDS)
    every = encode(tok, [[text]], 16, LongInputs("windows", stride=4, max_windows=3))
    capped = encode(tok, [[text]], 16, LongInputs("windows", stride=4, max_windows=3), training=True)
    assert len(every["input_ids"]) > 3 and len(capped["input_ids"]) == 3
    assert capped["input_ids"][0] == every["input_ids"][0] and capped["input_ids"][-1] == every["input_ids"][-1]


def test_pairs_window_the_longer_text_and_repeat_the_other(tok):
    text = " ".join(WORDS)
    enc = encode(tok, [[text, "a b"], ["x y", text]], 24, LongInputs("windows", stride=4))
    first = [tok.decode(ids) for ids, d in zip(enc["input_ids"], enc["doc"], strict=True) if d == 0]
    second = [tok.decode(ids) for ids, d in zip(enc["input_ids"], enc["doc"], strict=True) if d == 1]
    assert len(first) > 1 and all(w.endswith("[SEP] x y [SEP]") for w in first)
    assert len(second) > 1 and all(w.startswith("[CLS] a b [SEP]") for w in second)
    assert "w59" in first[-1].replace(" ##", "") and "w59" in second[-1].replace(" ##", "")


def test_head_tail_keeps_the_start_and_the_end(tok):
    text = " ".join(WORDS)
    [ids] = encode(tok, [[text]], 32, LongInputs("head_tail"))["input_ids"]
    kept = tok.decode(ids).replace(" ##", "")
    assert len(ids) <= 32 and kept.startswith("[CLS] w0 w1") and kept.endswith("w58 w59 [SEP]")
    assert "w30" not in kept.split()
    [short] = encode(tok, [["w1 w2"]], 32, LongInputs("head_tail"))["input_ids"]
    assert short == tok("w1 w2")["input_ids"]  # short texts are untouched


def test_window_logits_combine_into_one_row_per_document():
    logits = np.array([[1.0, 3.0], [3.0, 1.0], [0.0, 5.0], [2.0, -1.0]], dtype=np.float32)
    assert aggregate(logits, [7, 7, 9, 9], multi_label=False).tolist() == [[2.0, 2.0], [1.0, 2.0]]
    assert aggregate(logits, [7, 7, 9, 9], multi_label=True).tolist() == [[3.0, 3.0], [2.0, 5.0]]
    assert doc_labels(np.array([1, 1, 0, 0]), [7, 7, 9, 9]).tolist() == [1, 0]


def test_a_stride_that_leaves_no_room_is_one_line(tok):
    from seqtune.errors import SeqtuneError

    with pytest.raises(SeqtuneError, match=r"data.stride: 20 tokens of overlap .* use a stride below 14"):
        encode(tok, [["a b c"]], 16, LongInputs("windows", stride=20))


def _long_rows(n: int) -> list[dict]:
    """Documents whose label shows only at their end: truncation to the first tokens cannot see it."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        filler = " ".join(rng.choice(WORDS[:20], size=40))
        rows.append({"text": f"{filler} {'happy glad' if label == 'pos' else 'sad bad'}", "label": label})
    return rows


def test_a_windowed_run_scores_documents_and_every_consumer_combines_windows(tiny_model_dir, tmp_path, capsys):
    from seqtune.predict import evaluate_file, load_run, predict
    from seqtune.predict_stream import predict_file

    data = write_csv(tmp_path / "long.csv", _long_rows(40))
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, "train", "--model", tiny_model_dir, "--train-file", data, "--max-length", "16",
                                "--long-inputs", "windows", "--stride", "4", "--epochs", "1", "--precision", "fp32",
                                "--output", out)  # fmt: skip
    assert code == 0, err
    assert "documents ->" in stdout + err and "windows of up to 16 tokens" in stdout + err
    with np.load(out / "eval_predictions.npz") as saved:
        assert saved["validation/logits"].shape == (4, 2) and saved["validation/labels"].shape == (4,)  # 10% of 40

    loaded = load_run(out, precision="fp32")
    texts = [r["text"] for r in _long_rows(6)]
    records = predict(loaded, texts)
    assert len(records) == 6
    # what predict says for a text = the mean of its windows' logits, run one window at a time
    enc = encode(loaded.tokenizer, [texts[:1]], 16, LongInputs("windows", stride=4))
    import torch

    with torch.inference_mode():
        windows = [loaded.model(input_ids=torch.tensor([ids])).logits[0].numpy() for ids in enc["input_ids"]]
    mean = np.mean(windows, axis=0)
    expected = np.exp(mean - mean.max()) / np.exp(mean - mean.max()).sum()
    assert list(records[0]["probabilities"].values()) == pytest.approx(expected.tolist(), abs=1e-5)

    predict_file(loaded, data, tmp_path / "preds.jsonl")
    assert len((tmp_path / "preds.jsonl").read_text().splitlines()) == 40
    assert 0 <= evaluate_file(loaded, data)["accuracy"] <= 1

    httpx = pytest.importorskip("httpx")
    from seqtune.serve import create_app

    with LiveServer(create_app(out)) as live:
        served = httpx.post(f"{live.url}/predict", json={"text": texts}).json()["predictions"]
    assert [r["label"] for r in served] == [r["label"] for r in records]

    [huge] = predict(loaded, " ".join(WORDS[i % 60] for i in range(5000)))  # 10,000 tokens: no traceback
    assert huge["label"] in {"pos", "neg"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["long_inputs"].startswith("windows: 36 documents -> ")  # 40 rows, 4 held out
    from seqtune.report import write_report

    assert "Long texts, windows: 36 documents" in write_report(out).read_text()


def test_a_truncating_run_says_how_many_texts_it_cut(tiny_model_dir, tmp_path, capsys):
    data = write_csv(tmp_path / "long.csv", _long_rows(20))
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--model", tiny_model_dir, "--train-file", data, "--max-length", "16",
                           "--long-inputs", "head_tail", "--max-steps", "1", "--quiet", "--output", out)  # fmt: skip
    assert code == 0, err
    summary = json.loads((out / "metrics.json").read_text())["long_inputs"]
    assert summary == "head_tail: 100.0% of 18 training texts cut to their first and last tokens at 16"


def test_long_inputs_choices_are_checked(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--train-file", tmp_path / "x.csv", "--long-inputs", "sliding")
    assert_clean_error(code, err, "data.long_inputs: expected one of truncate, head_tail, windows, found 'sliding'")
