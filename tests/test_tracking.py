"""Trackers: a real `mlflow server` (SQLite backend, artifacts served) started here on a free loopback port, read
back with MlflowClient; Weights & Biases in offline mode, read back from its local run files; a tracker that fails
mid-run warns once and training goes on."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seqtune import load_config, train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_mlflow(root: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    port = _free_port()
    root.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "w"), start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError((root / "server.log").read_text()[-2000:])
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("mlflow server did not start in 120 s")


def _stop(proc: subprocess.Popen) -> None:
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    pytest.importorskip("mlflow")
    proc, url = _start_mlflow(tmp_path_factory.mktemp("mlflow"))
    yield url
    _stop(proc)


def _cfg(model: Path, data: Path, out: Path, *extra: str):
    return load_config(None, [f"model.name={model}", f"data.train_file={data}", f"output={out}", "quiet=true",
                              "model.max_length=32", "train.epochs=2", "train.log_every=1", *extra])  # fmt: skip


def test_an_mlflow_run_holds_the_config_every_evaluation_and_the_run_folder(
    mlflow_server, tiny_model_dir, toy_csv, tmp_path, monkeypatch
):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "seqtune-test")
    out = tmp_path / "run"
    cfg = _cfg(tiny_model_dir, toy_csv, out, "train.report_to=tensorboard,mlflow")
    stopped = train(cfg, stop_after_steps=3)  # preempted, then resumed: one MLflow run all along
    assert not stopped.completed
    result = train(cfg.with_overrides({"resume": True}))
    assert result.completed

    client = MlflowClient(mlflow_server)
    run_id = json.loads((out / "tracking.json").read_text())["mlflow"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "run"
    assert run.data.tags["seqtune.task"] == "own data" and run.data.tags["seqtune.model"] == str(tiny_model_dir)
    assert run.data.params["train.epochs"] == "2.0" and run.data.params["model.max_length"] == "32"
    history = json.loads((out / "metrics.json").read_text())["history"]
    for name in history[-1]["metrics"]["validation"]:
        logged = client.get_metric_history(run_id, f"validation/{name}")
        assert [(m.step, m.value) for m in logged] == [
            (h["step"], pytest.approx(h["metrics"]["validation"][name])) for h in history
        ]
    assert {m.step for m in client.get_metric_history(run_id, "train/loss")} >= {1, 2, 3}
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"model.safetensors", "config.yaml", "metrics.json", "README.md", "task.json"} <= artifacts
    assert "checkpoints" not in artifacts and "tensorboard" not in artifacts
    assert len(client.search_runs([run.info.experiment_id])) == 1
    assert any((out / "tensorboard").iterdir())  # both trackers at once


def test_a_tracker_that_fails_mid_run_warns_once_and_training_finishes(
    tiny_model_dir, toy_csv, tmp_path, monkeypatch, capfd
):
    pytest.importorskip("mlflow")
    proc, url = _start_mlflow(tmp_path / "doomed")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    out = tmp_path / "run"
    try:
        die = lambda index, score: _stop(proc)  # noqa: E731 -- the server dies at the first evaluation
        result = train(_cfg(tiny_model_dir, toy_csv, out, "train.report_to=mlflow"), on_evaluate=die)
    finally:
        _stop(proc)
    assert result.completed and len(result.history) == 2
    err = capfd.readouterr().err
    assert err.count("mlflow tracking failed") == 1, err
    assert "training goes on without it" in err
    assert (out / "model.safetensors").is_file()


def test_wandb_offline_run_files_hold_the_config_and_the_last_evaluation(
    tiny_model_dir, toy_csv, tmp_path, monkeypatch
):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    out = tmp_path / "run"
    result = train(_cfg(tiny_model_dir, toy_csv, out, "train.report_to=wandb"))
    assert result.completed
    [run_file] = list((out / "wandb").glob("wandb/offline-run-*/run-*.wandb"))
    history: dict[str, list] = {}
    config = {}
    for record in _wandb_records(run_file):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            for item in record.history.item:
                history.setdefault(item.key or "/".join(item.nested_key), []).append(json.loads(item.value_json))
        elif kind == "run":  # the run's config travels with it
            config |= {item.key: json.loads(item.value_json) for item in record.run.config.update}
    evaluations = json.loads((out / "metrics.json").read_text())["history"]
    for name in evaluations[-1]["metrics"]["validation"]:
        assert history[f"validation/{name}"] == [pytest.approx(h["metrics"]["validation"][name]) for h in evaluations]
    assert config["train.epochs"] == 2.0 and config["model.max_length"] == 32 and "train/loss" in history


def _wandb_records(path: Path):
    """The protobuf records of a W&B run file (its LevelDB-log layout: 32 KiB blocks of crc/length/type chunks)."""
    from wandb.proto import wandb_internal_pb2

    data, pos, block, pending = path.read_bytes(), 7, 32768, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a FULL chunk or the LAST of a split record
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def test_unknown_trackers_are_named(capsys, toy_csv):
    from conftest import assert_clean_error, run_cli

    code, _, err = run_cli(capsys, "train", "--train-file", toy_csv, "--report-to", "tensorboard,comet")
    assert_clean_error(code, err, "train.report_to: expected a comma-separated list of tensorboard, mlflow, wandb")
