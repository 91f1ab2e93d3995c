"""Shared fixtures: a tiny random BERT (built here, no download) and small data files."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """Run `seqtune` in this process (a fresh interpreter costs seconds of imports): (exit code, stdout, stderr)."""
    from seqtune.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_clean_error(code: int, err: str, fragment: str) -> str:
    """Exit code 2, and stderr is exactly one `seqtune: error:` line holding ``fragment``."""
    assert code == 2, err
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, f"expected one line on stderr, got:\n{err}"
    assert err.startswith("seqtune: error: "), err
    assert re.search(re.escape(fragment), err), f"{fragment!r} not in {err!r}"
    return err


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes, to prove a failing command changed nothing."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_nothing_written(out: Path) -> None:
    """A failed `train` left no run folder: neither ``out`` nor a default ``runs/`` beside it (the test's cwd)."""
    assert not out.exists()
    assert not (out.parent / "runs").exists()


GLUE_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "glue"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Tokenization cache per test session, never the user's ~/.cache."""
    monkeypatch.setenv("SEQTUNE_CACHE", str(tmp_path_factory.getbasetemp() / "seqtune-cache"))


def tiny_bert_config(vocab_size: int, dropout: float = 0.0):
    """The config of the tiny BERT fixtures: 2 layers, 32 wide."""
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=dropout,
                      attention_probs_dropout_prob=dropout)  # fmt: skip


def build_tiny_bert(path: Path, dropout: float = 0.0) -> Path:
    """A 2-layer, 32-wide random BERT with the packaged MiniLM tokenizer, saved like any HF model folder."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    from seqtune.modeling import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("minilm"))
    config = tiny_bert_config(tokenizer.vocab_size, dropout)
    torch.manual_seed(0)
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Tiny BERT without dropout, so runs are exactly comparable (accumulation equivalence)."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_dropout_model_dir(tmp_path_factory) -> Path:
    """Tiny BERT with dropout: resume must restore the RNG too."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert-dropout"), dropout=0.1)


WORDS = "the cat dog sat ran on a mat log big small red blue happy sad quick slow bird fish tree".split()


def make_rows(n: int, seed: int = 0, pair: bool = False) -> list[dict]:
    """Learnable toy data: label 'pos' when the text mentions 'happy', else 'neg'."""
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = rng.choices(WORDS, k=rng.randint(3, 12))
        label = "pos" if i % 2 == 0 else "neg"
        words.append("happy" if label == "pos" else "sad")
        rng.shuffle(words)
        row = {"text": " ".join(words), "label": label}
        if pair:
            row["text2"] = " ".join(rng.choices(WORDS, k=4))
        rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    import csv

    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def toy_csv(tmp_path) -> Path:
    return write_csv(tmp_path / "toy.csv", make_rows(96))


@pytest.fixture
def mini_glue(tmp_path) -> Path:
    """A hand-made MRPC folder in GLUE's layout (BOM, quoting off), small enough for tiny-model runs."""
    import random

    rng = random.Random(1)
    root = tmp_path / "glue"
    (root / "MRPC").mkdir(parents=True)
    header = "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
    for name, n in (("train", 64), ("dev", 24)):
        lines = []
        for i in range(n):
            a = " ".join(rng.choices(WORDS, k=6))
            same = i % 3 != 0
            b = a if same else " ".join(rng.choices(WORDS, k=6))
            lines.append(f'{int(same)}\t{i}\t{i + 1000}\t"{a}\t{b}\n')
        (root / "MRPC" / f"{name}.tsv").write_text(header + "".join(lines))
    test = "index\t#1 ID\t#2 ID\t#1 String\t#2 String\n" + "".join(
        f"{i}\t{i}\t{i}\t{' '.join(rng.choices(WORDS, k=5))}\t{' '.join(rng.choices(WORDS, k=5))}\n" for i in range(10)
    )
    (root / "MRPC" / "test.tsv").write_text(test)
    return root


def interrupt_training(model_dir: Path, tmp_path: Path, sig: int) -> tuple[int, str, str, Path]:
    """Start a tiny `seqtune train` process, send it ``sig`` once it has logged, and wait for it to stop.

    Returns (exit code, stdout, stderr, run folder). A real process, because signals are what is tested.
    """
    import subprocess
    import sys
    import time

    data = write_csv(tmp_path / "big.csv", make_rows(96) * 20)  # long enough that the signal lands mid-run
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "seqtune", "train", "--train-file", str(data), "--model", str(model_dir),
           "--max-length", "32", "--batch-size", "4", "--epochs", "5", "--output", str(out), "--quiet"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "train_log.jsonl"
    deadline = time.monotonic() + 300
    while not (log.is_file() and log.read_text().count("\n") >= 2):  # training is under way
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    return proc.returncode, stdout, stderr, out


class LiveServer:
    """A real uvicorn server for ``app`` on a free 127.0.0.1 port, in a background thread (serve/export tests)."""

    def __init__(self, app):
        import threading

        import uvicorn

        self.app = app
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def pytest_addoption(parser):
    parser.addoption(
        "--auto-precision",
        choices=("native", "bf16", "fp32"),
        default="native",
        help="what `precision: auto` resolves to in this run: native (by the CPU), or bf16/fp32 forced "
        "(sets SEQTUNE_AUTO_PRECISION), so an AVX2 machine can run what a bf16 machine runs and the reverse",
    )


def pytest_configure(config):
    choice = config.getoption("--auto-precision")
    if choice != "native":
        os.environ["SEQTUNE_AUTO_PRECISION"] = choice
    # `precision: auto` caches its bf16/fp32 matmul timing: the suite keeps its own, not the user's ~/.cache
    os.environ.setdefault("SEQTUNE_CACHE", tempfile.mkdtemp(prefix="seqtune-cache-"))


def pytest_report_header(config):
    import torch

    from seqtune.precision import CPU_BF16_FLAGS, cpu_flags, measured_bf16_speedup, resolve_precision

    forced = os.environ.get("SEQTUNE_AUTO_PRECISION")
    chosen = resolve_precision("auto", torch.device("cpu"))
    if forced:
        why = "forced"
    elif any(flag in CPU_BF16_FLAGS for flag in cpu_flags()):
        why = f"native bf16 here, measured at {measured_bf16_speedup():.2f}x fp32"
    else:
        why = "no native bf16 on this CPU"
    return f"seqtune: precision auto -> {chosen} ({why})"
