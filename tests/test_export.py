"""`seqtune export`: ONNX with dynamic axes, validated against PyTorch; int8; predict and serve run the export."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import LiveServer, make_rows, write_csv

from seqtune import load_config
from seqtune.cli import main
from seqtune.errors import SeqtuneError
from seqtune.training import train

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from seqtune.export import EXPORT_INFO, export_run  # noqa: E402 - after the skips: needs the export extra
from seqtune.predict import load_run, logits_for, predict, raw_dataset  # noqa: E402

TEXTS = ["the happy cat sat on the mat with a big red bird", "sad", "a quick blue fish", "happy happy dog"]


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    csv = write_csv(tmp / "toy.csv", make_rows(64))
    overrides = [f"model.name={tiny_model_dir}", f"output={tmp / 'run'}", "quiet=true", "model.max_length=32"]
    train(load_config(None, [*overrides, f"data.train_file={csv}", "train.epochs=2", "train.lr=1e-3"]))
    return tmp / "run"


@pytest.fixture(scope="module")
def fp32(run_dir):
    """The slow step (torch.export tracing), done once for the module, through the CLI."""
    assert main(["export", str(run_dir), "--format", "onnx"]) == 0
    return run_dir / "onnx"


@pytest.fixture(scope="module")
def int8(fp32, run_dir):
    """int8 from the fp32 export: no second trace."""
    assert main(["export", str(fp32), "--quantize", "int8", "--min-agreement", "0"]) == 0
    return run_dir / "onnx-int8"


def test_fp32_export_is_validated_on_the_runs_dev_rows(fp32, run_dir):
    info = json.loads((fp32 / EXPORT_INFO).read_text())
    v = info["validation"]
    assert info["format"] == "onnx" and info["quantize"] is None and info["source_run"] == str(run_dir.resolve())
    assert v["data"].endswith("toy.csv validation rows") and v["rows"] == 7  # the run's 10% held-out rows
    assert v["max_abs_logit_diff"] < 1e-4 and v["label_agreement"] == 1.0
    for name in ("model.onnx", "tokenizer.json", "config.json", "task.json", "config.yaml"):
        assert (fp32 / name).is_file(), name


def test_onnx_axes_are_dynamic_and_logits_match_pytorch_at_any_shape(fp32, run_dir):
    torch_run, onnx_run = load_run(run_dir, precision="fp32"), load_run(fp32)  # fp32 on both sides: exact match
    shapes = [i.shape for i in onnx_run.model.session.get_inputs()]
    assert all(isinstance(d, str) for shape in shapes for d in shape), shapes  # symbolic batch and sequence
    for texts in (TEXTS[:1], TEXTS, TEXTS * 5):  # batch 1, 4, 20; sequence lengths vary with the batch
        raw = raw_dataset(torch_run.task, texts, None)
        np.testing.assert_allclose(logits_for(onnx_run, raw), logits_for(torch_run, raw), atol=1e-4)


def test_onnx_session_uses_pytorchs_thread_count(fp32, monkeypatch):
    import torch

    from seqtune.runtime import OnnxClassifier

    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # what OMP_NUM_THREADS=1 gives
    assert OnnxClassifier(fp32).session.get_session_options().intra_op_num_threads == 1
    assert OnnxClassifier(fp32, threads=3).session.get_session_options().intra_op_num_threads == 3


def test_int8_export_records_its_agreement_and_predicts(int8, run_dir):
    v = json.loads((int8 / EXPORT_INFO).read_text())["validation"]
    assert 0 < v["max_abs_logit_diff"] < 0.5 and 0 <= v["label_agreement"] <= 1
    assert (int8 / "model.onnx").stat().st_size < (run_dir / "onnx" / "model.onnx").stat().st_size / 2
    [record] = predict(int8, TEXTS[0])
    assert record["label"] in {"neg", "pos"} and sum(record["probabilities"].values()) == pytest.approx(1, abs=1e-4)


def test_cli_export_prints_the_comparison(int8, capsys):
    out_dir = int8.parent / "q"
    assert (
        main(
            [
                "export",
                str(int8.parent / "onnx"),
                "--quantize",
                "int8",
                "--output",
                str(out_dir),
                "--min-agreement",
                "0",
            ]
        )
        == 0
    )
    v = json.loads((out_dir / EXPORT_INFO).read_text())["validation"]
    assert capsys.readouterr().out == (
        f"exported ONNX int8 -> {out_dir}; validated on {v['rows']} rows of {v['data']}: max |logit diff| = "
        f"{v['max_abs_logit_diff']:.2e}, label agreement = {v['label_agreement']:.2%}\n"
    )


def test_below_min_agreement_is_an_error(fp32, tmp_path):
    with pytest.raises(SeqtuneError, match=r"labels agree with PyTorch on .* below the 101% required"):
        export_run(fp32, quantize="int8", output=tmp_path / "q", min_agreement=1.01)
    # nothing loadable is left behind; the numbers are kept with the reason
    assert not (tmp_path / "q" / "model.onnx").exists()
    assert "below the 101% required" in json.loads((tmp_path / "q" / "export.json").read_text())["rejected"]
    with pytest.raises(SeqtuneError, match="this export failed its validation and has no model: .* below the 101%"):
        load_run(tmp_path / "q")


def test_onnx_export_agrees_with_the_bf16_pytorch_path(fp32, run_dir):
    """What `auto` runs on a bf16 CPU: bf16 autocast against the fp32 export, within bf16's rounding."""
    bf16_run, onnx_run = load_run(run_dir, precision="bf16"), load_run(fp32)
    raw = raw_dataset(bf16_run.task, TEXTS * 5, None)
    torch_logits, onnx_logits = logits_for(bf16_run, raw), logits_for(onnx_run, raw)
    assert not np.array_equal(torch_logits, onnx_logits)  # bf16 really ran
    np.testing.assert_allclose(torch_logits, onnx_logits, atol=0.05)
    margin = np.abs(onnx_logits[:, 0] - onnx_logits[:, 1]) > 0.1  # rows not on the decision boundary
    assert (torch_logits.argmax(-1) == onnx_logits.argmax(-1))[margin].all()


