"""report.html and `seqtune compare`: figures exist and are PNGs, the page is self-contained and plots what
metrics.json says, ECE against a hand-computed case, regression gets a scatter, and a headless browser renders it."""

from __future__ import annotations

import base64
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import make_rows, write_csv

from seqtune import load_config
from seqtune.cli import main
from seqtune.report import (
    build_series,
    compare_html,
    compare_runs,
    expected_calibration_error,
    reliability_bins,
    write_report,
)
from seqtune.tasks import TaskSpec

CLS_FIGURES = ("loss", "metrics", "confusion", "lengths", "calibration")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _train(model: Path, out: Path, cache: Path, *extra: str) -> Path:
    from seqtune.training import train

    overrides = [f"model.name={model}", f"output={out}", "quiet=true", "model.max_length=32", f"data.cache_dir={cache}"]
    train(load_config(None, [*overrides, "train.batch_size=8", "train.log_every=1", *extra]))
    return out


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """Two classification runs differing only in lr (epochs 2, eval every 3 steps) and one regression run."""
    root = tmp_path_factory.mktemp("report-runs")
    csv = write_csv(root / "toy.csv", make_rows(96))
    common = (f"data.train_file={csv}", "train.epochs=2", "train.eval_every=3")
    cls = _train(tiny_model_dir, root / "cls", root / "cache", *common, "train.lr=1e-3")
    other = _train(tiny_model_dir, root / "cls-lr", root / "cache", *common, "train.lr=3e-4")
    rows = [
        {"a": r["text"], "b": r["text2"], "score": 4.5 if "happy" in r["text"] else 0.5}
        for r in make_rows(64, pair=True)
    ]
    sim = write_csv(root / "sim.csv", rows)
    reg_args = ("data.text_column=a", "data.text_pair_column=b", "data.label_column=score", "train.epochs=1")
    reg = _train(tiny_model_dir, root / "reg", root / "cache", f"data.train_file={sim}", *reg_args, "train.lr=1e-3",
                 "train.precision=fp32")  # fmt: skip  # bf16 cannot resolve this tiny model's spread of outputs
    tickets = root / "tickets.jsonl"
    tickets.write_text("".join(json.dumps({"body": r["text"], "tags": ["billing"] if "happy" in r["text"] else
                                           ["tech", "urgent"][: 1 + i % 2]}) + "\n"
                               for i, r in enumerate(make_rows(80))))  # fmt: skip
    ml_args = (f"data.train_file={tickets}", "data.text_column=body", "data.label_column=tags", "train.epochs=2")
    ml = _train(tiny_model_dir, root / "ml", root / "cache", *ml_args, "train.lr=1e-3")
    # the pages exactly as `train` wrote them (later tests rewrite reports through `seqtune report`)
    pages = {name: (run / "report.html").read_text() for name, run in (("cls", cls), ("ml", ml), ("reg", reg))}
    return {"cls": cls, "other": other, "reg": reg, "ml": ml, "pages": pages}


@pytest.mark.parametrize(
    ("run", "figures"),
    [
        ("cls", ("loss", "metrics", "confusion", "calibration", "lengths")),
        ("ml", ("loss", "metrics", "label_f1", "calibration", "lengths")),
        ("reg", ("loss", "metrics", "scatter", "lengths")),
    ],
)
def test_the_report_train_writes_has_every_section(runs, run, figures):
    """The page `seqtune train` itself wrote (not one regenerated afterwards): every figure, no missing-data note."""
    page = runs["pages"][run]
    for name in figures:
        encoded = base64.b64encode((runs[run] / "report" / f"{name}.png").read_bytes()).decode()
        assert f'src="data:image/png;base64,{encoded}"' in page, name
    assert page.count("<img ") == len(figures)
    notes = re.findall(r'<p class="note">Not shown: ([^<]*)</p>', page)
    assert notes == (["regression run: no class confidences to calibrate."] if run == "reg" else []), notes
    for section in ("Best checkpoint: step", "Timing", "Environment", "Configuration (config.yaml)"):
        assert section in page, section


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def _assert_offline(page: str) -> None:
    assert not re.search(r"https?://", page), re.search(r".{60}https?://.{60}", page)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    for src in re.findall(r'src="([^"]*)"', page):
        assert src.startswith("data:image/png;base64,")


def test_every_figure_is_a_valid_png(runs):
    for name in CLS_FIGURES:
        width, height = _png_size(runs["cls"] / "report" / f"{name}.png")
        assert width > 200 and height > 150, name


def test_html_inlines_every_figure_and_needs_no_network(runs):
    page = (runs["cls"] / "report.html").read_text()
    for name in CLS_FIGURES:
        encoded = base64.b64encode((runs["cls"] / "report" / f"{name}.png").read_bytes()).decode()
        assert f'src="data:image/png;base64,{encoded}"' in page, name
    assert page.count("<img ") == len(CLS_FIGURES)
    _assert_offline(page)
    # config, timing and environment are on the page; the confusion matrix uses the label names
    for text in ("lr: 0.001", "tokens/s", "transformers", "torch", "python", "precision"):
        assert text in page, text
    assert "Not shown" not in page
    assert json.loads((runs["cls"] / "report" / "series.json").read_text())["predictions"]["labels"] == ["neg", "pos"]


