"""Prediction of big files: streamed in chunks (CSV, JSONL, Parquet in; JSONL, CSV, Parquet out), every row once
and in input order, continued after an interruption with --resume, and split across two processes under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_clean_error, make_rows, run_cli, write_csv

from seqtune import predict_stream
from seqtune.predict_stream import predict_file


@pytest.fixture(scope="module")
def run(tiny_model_dir, tmp_path_factory) -> Path:
    from seqtune import load_config, train

    root = tmp_path_factory.mktemp("stream-run")
    data = write_csv(root / "train.csv", make_rows(48, pair=True))
    train(load_config(None, [f"model.name={tiny_model_dir}", f"data.train_file={data}", "data.text_pair_column=text2",
                             f"output={root / 'run'}", "quiet=true", "model.max_length=32", "train.max_steps=2",
                             "train.precision=fp32"]))  # fmt: skip
    return root / "run"


def _rows(n: int) -> list[dict]:
    return [{"text": r["text"], "text2": r["text2"]} for r in make_rows(n, seed=3, pair=True)]


def _write(path: Path, rows: list[dict]) -> Path:
    if path.suffix == ".csv":
        return write_csv(path, rows)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _read(path: Path) -> list[dict]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    if path.suffix == ".csv":
        import csv

        return list(csv.DictReader(path.open()))
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


@pytest.mark.parametrize("source, target", [(".csv", ".jsonl"), (".jsonl", ".csv"), (".parquet", ".parquet")])
def test_a_streamed_file_is_predicted_in_order_every_row_once(source, target, run, tmp_path, monkeypatch):
    from seqtune.predict import predict

    monkeypatch.setattr(predict_stream, "STREAM_BYTES", 1000)  # these files are "big": they stream
    rows = _rows(103)
    data = _write(tmp_path / f"in{source}", rows)
    assert data.stat().st_size > 1000
    out = tmp_path / f"preds{target}"
    assert predict_file(run, data, out, chunk_rows=10, progress=False) == 103
    expected = predict(run, [r["text"] for r in rows], [r["text2"] for r in rows])
    got = _read(out)
    assert [int(g["row"]) for g in got] == list(range(103))
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    probability = (lambda g: json.loads(g["p:pos"]) if isinstance(g["p:pos"], str) else g["p:pos"]) if target != (
        ".jsonl") else (lambda g: g["probabilities"]["pos"])  # fmt: skip
    assert [probability(g) for g in got] == pytest.approx([e["probabilities"]["pos"] for e in expected], abs=1e-6)
    assert not out.with_name(out.name + ".parts").exists()


def test_an_interrupted_prediction_continues_where_it_stopped(run, tmp_path, monkeypatch):
    import seqtune.predict as P

    data = _write(tmp_path / "in.csv", _rows(50))
    whole = tmp_path / "whole.jsonl"
    predict_file(run, data, whole, chunk_rows=8, progress=False)
    real, calls, armed = P.predict, [], [True]

    def flaky(*args, **kwargs):
        calls.append(1)
        if armed[0] and len(calls) == 4:
            armed[0] = False
            raise KeyboardInterrupt  # the job is preempted during its 4th chunk
        return real(*args, **kwargs)

    monkeypatch.setattr(P, "predict", flaky)
    out = tmp_path / "preds.jsonl"
    with pytest.raises(KeyboardInterrupt):
        predict_file(run, data, out, chunk_rows=8, progress=False)
    assert not out.exists() and len(list(out.with_name("preds.jsonl.parts").glob("part-*.jsonl"))) == 3
    calls.clear()
    predict_file(run, data, out, resume=True, chunk_rows=8, progress=False)
    assert len(calls) == 4  # 7 chunks of 8 rows: only the 4 not done before
    assert out.read_bytes() == whole.read_bytes()
    # parts of another prediction are never mixed in
    with pytest.raises(KeyboardInterrupt):
        calls.clear()
        armed[0] = True
        predict_file(run, data, out, chunk_rows=8, progress=False)
    from seqtune.errors import SeqtuneError

    with pytest.raises(SeqtuneError, match="holds parts of another prediction"):
        predict_file(run, data, out, resume=True, chunk_rows=16, progress=False)


def test_a_bad_row_deep_in_a_streamed_file_is_one_line_and_writes_nothing(run, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(predict_stream, "STREAM_BYTES", 1000)
    rows = _rows(60)
    rows[45]["text2"] = "   "
    data = _write(tmp_path / "in.csv", rows)
    out = tmp_path / "sub" / "preds.jsonl"
    code, _, err = run_cli(capsys, "predict", run, "--input", data, "--output", out)
    assert_clean_error(code, err, f"{data} line 47: empty text in column 'text2'; fill it or remove the row")
    assert not (tmp_path / "sub").exists()


def test_two_processes_under_torchrun_write_what_one_process_writes(run, tmp_path):
    rows = [{"text": f"{r['text']} {i}", "text2": r["text2"]} for i, r in enumerate(_rows(200) * 1000)]
    data = _write(tmp_path / "big.parquet", rows)  # 200,000 rows
    one = tmp_path / "one.parquet"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    args = ["-m", "seqtune", "predict", str(run), "--input", str(data)]
    done = subprocess.run([sys.executable, *args, "--output", str(one)], env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    two = tmp_path / "two.parquet"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run([*torchrun, *args, "--output", str(two)], env=env, capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.count("wrote 200000 predictions") == 1  # the first process writes and says so
    import pyarrow.parquet as pq

    a, b = pq.read_table(one), pq.read_table(two)
    assert a.num_rows == b.num_rows == 200_000
    assert a.column("row").to_pylist() == list(range(200_000)) == b.column("row").to_pylist()
    assert a.column("label").to_pylist() == b.column("label").to_pylist()
    assert b.column("p:pos").to_pylist() == pytest.approx(a.column("p:pos").to_pylist(), abs=1e-5)