def test_cli_predict_runs_an_export_like_a_run(fp32, run_dir, capsys, monkeypatch):
    monkeypatch.setenv("SEQTUNE_AUTO_PRECISION", "fp32")  # the run's side in fp32, as the export computes
    assert main(["predict", str(fp32), *[a for t in TEXTS for a in ("--text", t)]]) == 0
    from_onnx = json.loads(capsys.readouterr().out)
    assert main(["predict", str(run_dir), *[a for t in TEXTS for a in ("--text", t)]]) == 0
    from_torch = json.loads(capsys.readouterr().out)
    assert [r["label"] for r in from_onnx] == [r["label"] for r in from_torch]
    for a, b in zip(from_onnx, from_torch, strict=True):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)


def test_serve_runs_an_export(int8):
    httpx = pytest.importorskip("httpx")
    from seqtune.serve import create_app

    expected = predict(int8, TEXTS)
    with LiveServer(create_app(int8)) as live:
        info = httpx.get(f"{live.url}/info").json()
        served = httpx.post(f"{live.url}/predict", json={"text": TEXTS}).json()["predictions"]
    assert (info["backend"], info["quantize"]) == ("onnxruntime", "int8")
    assert [r["label"] for r in served] == [r["label"] for r in expected]
    for a, b in zip(served, expected, strict=True):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--quantize", "int8", "--output", "{fp32}"], "{fp32}: the output would overwrite the export it quantizes"),
        ([], "{fp32}: already an ONNX export; pass the run folder that `seqtune train` wrote"),
    ],
    ids=["overwrite-itself", "export-an-export"],
)
def test_export_bad_input_is_one_line(fp32, capsys, args, message):
    argv = ["export", str(fp32), *[a.format(fp32=fp32) for a in args]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("seqtune: error: " + message.format(fp32=fp32)) and err.count("\n") == 1


def test_export_into_a_foreign_folder_is_refused(run_dir, tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["export", str(run_dir), "--output", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"seqtune: error: {tmp_path}: exists and is not an earlier export; choose another --output or remove it\n"
    )


def test_missing_export_extra_names_the_pip_line(monkeypatch, run_dir, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(SeqtuneError) as err:
        export_run(run_dir, output=tmp_path / "x")
    assert str(err.value) == (
        "seqtune export needs the 'onnxscript' package, which is not installed: pip install 'seqtune[export]' "
        "(or pip install onnx onnxruntime onnxscript)"
    )


def test_compare_logits_per_problem_type():
    from seqtune.export import compare_logits
    from seqtune.tasks import custom_task

    ref = np.array([[2.0, -1.0], [0.1, 0.2], [-3.0, 1.0]], dtype=np.float32)
    flipped = ref + np.array([[0, 0], [0.2, 0], [0, 0]], dtype=np.float32)  # row 1's argmax flips
    single = compare_logits(
        custom_task(pair=False, problem_type="single_label_classification", label_names=("a", "b")), ref, flipped
    )
    assert single["label_agreement"] == pytest.approx(2 / 3) and single["max_abs_logit_diff"] == pytest.approx(0.2)
    multi = compare_logits(
        custom_task(pair=False, problem_type="multi_label_classification", label_names=("a", "b")), ref, -ref
    )
    assert multi["label_agreement"] == 0.0  # every label set differs
    reg = compare_logits(
        custom_task(pair=False, problem_type="regression", label_names=None), ref[:, :1], ref[:, :1] + 0.5
    )
    assert reg == {"rows": 3, "max_abs_logit_diff": 0.5, "label_agreement": None}


def test_validation_falls_back_to_fixed_sentences_when_dev_data_is_gone(run_dir, tmp_path):
    from seqtune.export import FALLBACK_SENTENCES, validation_rows

    run = load_run(run_dir)
    run.cfg.data.train_file = str(tmp_path / "moved.csv")
    rows, source = validation_rows(run)
    assert source.startswith(f"fixed sentences (dev data unavailable: {tmp_path / 'moved.csv'}: file not found")
    assert list(rows["text"]) == list(FALLBACK_SENTENCES)