def test_plotted_series_match_the_run_folder(runs):
    run = runs["cls"]
    metrics = json.loads((run / "metrics.json").read_text())
    series = build_series(run)
    assert json.loads((run / "report" / "series.json").read_text())["metrics"] == json.loads(
        json.dumps(series["metrics"])
    )
    history = metrics["history"]
    m = series["metrics"]
    assert (
        m["step"] == [h["step"] for h in history] == [3, 6, 9, 12, 15, 18, 21, 22]
    )  # 86 train rows / 8 -> 11 steps/epoch
    for name in ("accuracy",):
        assert m["splits"]["validation"][name] == [h["metrics"]["validation"][name] for h in history]
    # the marked best point is metrics.json's best, and it is the first maximum of the selection metric
    assert m["best"]["step"] == metrics["best"]["step"]
    assert m["best"]["metrics"] == metrics["best"]["metrics"]
    acc = m["splits"]["validation"]["accuracy"]
    assert m["best"]["step"] == m["step"][acc.index(max(acc))]
    # loss and lr are train_log.jsonl, one point per step (log_every=1)
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert series["loss"] == {
        "step": [r["step"] for r in log],
        "loss": [r["loss"] for r in log],
        "lr": [r["lr"] for r in log],
    }
    assert series["loss"]["step"] == list(range(1, 23))
    # lengths: the histogram, the max length line and the padding share come from metrics.json
    assert series["lengths"]["counts"] == metrics["train_length_counts"]
    assert sum(series["lengths"]["counts"]) == 86
    assert series["lengths"]["max_length"] == metrics["max_length"] == 32
    assert series["lengths"]["padding_share"] == metrics["padding_share"]
    # confusion matrix of the best checkpoint: its accuracy is the best validation accuracy
    matrix = np.asarray(series["predictions"]["matrix"])
    assert series["predictions"]["kind"] == "confusion" and matrix.shape == (2, 2)
    assert np.trace(matrix) / matrix.sum() == pytest.approx(metrics["best"]["metrics"]["validation"]["accuracy"])
    # calibration: bins hold every dev example; ECE recomputed from the saved logits
    cal = series["calibration"]
    assert sum(cal["count"]) == matrix.sum() and len(cal["count"]) == 10
    with np.load(run / "eval_predictions.npz") as npz:
        logits, labels = npz["validation/logits"], npz["validation/labels"]
    probs = np.exp(logits.astype(np.float64))
    probs /= probs.sum(-1, keepdims=True)
    assert cal["ece"] == pytest.approx(expected_calibration_error(probs.max(-1), probs.argmax(-1) == labels))


def test_ece_matches_a_hand_computed_example():
    conf = [0.95, 0.85, 0.65, 0.62, 0.55]
    correct = [1, 0, 1, 0, 1]
    # bins (0.9,1]: 1 ex, acc 1, conf .95 -> .05 | (0.8,.9]: acc 0, conf .85 -> .85 | (0.6,.7]: 2 ex, acc .5,
    # conf .635 -> .135 | (0.5,.6]: acc 1, conf .55 -> .45.  ECE = (.05 + .85 + 2 * .135 + .45) / 5 = 0.324
    assert expected_calibration_error(conf, correct) == pytest.approx(0.324)
    bins = reliability_bins(conf, correct)
    assert bins["count"] == [0, 0, 0, 0, 0, 1, 2, 0, 1, 1]
    assert bins["accuracy"][6] == 0.5 and bins["confidence"][6] == pytest.approx(0.635)
    assert bins["accuracy"][0] is None
    # edges belong to the lower bin: 0.7 is in (0.6, 0.7]; perfectly calibrated -> 0
    assert reliability_bins([0.7], [1])["count"][6] == 1
    assert expected_calibration_error([1.0, 1.0], [1, 1]) == 0.0
    assert expected_calibration_error([0.5, 0.5], [1, 0]) == pytest.approx(0.0)


def test_multi_label_gets_per_label_f1():
    from seqtune.plots import calibration_series, label_f1_figure, prediction_series, reliability_figure

    task = TaskSpec("custom", ("text",), ("a", "b"), problem_type="multi_label_classification")
    logits = np.array([[2.0, -1.0], [1.0, 1.0], [-1.0, 3.0], [-2.0, -2.0]])
    labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    series = prediction_series(task, {"validation/logits": logits, "validation/labels": labels})
    # label a: tp 1, fp 1, fn 1 -> 2/4; label b: tp 2, fp 0, fn 0 -> 1
    assert series["kind"] == "label_f1" and series["f1"] == [0.5, 1.0] and series["support"] == [2, 2]
    assert label_f1_figure(series).axes
    # calibration counts each (example, label) decision: 6 of 8 are right
    cal = calibration_series(task, {"validation/logits": logits, "validation/labels": labels})
    assert sum(cal["count"]) == 8
    hits = sum(a * n for a, n in zip(cal["accuracy"], cal["count"], strict=True) if n)
    assert hits == pytest.approx(6)
    assert reliability_figure(cal).axes


def test_regression_gets_a_scatter_instead_of_a_confusion_matrix(runs):
    report = runs["reg"] / "report"
    assert _png_size(report / "scatter.png")[0] > 200
    assert not (report / "confusion.png").exists() and not (report / "calibration.png").exists()
    page = (runs["reg"] / "report.html").read_text()
    assert "regression run: no class confidences" in page
    series = build_series(runs["reg"])
    assert series["predictions"]["kind"] == "scatter"
    assert len(series["predictions"]["true"]) == len(series["predictions"]["pred"]) > 0
    _assert_offline(page)


def test_older_run_without_predictions_gets_notes(runs, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    for name in ("config.yaml", "metrics.json", "train_log.jsonl", "task.json"):
        shutil.copy(runs["cls"] / name, old / name)
    metrics = json.loads((old / "metrics.json").read_text())
    del metrics["train_length_counts"]
    (old / "metrics.json").write_text(json.dumps(metrics))
    page = write_report(old).read_text()
    assert page.count("Not shown") == 3  # predictions, calibration, lengths
    assert "eval_predictions.npz" in page
    assert sorted(p.name for p in (old / "report").glob("*.png")) == ["loss.png", "metrics.png"]


def test_report_escapes_text(runs, tmp_path):
    odd = tmp_path / "odd"
    shutil.copytree(runs["cls"], odd, ignore=shutil.ignore_patterns("*.safetensors", "report*"))
    cfg = (odd / "config.yaml").read_text().replace("seed: 42", "seed: 42\n# <script>alert(1)</script>")
    (odd / "config.yaml").write_text(cfg)
    page = write_report(odd).read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_compare_runs_lists_only_differing_keys(runs):
    result = compare_runs([runs["cls"], runs["other"]])
    assert result["runs"] == ["cls", "cls-lr"]
    assert result["config"] == {"train.lr": [0.001, 0.0003]}  # output differs too, but is bookkeeping
    assert "train.epochs" not in result["config"] and "train.eval_every" not in result["config"]
    best = [json.loads((r / "metrics.json").read_text())["best"] for r in (runs["cls"], runs["other"])]
    assert result["metrics"]["validation/accuracy"] == [b["metrics"]["validation"]["accuracy"] for b in best]
    assert result["summary"]["best step"] == [b["step"] for b in best]
    _assert_offline(compare_html(result))


def test_cli_report_and_compare(runs, tmp_path, capsys):
    (runs["cls"] / "report.html").unlink()
    assert main(["report", str(runs["cls"])]) == 0
    assert (runs["cls"] / "report.html").is_file()
    out = tmp_path / "compare.html"
    assert main(["compare", str(runs["cls"]), str(runs["other"]), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "train.lr" in printed and "validation/accuracy" in printed and "train.epochs" not in printed
    page = out.read_text()
    assert "train.lr" in page and "cls-lr" in page
    _assert_offline(page)
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert main(["compare", str(runs["cls"]), str(tmp_path)]) == 2


CHROMIUM = shutil.which("chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Test-only probe appended to a copy of the page (the report itself has no JavaScript): counts decoded images.
PROBE = (
    "<script>window.addEventListener('load',()=>{const ok=[...document.images].filter("
    "i=>i.complete&&i.naturalWidth>0&&i.src.startsWith('data:image/png'));"
    "document.body.setAttribute('data-images-loaded',String(ok.length));});</script>"
)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (CI installs it: apt-get install chromium)")
def test_chromium_renders_the_report(runs, tmp_path):
    page = runs["cls"] / "report.html"
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    shot = tmp_path / "shot.png"
    base = [CHROMIUM, *CHROMIUM_FLAGS, "--window-size=1280,2000"]
    subprocess.run(
        [*base, f"--user-data-dir={tmp_path / 'profile1'}", f"--screenshot={shot}", page.resolve().as_uri()],
        capture_output=True,
        timeout=180,
        check=True,
    )
    assert _png_size(shot) == (1280, 2000)
    assert shot.stat().st_size > 50_000  # figures and text, not a blank page
    dump = subprocess.run(
        [*base, f"--user-data-dir={tmp_path / 'profile2'}", "--enable-logging=stderr", "--v=0",
         "--virtual-time-budget=5000", "--dump-dom", probed.resolve().as_uri()],
        capture_output=True, text=True, timeout=180, check=True,
    )  # fmt: skip
    dom = dump.stdout
    assert f'data-images-loaded="{len(CLS_FIGURES)}"' in dom, dom[-2000:]
    assert len(re.findall(r'<img class="figure" src="data:image/png;base64,', dom)) == len(CLS_FIGURES)
    problems = [line for line in dump.stderr.splitlines() if "Uncaught" in line or "ERR_" in line]
    assert not problems, "\n".join(problems)
